//! Content-addressed storage for buildfleet: blobs, Merkle trees of working
//! directories, and the REAPI v2 cache service and client.
//!
//! # Invariants
//!
//! - **A blob becomes visible only after its digest was verified.** Every
//!   [`BlobStore::put`] hashes the data and refuses a mismatch; every
//!   [`BlobStore::get`] re-verifies and deletes (never serves) corrupt data;
//!   the client verifies everything it downloads. The empty blob is always
//!   present.
//! - **Prost types stay at the edges.** Only the gRPC adapters (`server`,
//!   `client`), the tree encoding module and the wire conversions of
//!   [`Digest`] touch generated protobuf types; storage and the rest of the
//!   crate are plain Rust.
//! - **Only the storage layer knows RocksDB** (`store/rocks.rs`); its errors
//!   are boxed into [`StoreError`] so nothing else names RocksDB types.
//! - gRPC status codes are chosen in one place, [`CacheError::code`].

mod client;
mod digest;
mod error;
mod resource_name;
mod server;
mod store;
mod tree;

#[cfg(unix)]
pub use client::{copy_entry, LocalCas, LocalCasError, LocalCasStats, Placement};
pub use client::{CasClient, MaterialiseStats, UploadStats, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES};
pub use digest::{Digest, DigestError};
pub use error::CacheError;
pub use resource_name::{
    parse_read, parse_write, read_resource_name, write_resource_name, ResourceNameError,
};
pub use server::{serve, services, MAX_BATCH_BYTES, STREAM_CHUNK_BYTES};
pub use store::{verify, BlobStore, MemoryStore, RocksStore, StoreError};
pub use tree::{
    snapshot, BlobSource, DirectoryEntry, DirectoryListing, FileEntry, Snapshot, SymlinkEntry,
    TreeError,
};
