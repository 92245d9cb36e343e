//! When an entry's recorded `stat` may stand for its bytes, and keeping it
//! so across the links this process makes and removes.
//!
//! A recorded `stat` proves the bytes only while every change of the
//! inode's ctime was made by this process and recorded as it happened.
//! Hard links are the catch: `link` and `unlink` set the ctime as a write
//! does, so each link into a work directory is made between two `stat`s
//! under the entry's stripe lock — the first must prove the entry, the
//! second may differ from it only in the ctime, and is recorded. Removing a
//! work directory ([`LocalCas::remove_work_dir`]) does the same for each
//! link it unlinks. Anything else that changes the ctime — a step's write,
//! `chmod`, `touch -d`, or merely `rm` of its own input — makes the next
//! use hash the bytes again: intact, the entry is recorded again; changed,
//! it is dropped with a warning and the blob fetched again.
//!
//! Hashing at every use would be exact and slow (a warm restore would cost
//! reading every input); one `stat` per use costs what the link does.
//! Entries found at [`LocalCas::open`] are hashed before their first use
//! rather than trusted from a persisted record: a record file could be
//! rewritten by the same root step that rewrote an entry, a crash leaves
//! none, and hashing only what is used again costs nothing for what is
//! evicted unused.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use parking_lot::MutexGuard;

use super::entry_file::{hash_reader, unsealed_because};
use super::index::Trust;
use super::*;

/// Stripe locks by digest: enough that the link tree's workers rarely wait
/// on each other, few enough to be a fixed array.
const STRIPES: usize = 64;

/// How often a check is repeated when the entry keeps changing while it is
/// looked at; after that it is treated as absent (fetched again).
const ATTEMPTS: usize = 4;

#[derive(Debug)]
pub(super) struct Stripes([Mutex<()>; STRIPES]);

impl Default for Stripes {
    fn default() -> Stripes {
        Stripes(std::array::from_fn(|_| Mutex::new(())))
    }
}

/// What looking at an entry found.
#[derive(Debug)]
pub(super) enum Checked {
    Intact(PathBuf),
    Absent,
    /// It was there, but its bytes (or mode, or owner) had changed: dropped
    /// with a warning.
    Changed,
}

/// [`LocalCas::probe`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Intact,
    Absent,
    /// The entry had changed since it was stored (a step wrote to a linked
    /// input): dropped, with a warning in the runner's log. Whoever wanted
    /// it fetches the blob again, and should say so.
    Changed,
}

/// What placing an entry at a destination did.
#[derive(Debug)]
pub(crate) enum Linked {
    Placed {
        placement: Placement,
        /// Why linking failed, when the entry was copied instead.
        link_error: Option<io::Error>,
    },
    Absent,
    /// The entry had changed since it was stored: dropped, to be fetched.
    Changed,
}

/// What [`LocalCas::remove_work_dir`] found among the directory's files.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// Links to intact entries, unlinked with their ctime recorded.
    pub released: u64,
    /// Links to entries whose `stat` no longer proved them (the step
    /// changed them, or unlinked one of their links itself): left for the
    /// next use to hash.
    pub unproven: u64,
}

