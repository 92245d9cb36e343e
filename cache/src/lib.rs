//! Content-addressed storage for buildfleet: blobs, Merkle trees of working
//! directories, the REAPI v2 cache services (CAS, ByteStream, ActionCache,
//! Capabilities), our own `buildfleet.v1.CacheIndex`, and a CAS client.
//!
//! # Invariants
//!
//! - **A blob becomes visible only after its digest was verified**, with the
//!   digest's own function (BLAKE3 or SHA-256). Every [`BlobStore::put`]
//!   hashes the data and refuses a mismatch; every [`BlobStore::get`]
//!   re-verifies and deletes (never serves) corrupt data, fixing the size
//!   accounting; ByteStream writes are stored only once complete and
//!   verified; the client verifies everything it downloads. The empty blob of
//!   each function is always present.
//! - **The digest function is part of a blob's address**: stores key blobs by
//!   (function, hash, size), so bytes uploaded under SHA-256 are not found
//!   under BLAKE3 and vice versa. REAPI requests that leave the function unset
//!   mean SHA-256; resource names without a function segment are SHA-256.
//! - **A store is bounded by its limit** ([`StoreLimits`]): a put that takes
//!   the total over the limit evicts the least recently used blobs (never the
//!   one just put) down to 90% of it before returning, logged with counts and
//!   bytes; reads, presence checks and re-puts mark blobs used; a blob larger
//!   than the whole limit is refused. Concurrent puts of one blob count it once; the
//!   total is recomputed from the store at open.
//! - **Cache entries are served only while complete**: an ActionCache entry
//!   or a CacheIndex entry (with `Completeness::Required`) is returned only if every
//!   blob it references is present, and serving it marks that content used so
//!   entry and blobs age together. ActionCache updates referencing missing
//!   blobs are refused with FAILED_PRECONDITION.
//! - **The CAS is shared by all instance names; the action cache and the
//!   index are partitioned by instance name.**
//! - **Prost types stay at the edges.** Only the gRPC adapters (`server`,
//!   `client`), the tree encoding module and the wire conversions of
//!   [`Digest`] touch generated protobuf types; storage and the rest of the
//!   crate are plain Rust (metadata tables hold opaque bytes).
//! - **Only the storage layer knows RocksDB** (`store/rocks/`); its errors
//!   are boxed into [`StoreError`] so nothing else names RocksDB types.
//! - gRPC status codes are chosen in one place, [`CacheError::code`].

mod client;
mod error;
mod resource_name;
mod server;
mod store;
mod tree;

pub use buildfleet_model::{Digest, DigestError, DigestFunction, DigestHasher};
#[cfg(unix)]
pub use client::{copy_entry, LocalCas, LocalCasError, LocalCasStats, Placement, Probe, Released};
pub use client::{
    CasClient, Completeness, IndexEntry, IndexHit, MaterialiseStats, OutputDirectory, OutputFile,
    Provenance, StepResult, UploadStats, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES,
};
pub use error::CacheError;
pub use resource_name::{
    parse_read, parse_write, read_resource_name, write_resource_name, ResourceNameError,
};
pub use server::{
    precondition_violations, serve, serve_with_metrics, services, CacheMetrics,
    PreconditionFailure, Violation, MAX_BATCH_BYTES, PARTIAL_UPLOAD_IDLE_EXPIRY,
    PARTIAL_UPLOAD_MAX_BYTES, STREAM_CHUNK_BYTES,
};
pub use store::{
    verify, BlobStore, BucketConfig, MemoryStore, MetaTable, RocksStore, StagedBlob, StoreError,
    StoreLimits, StoredBlob, TieredStore, VerifiedBlob,
};
pub use tree::{
    diff, snapshot, snapshot_with, subset, tree_message, BlobSource, Change, ChangeKind,
    DirectoryEntry, DirectoryListing, FileEntry, FileMode, Ignores, Listings, Snapshot, Subset,
    SymlinkEntry, TreeError,
};
