//! Compiles our own protocol and the vendored REAPI v2 and ByteStream
//! protocols with a vendored protoc, so a fresh machine needs no system
//! protobuf compiler.
//!
//! The REAPI messages are generated here rather than taken prebuilt so that
//! every `bytes` field is a `bytes::Bytes`: a blob decoded from a request
//! shares the receive buffer instead of being copied into a `Vec`, and a
//! blob read from the store goes into a response without a copy either.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure().compile_protos(&["proto/buildfleet.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        // The vendored comments are the specification's prose; rustdoc
        // would read their indented examples as Rust doctests.
        .disable_comments(["."])
        .include_file("reapi.rs")
        .compile_protos(
            &[
                std::path::Path::new(
                    "vendor/build/bazel/remote/execution/v2/remote_execution.proto",
                ),
                std::path::Path::new("vendor/google/bytestream/bytestream.proto"),
            ],
            &[std::path::Path::new("vendor"), well_known.as_path()],
        )?;
    println!("cargo:rerun-if-changed=proto/buildfleet.proto");
    println!("cargo:rerun-if-changed=vendor");
    Ok(())
}
