//! The crate's top-level error and the single place where errors become gRPC
//! status codes, so server and client agree on what each failure means.

use std::path::PathBuf;

use thiserror::Error;
use tonic::Code;

use crate::resource_name::ResourceNameError;
use crate::store::StoreError;
use crate::tree::TreeError;
use buildfleet_model::digest::{Digest, DigestError};

#[derive(Debug, Error)]
pub enum CacheError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    ResourceName(#[from] ResourceNameError),
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// No usable action cache entry: none stored, or one whose referenced
    /// blobs are gone (then deleted).
    #[error("no action result for {action}: {reason}")]
    ActionResultNotFound { action: Digest, reason: String },
    /// An entry was offered that references blobs the CAS lacks.
    #[error("{} referenced blobs are missing: {}", .0.len(), crate::server::describe_missing(.0))]
    MissingBlobs(Vec<Digest>),
    /// A request the protocol allows but this cache does not serve.
    #[error("unsupported request: {0}")]
    Unsupported(String),
    /// A request that breaks the protocol.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A ByteStream write continued at an offset other than the bytes the
    /// server holds for that upload.
    #[error("write to {resource_name} at offset {got}, but the server holds {expected} bytes: expected write_offset {expected}")]
    WriteOffset {
        resource_name: String,
        expected: u64,
        got: i64,
    },
    /// Another stream is writing the same upload right now.
    #[error("upload {resource_name} is being written by another stream")]
    UploadInProgress { resource_name: String },
    /// Live uploads together have declared as much as the cache lets be
    /// in flight; the client should retry later.
    #[error("uploads in flight would declare {in_flight} bytes, over this cache's limit of {max_bytes}; retry later")]
    UploadsFull { in_flight: u64, max_bytes: u64 },
    #[error("read offset {offset} is past the end of a {size}-byte blob")]
    ReadOutOfRange { offset: i64, size: u64 },
    #[error("cache transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Connect(#[from] buildfleet_trust::ConnectError),
    /// The caller's token may not do this (beyond the RPC table's role
    /// check: writing a runners-only cache scope).
    #[error("{0}")]
    Forbidden(String),
    /// Boxed because a `Status` is large and would bloat every `Result`.
    #[error("cache RPC failed: {0}")]
    Rpc(Box<tonic::Status>),
    /// The server refused one blob of a batch.
    #[error("server rejected blob {digest}: {message}")]
    BlobRejected {
        digest: Digest,
        code: Code,
        message: String,
    },
    /// A stored record (action result, index entry) that can't be used.
    #[error("invalid cache entry: {0}")]
    InvalidEntry(String),
    /// Received data that does not hash to what was asked for.
    #[error("received corrupt data for {expected}: it hashes to {actual}")]
    CorruptDownload { expected: Digest, actual: Digest },
    /// A stored blob found corrupt while it was being served; it was
    /// deleted so a clean copy can be uploaded.
    #[error("blob {digest} is corrupt in the cache (its bytes hash to {actual}); it was deleted, upload it again")]
    CorruptStored { digest: Digest, actual: Digest },
    /// A file changed between snapshot and upload; uploading it would make
    /// the snapshot's root digest a lie.
    #[error("{path} changed since it was snapshotted")]
    SourceChanged { path: PathBuf },
    #[error("I/O on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A blocking store task panicked or was cancelled.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CacheError {
    /// The gRPC code for this error. Digest mismatches are the caller's fault
    /// (it sent data under the wrong name), hence InvalidArgument, not DataLoss.
    pub fn code(&self) -> Code {
        match self {
            CacheError::Store(StoreError::DigestMismatch { .. }) => Code::InvalidArgument,
            // REAPI's word for "insufficient quota to store the blob".
            CacheError::Store(StoreError::TooLarge { .. } | StoreError::MetadataFull { .. }) => {
                Code::ResourceExhausted
            }
            CacheError::Store(StoreError::Overlong { .. }) => Code::InvalidArgument,
            CacheError::Store(_) => Code::Internal,
            CacheError::Digest(_) | CacheError::ResourceName(_) => Code::InvalidArgument,
            CacheError::Tree(TreeError::Io { .. } | TreeError::Walk(_)) => Code::Internal,
            CacheError::Tree(_) => Code::InvalidArgument,
            CacheError::NotFound(_) | CacheError::ActionResultNotFound { .. } => Code::NotFound,
            CacheError::MissingBlobs(_) => Code::FailedPrecondition,
            CacheError::Unsupported(_) | CacheError::InvalidRequest(_) => Code::InvalidArgument,
            CacheError::WriteOffset { .. } => Code::InvalidArgument,
            // Retryable once the other stream ends.
            CacheError::UploadInProgress { .. } => Code::Aborted,
            CacheError::UploadsFull { .. } => Code::ResourceExhausted,
            CacheError::ReadOutOfRange { .. } => Code::OutOfRange,
            CacheError::Transport(_) | CacheError::Connect(_) => Code::Unavailable,
            CacheError::Forbidden(_) => Code::PermissionDenied,
            CacheError::Rpc(status) => status.code(),
            CacheError::BlobRejected { code, .. } => *code,
            CacheError::CorruptDownload { .. } | CacheError::CorruptStored { .. } => Code::DataLoss,
            CacheError::InvalidEntry(_) => Code::DataLoss,
            CacheError::SourceChanged { .. } => Code::FailedPrecondition,
            CacheError::Io { .. } | CacheError::Internal(_) => Code::Internal,
        }
    }
}

