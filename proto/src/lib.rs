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

/// Model ⇄ wire conversions of the shared vocabulary.
pub mod convert;
