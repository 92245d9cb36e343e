//! A runner-local content-addressed blob cache, so a warm runner restores a
//! tree by hard-linking files it already holds instead of downloading and
//! writing them again.
//!
//! Layout: `<dir>/<first hash byte as hex>/<hash>-<size>-<x|r>`, plus
//! `<dir>/tmp/` for inserts in progress. The directory is the owner's alone
//! (0700): a step sees its inputs through their links in its work
//! directory, never the other projects' blobs. Every entry is verified
//! before it becomes visible (BLAKE3 of its bytes), published atomically (a
//! hard link from the temporary file, so two concurrent inserts of one blob
//! can't clobber each other), owned by the cache's owner, read-only
//! (0o555 / 0o444) and stamped with a fixed mtime. Executable and plain
//! copies of one content are separate entries because hard links share the
//! inode, hence the mode.
//!
//! A step running as another user cannot write an entry through its link
//! (EACCES). A step running as root can, and can put the mtime back
//! (`touch -d`), so the mtime alone proves nothing. What it cannot put back
//! is the ctime: each entry's `stat` is recorded with its ctime, and before
//! an entry is linked one `stat` must show exactly that; any difference —
//! and every entry found in the directory when it is opened, whose ctime
//! nobody recorded — means its bytes are hashed again first (`trust`). A
//! changed entry is dropped with a warning and fetched again; the
//! materialisation counts it so the shard's log can say so. Linking and
//! unlinking change the ctime too, so this process records the ones it
//! makes itself: each link is made between two `stat`s under a per-entry
//! lock, and a work directory is removed through
//! [`LocalCas::remove_work_dir`], which does the same for each unlink.
//! What remains is a window of two system calls in which a write by a
//! process already holding a link (a concurrently running root step) would
//! be recorded as ours; a step user closes it.
//!
//! One process should own a directory: the index lives in memory (rebuilt
//! from the directory by [`LocalCas::open`]) and `open` clears `tmp/`. Share
//! one [`LocalCas`] between tasks by cloning it.

mod entry_file;
mod index;
#[cfg(test)]
mod tests;
mod trust;
mod upkeep;

use upkeep::Pin;

use crate::tree::FileMode;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use thiserror::Error;

use crate::error::CacheError;
use buildfleet_model::digest::Digest;
pub use entry_file::{copy_entry, Placement};
use entry_file::{entry_name, fan_out, parse_entry_name, stat_entry, stat_of, Owner};
pub(crate) use entry_file::{link_or_copy, PlaceError};
use index::{EntryKey, EntryStat, Index, Recorded};
pub(crate) use trust::Linked;
pub use trust::{Probe, Released};

/// Why a local cache operation failed.
#[derive(Debug, Error)]
pub enum LocalCasError {
    #[error("local cache I/O on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bytes offered under a digest hash to something else.
    #[error("{what} does not match {expected}: it hashes to {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// The entry is not in the cache (or was dropped as changed).
    #[error("{0} is not in the local cache")]
    NotCached(Digest),
}