impl From<CacheError> for tonic::Status {
    fn from(err: CacheError) -> Self {
        if let CacheError::Rpc(status) = err {
            return *status;
        }
        // Include the sources: "blob store backend failed during put" alone
        // does not help whoever reads the client's log.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        if let CacheError::MissingBlobs(missing) = &err {
            // REAPI clients find out which blobs to upload from the details.
            let details = crate::server::missing_blobs_details(err.code(), &message, missing);
            return tonic::Status::with_details(err.code(), message, details);
        }
        tonic::Status::new(err.code(), message)
    }
}

impl From<tonic::Status> for CacheError {
    fn from(status: tonic::Status) -> Self {
        CacheError::Rpc(Box::new(status))
    }
}

impl From<tokio::task::JoinError> for CacheError {
    fn from(err: tokio::task::JoinError) -> Self {
        CacheError::Internal(format!("blocking store task failed: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let d = Digest::of(b"x");
        let mismatch = CacheError::from(StoreError::DigestMismatch {
            expected: d,
            actual: Digest::empty(),
        });
        assert_eq!(mismatch.code(), Code::InvalidArgument);
        assert_eq!(CacheError::NotFound(d).code(), Code::NotFound);
        let backend = CacheError::from(StoreError::Backend {
            operation: "put",
            source: "disk full".into(),
        });
        assert_eq!(backend.code(), Code::Internal);
        let status = tonic::Status::from(backend);
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("disk full"),
            "{}",
            status.message()
        );
        assert_eq!(
            CacheError::from(DigestError::Missing).code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn missing_blobs_carry_precondition_failure_details() {
        let sha = Digest::of_with(buildfleet_model::digest::DigestFunction::Sha256, b"a");
        let b3 = Digest::of(b"b");
        let status = tonic::Status::from(CacheError::MissingBlobs(vec![sha, b3]));
        assert_eq!(status.code(), Code::FailedPrecondition);
        let subjects: Vec<(String, String)> = crate::server::precondition_violations(&status)
            .into_iter()
            .map(|v| (v.r#type, v.subject))
            .collect();
        assert_eq!(
            subjects,
            vec![
                ("MISSING".into(), format!("blobs/{}/1", sha.to_hex())),
                ("MISSING".into(), format!("blobs/blake3/{}/1", b3.to_hex())),
            ]
        );
    }
}
