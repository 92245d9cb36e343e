//! The wire contract. Prost types stop at the gRPC adapters: domain crates
//! convert at their edges and keep plain Rust inside.

/// Our own services: pipelines and the runner connection.
pub mod v1 {
    tonic::include_proto!("buildfleet.v1");
}

/// The Bazel Remote Execution API v2 (CAS, ActionCache, Capabilities, ByteStream).
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
pub use bazel_remote_apis::google::bytestream;
pub use bazel_remote_apis::google::protobuf as google_protobuf;
pub use bazel_remote_apis::google::rpc as google_rpc;

/// The largest message the coordinator and its clients (the CLI, runners)
/// send or accept, on both sides alike: a split listing of 16 MiB of items
/// reported by a runner, and the leases and run snapshots that carry them,
/// with room for framing. gRPC's default (4 MiB) would refuse a legitimate
/// listing in one direction only. The cache has its own, smaller limit
/// (`buildfleet_cache::MAX_BATCH_BYTES`).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Model ⇄ wire conversions of the shared vocabulary.
pub mod convert;
