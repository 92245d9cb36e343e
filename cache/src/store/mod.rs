//! Blob storage behind one synchronous trait. Synchronous because RocksDB is;
//! the async services hop onto the blocking pool rather than pretending.
//!
//! Besides blobs, a store keeps small keyed metadata tables (action cache
//! entries, index entries) so that one store holds all of a cache's state and
//! the services need no second database.

mod batch;
mod large_files;
mod limits;
mod memory;
mod pins;
mod rocks;
mod staged;
pub(crate) mod tiered;

#[cfg(test)]
mod conformance;

use bytes::Bytes;
use thiserror::Error;

use buildfleet_model::digest::Digest;

pub use limits::{Evictions, StoreLimits};
pub use memory::MemoryStore;
pub use pins::pin;
pub use rocks::RocksStore;
pub use staged::{StagedBlob, VerifiedBlob};
pub use tiered::{BucketConfig, TieredStore};

/// The metadata tables a store keeps beside its blobs. Keys within a table
/// are arbitrary bytes; callers that partition (e.g. by instance name) encode
/// that into the key. Metadata counts towards [`StoreLimits::max_bytes`]
/// (keys and values), so a writer of endless action results fills the
/// store's budget, not the disk; see [`StoreLimits::meta_full`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaTable {
    /// REAPI ActionResults by instance and action digest.
    ActionCache,
    /// `buildfleet.v1.CacheIndex` entries by instance and key.
    Index,
    /// Blobs kept from eviction, until when (see `pins`).
    Pins,
}

impl MetaTable {
    /// A stable one-byte tag for storage keys. Never renumber.
    pub(crate) fn tag(self) -> u8 {
        match self {
            MetaTable::ActionCache => b'a',
            MetaTable::Index => b'i',
            MetaTable::Pins => b'p',
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The data does not hash to the address it was offered under; nothing was
    /// stored, because a CAS that accepts such blobs poisons every reader.
    #[error("digest mismatch: expected {expected}, data hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The blob alone is larger than the store may hold; storing it would
    /// evict everything else and then itself.
    #[error("blob {digest} is larger than the store's {max_bytes}-byte limit")]
    TooLarge { digest: Digest, max_bytes: u64 },
    /// More bytes arrived than the digest's size declares; the excess was
    /// not kept.
    #[error("more data than the {} bytes declared for {digest}: {received} bytes", digest.size_bytes)]
    Overlong { digest: Digest, received: u64 },
    /// Metadata (action results, index entries) would take more than its
    /// share of the store's limit; the entry was not stored.
    #[error(
        "cache metadata is full: storing this {table:?} entry would bring metadata to {would_be} bytes, over its limit of {max_bytes} (half of --max-size)"
    )]
    MetadataFull {
        table: MetaTable,
        would_be: u64,
        max_bytes: u64,
    },
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

/// A stored blob, ready to be read: in memory and verified, or a file that
/// is verified by whoever reads it whole (see the ByteStream service), so a
/// large blob is never held in memory nor read twice to be served.
#[derive(Debug)]
pub enum StoredBlob {
    /// The bytes, already verified.
    Bytes(Bytes),
    /// The blob's file, opened; its length matched the digest's size.
    File(std::fs::File),
}

/// A content-addressed blob store with least-recently-used eviction.
///
/// Contract shared by every implementation (checked by one conformance suite):
/// - `put` verifies (with the digest's own function) before storing, `get`
///   re-verifies before serving, and the empty blob of each function is
///   always present.
/// - Blobs are keyed by (function, hash, size): the same bytes stored under
///   BLAKE3 are not found under SHA-256.
/// - `get`, `contains_many` and a `put` of a present blob mark the blob as
///   used; when a `put` takes [`BlobStore::total_bytes`] over the limit, the
///   least recently used blobs are evicted down to the low-water mark.
/// - Concurrent `put`s of one blob store it once and count its size once.
pub trait BlobStore: Send + Sync + 'static {
    /// Presence of each digest, in the order asked. Present blobs count as
    /// used: a client that asked is about to rely on them.
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError>;

    /// The blob's bytes, or `None` if absent or found corrupt (then deleted).
    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError>;

    /// [`get`](Self::get) for many blobs, in the order asked. Stores
    /// override it to read and record use in bulk (a BatchReadBlobs names
    /// hundreds of small blobs).
    fn get_many(&self, digests: &[Digest]) -> Result<Vec<Option<Bytes>>, StoreError> {
        digests.iter().map(|d| self.get(d)).collect()
    }

    /// Stores `data` under `digest` after checking that it hashes to it.
    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError>;

    /// [`put`](Self::put) for many blobs, each judged on its own, results in
    /// order. Stores override it to check in parallel and write in bulk (a
    /// BatchUpdateBlobs carries thousands of small blobs).
    fn put_many(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        blobs
            .into_iter()
            .map(|(d, data)| self.put(&d, data))
            .collect()
    }

    /// A new file to receive `digest` in pieces (a ByteStream write), on
    /// the store's own disk so [`BlobStore::commit`] can rename it.
    fn stage(&self, digest: &Digest) -> Result<StagedBlob, StoreError>;

    /// Stores a blob received through [`BlobStore::stage`]. Its bytes are
    /// already verified, so stores that keep large blobs as files move the
    /// file into place without reading it again.
    fn commit(&self, blob: VerifiedBlob) -> Result<(), StoreError> {
        let data = blob.read()?;
        self.put(&blob.digest(), data)
    }

    /// The blob for reading in pieces (a ByteStream read), marked used;
    /// `None` if absent. Large blobs come as files so a ranged read reads
    /// only its range.
    fn open(&self, digest: &Digest) -> Result<Option<StoredBlob>, StoreError> {
        Ok(self.get(digest)?.map(StoredBlob::Bytes))
    }

    /// Deletes a blob a reader found corrupt, so a clean copy can be
    /// uploaded again; absent blobs are not an error.
    fn forget_corrupt(&self, digest: &Digest) -> Result<(), StoreError>;

    /// Total size of the stored blobs (their digests' sizes, not disk usage).
    fn total_bytes(&self) -> u64;

    /// Total size of the metadata tables' keys and values.
    fn meta_bytes(&self) -> u64;

    /// What eviction has removed since the store opened.
    fn evictions(&self) -> &Evictions;

    /// The store's size limits, so a service can refuse a blob that can
    /// never fit before it accepts the first byte of it.
    fn limits(&self) -> StoreLimits;

    /// One metadata value.
    fn meta_get(&self, table: MetaTable, key: &[u8]) -> Result<Option<Bytes>, StoreError>;

    /// Stores (replacing) one metadata value.
    fn meta_put(&self, table: MetaTable, key: &[u8], value: Bytes) -> Result<(), StoreError>;

    /// Removes one metadata value; absent keys are not an error.
    fn meta_delete(&self, table: MetaTable, key: &[u8]) -> Result<(), StoreError>;

    /// Every entry whose key starts with `prefix`, in key order.
    fn meta_scan_prefix(
        &self,
        table: MetaTable,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError>;
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
