//! Blob storage behind one synchronous trait. Synchronous because RocksDB is;
//! the async services hop onto the blocking pool rather than pretending.

mod memory;
mod rocks;

#[cfg(test)]
mod conformance;

use bytes::Bytes;
use thiserror::Error;

use crate::digest::Digest;

pub use memory::MemoryStore;
pub use rocks::RocksStore;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The data does not hash to the address it was offered under; nothing was
    /// stored, because a CAS that accepts such blobs poisons every reader.
    #[error("digest mismatch: expected {expected}, data hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The backend could not be opened at `path`.
    #[error("cannot open blob store at {path}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The backend failed an operation; boxed so the backend's types stay in
    /// its own module.
    #[error("blob store backend failed during {operation}")]
    Backend {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A content-addressed blob store.
///
/// Contract shared by every implementation (checked by one conformance suite):
/// `put` verifies before storing, `get` re-verifies before serving, and the
/// empty blob is always present.
pub trait BlobStore: Send + Sync + 'static {
    /// Presence of each digest, in the order asked.
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError>;

    /// The blob's bytes, or `None` if absent or found corrupt (then deleted).
    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError>;

    /// Stores `data` under `digest` after checking that it hashes to it.
    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError>;
}

/// Refuses data that does not hash to `expected` under `expected`'s own
/// function; shared so every store and service enforces the same rule.
pub fn verify(expected: &Digest, data: &[u8]) -> Result<(), StoreError> {
    let actual = || Digest::of_with(expected.function, data);
    // Check the cheap length first so a truncated upload is not hashed twice.
    if data.len() as u64 != expected.size_bytes {
        return Err(StoreError::DigestMismatch {
            expected: *expected,
            actual: actual(),
        });
    }
    let actual = actual();
    if actual != *expected {
        return Err(StoreError::DigestMismatch {
            expected: *expected,
            actual,
        });
    }
    Ok(())
}