/// Why re-hashing did not prove an entry.
#[derive(Debug, thiserror::Error)]
enum Unsound {
    #[error("{0}")]
    Stat(&'static str),
    #[error("its bytes hash to {actual}")]
    Bytes { actual: Digest },
    #[error("it changed while it was hashed")]
    Moving,
    #[error("it cannot be read: {0}")]
    Io(#[from] io::Error),
}

impl LocalCas {
    pub(super) fn stripe(&self, key: &EntryKey) -> MutexGuard<'_, ()> {
        let i = usize::from(key.digest.hash[1]) % STRIPES;
        self.inner.stripes.0[i].lock()
    }

    /// The entry if it is intact: one `stat` equal to the sealed record, or
    /// else its bytes hashed again (and recorded, or the entry dropped).
    pub(super) fn check_key(&self, key: &EntryKey) -> Checked {
        let counters = &self.inner.counters;
        for _ in 0..ATTEMPTS {
            // The record and the `stat` are read under the entry's stripe,
            // as every link and unlink the cache makes is recorded under
            // it: otherwise a link made by another thread in between moves
            // the ctime, and a busy entry would look changed to a reader.
            let serial = self.stripe(key);
            let Some(recorded) = self.inner.index.lock().get(key) else {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                return Checked::Absent;
            };
            let path = self.path_of(key);
            let now = match stat_entry(&path) {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(entry = %path.display(), error = %e, "local cache entry vanished or is not a file; dropping it");
                    self.drop_entry(key, &recorded.stat, &path);
                    counters.misses.fetch_add(1, Ordering::Relaxed);
                    return Checked::Absent;
                }
            };
            if recorded.proves(&now) {
                self.inner.index.lock().touch(key);
                counters.hits.fetch_add(1, Ordering::Relaxed);
                return Checked::Intact(path);
            }
            // Hashing takes long: others may link meanwhile (the record
            // then moves on, and the next round reads it).
            drop(serial);
            if !self.rehash(key, &path, &recorded) {
                counters.misses.fetch_add(1, Ordering::Relaxed);
                return Checked::Changed;
            }
        }
        tracing::warn!(entry = %self.path_of(key).display(), "local cache entry keeps changing while it is checked; fetching the blob instead");
        counters.misses.fetch_add(1, Ordering::Relaxed);
        Checked::Absent
    }