impl From<LocalCasError> for CacheError {
    fn from(err: LocalCasError) -> Self {
        match err {
            LocalCasError::Io { path, source } => CacheError::Io { path, source },
            LocalCasError::DigestMismatch {
                expected, actual, ..
            } => CacheError::CorruptDownload { expected, actual },
            LocalCasError::NotCached(digest) => CacheError::NotFound(digest),
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LocalCasError + '_ {
    move |source| LocalCasError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Counters since [`LocalCas::open`], plus the current size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalCasStats {
    pub entries: u64,
    pub bytes: u64,
    /// Lookups that found an intact entry.
    pub hits: u64,
    /// Lookups that found nothing (including dropped entries).
    pub misses: u64,
    pub inserted: u64,
    /// Entries found changed (written to, chmod-ed, replaced) and dropped,
    /// at lookup or when reopening the directory.
    pub stale_dropped: u64,
    /// Entries whose bytes were hashed again before use (found at open, or
    /// their ctime changed by something this process did not record) and
    /// found intact.
    pub rehashed: u64,
    /// Entries removed to stay under the size cap.
    pub evicted: u64,
    pub evicted_bytes: u64,
    /// [`LocalCas::insert_file`] calls that had to copy (shared inode or
    /// another filesystem) instead of linking.
    pub adopted_by_copy: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    inserted: AtomicU64,
    stale_dropped: AtomicU64,
    rehashed: AtomicU64,
    evicted: AtomicU64,
    evicted_bytes: AtomicU64,
    adopted_by_copy: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tmp_dir: PathBuf,
    /// Who every entry belongs to.
    owner: Owner,
    /// The directory's filesystem: only a file on it can be a link.
    dev: u64,
    max_bytes: Option<u64>,
    /// Held for bookkeeping and for every change to entry *names* (publish,
    /// drop, evict), so a name is never removed while another thread is
    /// recording it. Never held across reads of file contents.
    index: Mutex<Index>,
    counters: Counters,
    next_tmp: AtomicU64,
    /// Serialise the `stat`, link, `stat` of one entry (by digest) so the
    /// ctime each leaves is recorded before anything else of ours changes
    /// it; taken before `index`, never after.
    stripes: trust::Stripes,
}

/// A directory of verified blobs, shared by every materialisation on a
/// runner. Cheap to clone; clones share the index.
#[derive(Debug, Clone)]
pub struct LocalCas {
    inner: Arc<Inner>,
}

impl LocalCas {
    /// Opens (creating if needed) the cache in `dir`, closing it to other
    /// users (0700). Existing entries are kept, unverified, if their `stat`
    /// still looks sealed: their bytes are hashed before their first use
    /// (nobody recorded their ctime). Others are removed (logged).
    /// `max_bytes` caps the total size of entries, evicting least recently
    /// used ones; `None` means no cap.
    pub fn open(
        dir: impl Into<PathBuf>,
        max_bytes: Option<u64>,
    ) -> Result<LocalCas, LocalCasError> {
        let dir = dir.into();
        let tmp_dir = dir.join("tmp");
        match std::fs::remove_dir_all(&tmp_dir) {
            Ok(()) => tracing::debug!(dir = %tmp_dir.display(), "cleared leftover inserts"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&tmp_dir)(e)),
        }
        std::fs::create_dir_all(&tmp_dir).map_err(io_at(&tmp_dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_at(&dir))?;
        // `tmp/` was made just now, so it is owned by whoever we write as.
        let made = std::fs::metadata(&tmp_dir).map_err(io_at(&tmp_dir))?;
        let owner = Owner {
            uid: made.uid(),
            gid: made.gid(),
        };
        let cas = LocalCas {
            inner: Arc::new(Inner {
                dev: made.dev(),
                owner,
                dir,
                tmp_dir,
                stripes: trust::Stripes::default(),
                max_bytes,
                index: Mutex::new(Index::default()),
                counters: Counters::default(),
                next_tmp: AtomicU64::new(0),
            }),
        };
        cas.load_existing()?;
        if let Some(cap) = max_bytes {
            let mut index = cas.inner.index.lock();
            cas.evict_locked(&mut index, cap);
        }
        Ok(cas)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Where the entry for `digest` (as mode or not) lives, whether
    /// or not it exists.
    pub fn entry_path(&self, digest: &Digest, mode: FileMode) -> PathBuf {
        self.path_of(&EntryKey {
            digest: *digest,
            mode,
        })
    }

    /// True if an intact entry is present; a changed one is dropped.
    pub fn contains(&self, digest: &Digest, mode: FileMode) -> bool {
        self.probe(digest, mode) == Probe::Intact
    }

    /// Whether an intact entry is present, absent, or was there but had
    /// changed (dropped with a warning; fetch the blob again and say so).
    pub fn probe(&self, digest: &Digest, mode: FileMode) -> Probe {
        match self.check_key(&EntryKey {
            digest: *digest,
            mode,
        }) {
            trust::Checked::Intact(_) => Probe::Intact,
            trust::Checked::Absent => Probe::Absent,
            trust::Checked::Changed => Probe::Changed,
        }
    }

    /// Adds `data` under `digest`, verifying it first.
    pub fn insert_bytes(
        &self,
        digest: &Digest,
        data: &[u8],
        mode: FileMode,
    ) -> Result<(), LocalCasError> {
        let actual = Digest::of(data);
        if actual != *digest {
            return Err(LocalCasError::DigestMismatch {
                what: "inserted bytes".into(),
                expected: *digest,
                actual,
            });
        }
        self.insert_verified(
            EntryKey {
                digest: *digest,
                mode,
            },
            data,
            Pin::Unpinned,
        )
    }

    /// Adopts the existing file at `path` as the entry for `digest`. Used
    /// after a step saves a dependency cache, so the next restore on this
    /// runner is warm without downloading.
    ///
    /// A file with no other hard link is adopted by linking it (the file
    /// then *is* the entry: it is given to the cache's owner — a step user
    /// who wrote it can no longer write or `chmod` it —, becomes read-only
    /// with the fixed mtime, and later writes to it will be noticed). A file that shares its inode —
    /// typically one a restore linked from this cache and a step then
    /// rewrote in place — is copied instead: sealing it would reset the
    /// mtime of every other link, including the entry it came from, and hide
    /// that entry's change. A file that already is the intact entry for
    /// `digest` needs nothing. Files on another filesystem are copied too.
    /// Copies return [`Placement::Copied`] and are counted in
    /// [`LocalCasStats::adopted_by_copy`]. The bytes are hashed after
    /// sealing, so a write racing with the adoption is caught by the hash
    /// or by the `stat` check.
    pub fn insert_file(
        &self,
        path: &Path,
        digest: &Digest,
        mode: FileMode,
    ) -> Result<Placement, LocalCasError> {
        let key = EntryKey {
            digest: *digest,
            mode,
        };
        let meta = std::fs::symlink_metadata(path).map_err(io_at(path))?;
        if meta.nlink() > 1 {
            let is_entry = self
                .check(&key)
                .is_some_and(|entry| stat_entry(&entry).is_ok_and(|stat| stat.ino == meta.ino()));
            if is_entry {
                return Ok(Placement::Linked);
            }
        }
        let tmp = self.temp_path();
        let linked = if meta.nlink() == 1 {
            std::fs::hard_link(path, &tmp)
        } else {
            Err(io::Error::other(
                "the file shares its inode with other links",
            ))
        };
        let owner = self.inner.owner;
        // Sealing a linked file gives it to the owner: where that is not
        // allowed (a runner that is not root, adopting another user's file)
        // the file is copied instead.
        let adopted = linked.and_then(|()| {
            let file = std::fs::File::open(&tmp)?;
            let sealed = entry_file::seal(&file, mode, owner)
                .inspect_err(|_| drop(std::fs::remove_file(&tmp)))?;
            Ok((file, sealed))
        });
        let (placement, hashed, sealed) = match adopted {
            Ok((file, sealed)) => {
                let hashed = entry_file::hash_reader(&mut &file).map_err(io_at(path))?;
                (Placement::Linked, hashed, sealed)
            }
            Err(reason) => {
                tracing::debug!(path = %path.display(), %reason, "adopting into the local cache by copy");
                let (hashed, sealed) =
                    entry_file::copy_hashing(path, &tmp, mode, owner).map_err(io_at(path))?;
                (Placement::Copied, hashed, sealed)
            }
        };
        let now = stat_entry(&tmp).map_err(io_at(&tmp));
        let unchanged = matches!(&now, Ok(stat) if *stat == sealed);
        if hashed != *digest || !unchanged {
            let _ = std::fs::remove_file(&tmp);
            now?;
            return Err(LocalCasError::DigestMismatch {
                what: path.display().to_string(),
                expected: *digest,
                actual: hashed,
            });
        }
        self.publish(&tmp, key, sealed, Pin::Unpinned)?;
        if placement == Placement::Copied {
            self.inner
                .counters
                .adopted_by_copy
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(placement)
    }

    /// Checks the entry (one `stat`, or its bytes hashed again when that
    /// `stat` is not the recorded one), then hard-links it at `dest` (copy
    /// if linking fails, logged). The entry must exist and be intact.
    pub fn link_into(
        &self,
        digest: &Digest,
        mode: FileMode,
        dest: &Path,
    ) -> Result<Placement, LocalCasError> {
        let key = EntryKey {
            digest: *digest,
            mode,
        };
        match self.link_checked(&key, dest) {
            Ok(Linked::Placed {
                placement,
                link_error,
            }) => {
                if let Some(err) = link_error {
                    tracing::info!(dest = %dest.display(), error = %err, "hard link failed; copied");
                }
                Ok(placement)
            }
            Ok(Linked::Absent | Linked::Changed) | Err(PlaceError::SourceGone) => {
                Err(LocalCasError::NotCached(*digest))
            }
            Err(PlaceError::Io { path, source }) => Err(LocalCasError::Io { path, source }),
        }
    }

    pub fn stats(&self) -> LocalCasStats {
        let (entries, bytes) = {
            let index = self.inner.index.lock();
            (index.len() as u64, index.total_bytes())
        };
        let c = &self.inner.counters;
        LocalCasStats {
            entries,
            bytes,
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            inserted: c.inserted.load(Ordering::Relaxed),
            stale_dropped: c.stale_dropped.load(Ordering::Relaxed),
            rehashed: c.rehashed.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            evicted_bytes: c.evicted_bytes.load(Ordering::Relaxed),
            adopted_by_copy: c.adopted_by_copy.load(Ordering::Relaxed),
        }
    }

    /// The entry's path if it is intact, else `None` (a changed entry is
    /// dropped and logged).
    fn check(&self, key: &EntryKey) -> Option<PathBuf> {
        match self.check_key(key) {
            trust::Checked::Intact(path) => Some(path),
            trust::Checked::Absent | trust::Checked::Changed => None,
        }
    }

    /// Links (or copies) the entry for `digest` at `dest` once it is proven
    /// intact, for a materialisation.
    pub(crate) fn link_file(
        &self,
        digest: &Digest,
        mode: FileMode,
        dest: &Path,
    ) -> Result<Linked, PlaceError> {
        self.link_checked(
            &EntryKey {
                digest: *digest,
                mode,
            },
            dest,
        )
    }

    /// Releases a pin; evicts if pins had kept the cache over its cap, so a
    /// finished materialisation leaves the cache within it.
    pub(crate) fn unpin(&self, digest: &Digest, mode: FileMode) {
        let mut index = self.inner.index.lock();
        index.unpin(&EntryKey {
            digest: *digest,
            mode,
        });
        if let Some(cap) = self.inner.max_bytes {
            if index.total_bytes() > cap {
                self.evict_locked(&mut index, cap);
            }
        }
    }

    /// Inserts bytes the caller has just verified against `key.digest` (a
    /// download checked by the client), sparing a second hash.
    fn insert_verified(&self, key: EntryKey, data: &[u8], pin: Pin) -> Result<(), LocalCasError> {
        let tmp = self.temp_path();
        let sealed = match entry_file::write_new(&tmp, data, key.mode, self.inner.owner) {
            Ok(sealed) => sealed,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_at(&tmp)(e));
            }
        };
        self.publish(&tmp, key, sealed, pin)
    }

    /// Inserts and pins in one step, for a materialisation that will link
    /// from the entry next.
    pub(crate) fn insert_verified_pinned(
        &self,
        digest: &Digest,
        mode: FileMode,
        data: &[u8],
    ) -> Result<(), LocalCasError> {
        let key = EntryKey {
            digest: *digest,
            mode,
        };
        self.insert_verified(key, data, Pin::Pinned)
    }

    /// A fresh path in `tmp/` for an insert in progress.
    pub(crate) fn temp_path(&self) -> PathBuf {
        let n = self.inner.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.inner
            .tmp_dir
            .join(format!("{}-{n}", std::process::id()))
    }

    /// Seals a verified temporary file (e.g. a streamed download) and
    /// publishes it pinned.
    pub(crate) fn publish_verified_temp_pinned(
        &self,
        tmp: &Path,
        digest: &Digest,
        mode: FileMode,
    ) -> Result<(), LocalCasError> {
        let key = EntryKey {
            digest: *digest,
            mode,
        };
        let owner = self.inner.owner;
        let sealed = std::fs::File::open(tmp).and_then(|f| entry_file::seal(&f, mode, owner));
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(tmp);
                return Err(io_at(tmp)(e));
            }
        };
        self.publish(tmp, key, sealed, Pin::Pinned)
    }

    fn path_of(&self, key: &EntryKey) -> PathBuf {
        let mut path = self.inner.dir.join(fan_out(&key.digest));
        path.push(entry_name(key));
        path
    }
}

fn sub_name(sub: &Path) -> &str {
    sub.file_name().and_then(|n| n.to_str()).unwrap_or_default()
}
