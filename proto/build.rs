//! Compiles proto/buildfleet.proto with a vendored protoc, so a fresh machine
//! needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["proto/buildfleet.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/buildfleet.proto");
    Ok(())
}