    /// Hashes an entry whose `stat` did not prove it. True if intact (and
    /// recorded as sealed); false if changed (dropped, with a warning).
    fn rehash(&self, key: &EntryKey, path: &Path, recorded: &Recorded) -> bool {
        match hash_entry(path, key, self.inner.owner) {
            Ok(stat) => {
                let mut index = self.inner.index.lock();
                if index.replace_if(key, recorded, Recorded::sealed(stat)) {
                    self.inner.counters.rehashed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        entry = %path.display(),
                        trust = ?recorded.trust,
                        was = ?recorded.stat,
                        now = ?stat,
                        "local cache entry hashed again: intact"
                    );
                }
                true
            }
            Err(why) => {
                tracing::warn!(
                    entry = %path.display(),
                    digest = %key.digest,
                    reason = %why,
                    "local cache entry CHANGED since it was stored (a step wrote to a linked \
                     input?): dropping it; the blob will be fetched again"
                );
                self.drop_entry(key, &recorded.stat, path);
                false
            }
        }
    }

    /// Places the entry at `dest` (hard link, else copy) once it is proven
    /// intact, recording the ctime the link leaves. Between the two `stat`s
    /// only the ctime may change; anything more means something wrote to
    /// the entry meanwhile, so the new link is removed and the entry hashed
    /// again before it is tried once more.
    pub(crate) fn link_checked(&self, key: &EntryKey, dest: &Path) -> Result<Linked, PlaceError> {
        for _ in 0..ATTEMPTS {
            let path = match self.check_key(key) {
                Checked::Intact(path) => path,
                Checked::Absent => return Ok(Linked::Absent),
                Checked::Changed => return Ok(Linked::Changed),
            };
            let _serial = self.stripe(key);
            let Some(recorded) = self.inner.index.lock().get(key) else {
                return Ok(Linked::Absent);
            };
            let pre = match stat_entry(&path) {
                Ok(pre) if recorded.proves(&pre) => pre,
                _ => continue,
            };
            let (placement, link_error) = match link_or_copy(&path, dest, key.mode) {
                Ok(placed) => placed,
                Err(PlaceError::SourceGone) => return Ok(Linked::Absent),
                Err(e) => return Err(e),
            };
            let post = stat_entry(&path);
            let kept = match (placement, &post) {
                (Placement::Linked, Ok(post)) => post.same_but_ctime(&pre),
                (Placement::Copied, Ok(post)) => *post == pre,
                (_, Err(_)) => false,
            };
            let mut index = self.inner.index.lock();
            match post {
                Ok(post) if kept => {
                    index.replace_if(key, &recorded, Recorded::sealed(post));
                    return Ok(Linked::Placed {
                        placement,
                        link_error,
                    });
                }
                Ok(post) => {
                    let unverified = Recorded {
                        stat: post,
                        trust: Trust::Unverified,
                    };
                    index.replace_if(key, &recorded, unverified);
                }
                Err(_) => {}
            }
            drop(index);
            tracing::warn!(entry = %path.display(), dest = %dest.display(), "local cache entry changed while it was being linked; linking it again after hashing it");
            if let Err(e) = std::fs::remove_file(dest) {
                return Err(PlaceError::Io {
                    path: dest.to_owned(),
                    source: e,
                });
            }
        }
        Ok(Linked::Absent)
    }

    /// Removes a work directory whose files were linked from this cache:
    /// first each link to an entry, one by one between two `stat`s (as
    /// [`link_checked`](Self::link_checked) makes them), so the entries'
    /// new ctimes are recorded and the next shard links them with one
    /// `stat` each; then everything else. A link whose entry no longer
    /// shows its record is left alone: the next use hashes it.
    pub fn remove_work_dir(&self, dir: &Path) -> io::Result<Released> {
        let mut released = Released::default();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            let Ok(listing) = std::fs::read_dir(&d) else {
                continue; // remove_dir_all below says what is wrong
            };
            for dirent in listing.flatten() {
                let Ok(kind) = dirent.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    dirs.push(dirent.path());
                } else if kind.is_file() {
                    self.release_link(&dirent.path(), &mut released);
                }
            }
        }
        std::fs::remove_dir_all(dir)?;
        Ok(released)
    }

    fn release_link(&self, link: &Path, released: &mut Released) {
        let Ok(meta) = std::fs::symlink_metadata(link) else {
            return;
        };
        if meta.nlink() < 2 || meta.dev() != self.inner.dev {
            return;
        }
        let Some(key) = self.inner.index.lock().key_of_ino(meta.ino()) else {
            return;
        };
        let _serial = self.stripe(&key);
        let Some(recorded) = self.inner.index.lock().get(&key) else {
            return;
        };
        let path = self.path_of(&key);
        let pre = match stat_entry(&path) {
            Ok(pre) if recorded.proves(&pre) && pre.ino == meta.ino() => pre,
            _ => {
                released.unproven += 1;
                return;
            }
        };
        if std::fs::remove_file(link).is_err() {
            return;
        }
        let Ok(post) = stat_entry(&path) else {
            return;
        };
        let trust = if post.same_but_ctime(&pre) {
            released.released += 1;
            Trust::Sealed
        } else {
            released.unproven += 1;
            Trust::Unverified
        };
        self.inner
            .index
            .lock()
            .replace_if(&key, &recorded, Recorded { stat: post, trust });
    }
}

/// Hashes the entry at `path`; its `stat` (as it stayed throughout) if the
/// bytes are `key`'s and it looks sealed.
fn hash_entry(path: &Path, key: &EntryKey, owner: Owner) -> Result<EntryStat, Unsound> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Unsound::Stat("it is not a regular file"));
    }
    let before = stat_of(&meta);
    if let Some(why) = unsealed_because(key, &before, owner) {
        return Err(Unsound::Stat(why));
    }
    let actual = hash_reader(&mut &file)?;
    let after = stat_of(&file.metadata()?);
    // The name must still be this inode, unchanged while it was read.
    let named = stat_entry(path)?;
    if after != before || named != after {
        return Err(Unsound::Moving);
    }
    if actual != key.digest {
        return Err(Unsound::Bytes { actual });
    }
    Ok(after)
}
