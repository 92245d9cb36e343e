//! REAPI's machine-readable "these blobs are missing" error detail: a
//! `google.rpc.PreconditionFailure` with one `MISSING` violation per blob,
//! packed in the `google.rpc.Status` that travels in `grpc-status-details-bin`.
//! Bazel reads it to re-upload exactly those blobs. The message types are
//! declared here because the generated crates do not include them.

use bytes::Bytes;
use prost::Message;

use crate::resource_name::read_resource_name;
use buildfleet_model::digest::Digest;

/// `google.rpc.PreconditionFailure`.
#[derive(Clone, PartialEq, Message)]
pub struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    pub violations: Vec<Violation>,
}

/// `google.rpc.PreconditionFailure.Violation`.
#[derive(Clone, PartialEq, Message)]
pub struct Violation {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub subject: String,
    #[prost(string, tag = "3")]
    pub description: String,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.Status` with typed details.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

pub const PRECONDITION_FAILURE_TYPE_URL: &str =
    "type.googleapis.com/google.rpc.PreconditionFailure";

/// The encoded status details naming each missing blob as
/// `blobs/[function/]{hash}/{size}`, as REAPI specifies.
pub(crate) fn missing_blobs_details(code: tonic::Code, message: &str, missing: &[Digest]) -> Bytes {
    let failure = PreconditionFailure {
        violations: missing
            .iter()
            .map(|d| Violation {
                r#type: "MISSING".into(),
                subject: read_resource_name("", d),
                description: String::new(),
            })
            .collect(),
    };
    let status = RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details: vec![Any {
            type_url: PRECONDITION_FAILURE_TYPE_URL.into(),
            value: failure.encode_to_vec(),
        }],
    };
    Bytes::from(status.encode_to_vec())
}

/// Reads the violations back out of a status, for clients and tests.
pub fn precondition_violations(status: &tonic::Status) -> Vec<Violation> {
    let Ok(rpc) = RpcStatus::decode(status.details()) else {
        return Vec::new();
    };
    rpc.details
        .iter()
        .filter(|any| any.type_url == PRECONDITION_FAILURE_TYPE_URL)
        .filter_map(|any| PreconditionFailure::decode(any.value.as_slice()).ok())
        .flat_map(|f| f.violations)
        .collect()
}
