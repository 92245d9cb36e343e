//! Merkle trees of working directories in the REAPI `Directory` encoding, so
//! any REAPI client or worker can read what we store.

mod diff;
mod encoding;
mod file_hash;
mod subset;
#[cfg(test)]
mod test_files;
mod walk;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use thiserror::Error;

use buildfleet_model::digest::Digest;

pub use diff::{diff, Change, ChangeKind};
pub(crate) use encoding::listing_from_proto;
pub use encoding::tree_message;
pub use encoding::{DirectoryEntry, DirectoryListing, FileEntry, SymlinkEntry};
pub use subset::{subset, Subset};
pub use walk::{snapshot, snapshot_with, Ignores};

/// Whether a file is executable: part of its place in a tree and of its
/// local cache entry (hard links share an inode, hence its mode), so it is
/// named, never a bare `bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileMode {
    Plain,
    Executable,
}

impl FileMode {
    /// The mode of a file whose executable bit is `executable` (REAPI's
    /// `is_executable`, a file's permission bits).
    pub fn of(executable: bool) -> FileMode {
        match executable {
            true => FileMode::Executable,
            false => FileMode::Plain,
        }
    }

    pub fn is_executable(self) -> bool {
        self == FileMode::Executable
    }
}

use std::collections::HashMap;

/// Directory listings by digest, as fetched with GetTree: enough to walk a
/// tree without its file contents.
pub type Listings = HashMap<Digest, DirectoryListing>;

/// Why a tree could not be snapshotted or decoded.
#[derive(Debug, Error)]
pub enum TreeError {
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("walking the tree failed")]
    Walk(#[from] ignore::Error),
    /// REAPI names are UTF-8 strings; other names can't be represented.
    #[error("path {path:?} is not valid UTF-8")]
    NonUtf8Path { path: PathBuf },
    #[error("invalid entry name {name:?} in a directory")]
    InvalidName { name: String },
    #[error("name {name:?} appears twice in one directory")]
    DuplicateName { name: String },
    /// A symlink that would point outside the directory it is placed in.
    #[error("symlink {path} points outside the tree (to {target:?}); refused")]
    UnsafeSymlink { path: PathBuf, target: String },
    /// A tree (often a DAG of few blobs) that describes more than can be
    /// placed: refused before anything is written.
    #[error("the tree describes more than {limit} {what}; refused")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("directory blob {digest} is not a valid REAPI Directory")]
    Decode {
        digest: Digest,
        #[source]
        source: prost::DecodeError,
    },
    /// A walk needed a directory that is not in the listings it was given
    /// (e.g. evicted from the cache since the tree was stored).
    #[error("directory {digest} at `{path}` is not available")]
    MissingDirectory { digest: Digest, path: String },
    #[error("directory entry {name:?} has an invalid digest")]
    InvalidDigest {
        name: String,
        #[source]
        source: buildfleet_model::digest::DigestError,
    },
}

/// Where the bytes of a referenced blob come from, so an uploader can stream
/// files without holding the whole tree in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    /// A file in the snapshotted tree (the first path seen with that content).
    File(PathBuf),
    /// An encoded `Directory`, produced by the snapshot itself.
    Inline(Bytes),
}

impl BlobSource {
    /// Reads the bytes. A file may have changed since it was hashed; callers
    /// that care must re-verify.
    pub fn read(&self) -> Result<Bytes, TreeError> {
        match self {
            BlobSource::Inline(bytes) => Ok(bytes.clone()),
            BlobSource::File(path) => {
                std::fs::read(path)
                    .map(Bytes::from)
                    .map_err(|source| TreeError::Io {
                        path: path.clone(),
                        source,
                    })
            }
        }
    }
}

/// A hashed working tree: its root digest and every blob it references.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub root: Digest,
    /// Regular files in the tree (duplicates counted once per path).
    pub file_count: u64,
    /// Sum of regular file sizes, per path.
    pub total_bytes: u64,
    /// Directories including the root.
    pub directory_count: u64,
    pub symlink_count: u64,
    blobs: BTreeMap<Digest, BlobSource>,
}

impl Snapshot {
    /// Every distinct blob (files and directory encodings), in digest order.
    pub fn blobs(&self) -> impl Iterator<Item = (&Digest, &BlobSource)> {
        self.blobs.iter()
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn source(&self, digest: &Digest) -> Option<&BlobSource> {
        self.blobs.get(digest)
    }

    /// Every directory of the snapshot as a listing, keyed by digest: the
    /// same shape GetTree gives, so subsetting and diffing work on either.
    pub fn listings(&self) -> Result<Listings, TreeError> {
        let mut listings = Listings::new();
        for (digest, source) in &self.blobs {
            if let BlobSource::Inline(bytes) = source {
                listings.insert(*digest, DirectoryListing::decode(digest, bytes)?);
            }
        }
        Ok(listings)
    }
}
