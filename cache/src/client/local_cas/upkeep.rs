//! Keeping the local cache whole: publishing sealed entries, dropping
//! changed ones, evicting the least recently used, and reading back what a
//! directory holds at open.

use super::entry_file::unsealed_because;
use super::index::Trust;
use super::*;

/// Whether a new entry is pinned: kept from eviction until the caller has
/// placed it (and unpins it), so a tight cap cannot evict it in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pin {
    Pinned,
    Unpinned,
}

impl LocalCas {
    /// Makes a sealed temporary file the entry for `key`. If an intact entry
    /// is already there (a concurrent insert of the same blob), that one is
    /// kept and the temporary file discarded. What is recorded is the
    /// entry's `stat` once the temporary name is gone (unlinking it sets the
    /// ctime), which may differ from `sealed` in nothing else.
    pub(super) fn publish(
        &self,
        tmp: &Path,
        key: EntryKey,
        sealed: EntryStat,
        pin: Pin,
    ) -> Result<(), LocalCasError> {
        let path = self.path_of(&key);
        let result = {
            let _serial = self.stripe(&key);
            let mut index = self.inner.index.lock();
            let placed = match std::fs::hard_link(tmp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    match (index.get(&key), stat_entry(&path)) {
                        (Some(recorded), Ok(now)) if recorded.proves(&now) => Ok(false),
                        (_, seen) => {
                            // Not recorded, unverified or changed: ours
                            // (verified just now) replaces it.
                            tracing::warn!(
                                entry = %path.display(),
                                ?seen,
                                "replacing an unrecorded or changed local cache entry"
                            );
                            self.inner
                                .counters
                                .stale_dropped
                                .fetch_add(1, Ordering::Relaxed);
                            std::fs::rename(tmp, &path).map(|()| true)
                        }
                    }
                }
                Err(e) => Err(e),
            };
            // After a rename the temporary name is gone already.
            match std::fs::remove_file(tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(tmp = %tmp.display(), error = %e, "cannot remove temporary file")
                }
            }
            let result = match placed {
                Ok(true) => stat_entry(&path).map(|now| {
                    let trust = if now.same_but_ctime(&sealed) {
                        Trust::Sealed
                    } else {
                        tracing::warn!(entry = %path.display(), ?sealed, ?now, "local cache entry changed while it was published; it will be hashed before use");
                        Trust::Unverified
                    };
                    index.record(key, Recorded { stat: now, trust });
                    true
                }),
                other => other,
            };
            if pin == Pin::Pinned && result.is_ok() {
                index.pin(&key);
            }
            if let (Ok(true), Some(cap)) = (&result, self.inner.max_bytes) {
                self.evict_locked(&mut index, cap);
            }
            result
        };
        if matches!(result, Ok(true)) {
            self.inner.counters.inserted.fetch_add(1, Ordering::Relaxed);
        }
        result.map(|_| ()).map_err(io_at(&path))
    }

    /// Forgets and removes an entry that no longer shows `recorded`.
    pub(super) fn drop_entry(&self, key: &EntryKey, recorded: &EntryStat, path: &Path) {
        let mut index = self.inner.index.lock();
        if !index.remove_if(key, recorded) {
            return; // Someone else already dropped or replaced it.
        }
        self.inner
            .counters
            .stale_dropped
            .fetch_add(1, Ordering::Relaxed);
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %path.display(), error = %e, "cannot remove a dropped entry")
            }
        }
    }

    pub(super) fn evict_locked(&self, index: &mut Index, cap: u64) {
        let victims = index.evict_to(cap);
        if victims.is_empty() {
            if index.total_bytes() > cap {
                tracing::debug!(
                    bytes = index.total_bytes(),
                    cap,
                    "local cache over its cap; the rest is pinned by running materialisations"
                );
            }
            return;
        }
        let mut bytes = 0u64;
        for (key, stat) in &victims {
            bytes += stat.size;
            let path = self.path_of(key);
            tracing::debug!(entry = %path.display(), "evicting");
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(entry = %path.display(), error = %e, "cannot remove an evicted entry");
            }
        }
        let c = &self.inner.counters;
        c.evicted.fetch_add(victims.len() as u64, Ordering::Relaxed);
        c.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
        tracing::info!(
            entries = victims.len(),
            bytes,
            remaining = index.total_bytes(),
            cap,
            "local cache evicted least recently used entries"
        );
    }

    /// Rebuilds the index from the directory. Entries keep no record across
    /// restarts: those whose `stat` still looks sealed are kept as
    /// unverified (hashed before their first use), the others removed.
    pub(super) fn load_existing(&self) -> Result<(), LocalCasError> {
        let mut kept = 0u64;
        let mut removed = 0u64;
        for byte in 0..=255u8 {
            let sub = self.inner.dir.join(hex::encode([byte]));
            std::fs::create_dir_all(&sub).map_err(io_at(&sub))?;
            for dirent in std::fs::read_dir(&sub).map_err(io_at(&sub))? {
                let dirent = dirent.map_err(io_at(&sub))?;
                let path = dirent.path();
                let name = dirent.file_name();
                let Some(key) = name.to_str().and_then(parse_entry_name) else {
                    tracing::warn!(path = %path.display(), "ignoring a stranger in the local cache");
                    continue;
                };
                let meta = std::fs::symlink_metadata(&path).map_err(io_at(&path))?;
                let stat = stat_of(&meta);
                let unsealed = if !meta.is_file() {
                    Some("it is not a regular file")
                } else if fan_out(&key.digest) != *sub_name(&sub) {
                    Some("it is in the wrong directory")
                } else {
                    unsealed_because(&key, &stat, self.inner.owner)
                };
                if let Some(reason) = unsealed {
                    tracing::warn!(entry = %path.display(), reason, ?stat, "dropping a changed local cache entry");
                    std::fs::remove_file(&path).map_err(io_at(&path))?;
                    removed += 1;
                } else {
                    let found = Recorded {
                        stat,
                        trust: Trust::Unverified,
                    };
                    self.inner.index.lock().record(key, found);
                    kept += 1;
                }
            }
        }
        self.inner
            .counters
            .stale_dropped
            .fetch_add(removed, Ordering::Relaxed);
        tracing::info!(dir = %self.inner.dir.display(), kept, removed, "opened local cache (kept entries are hashed again before their first use)");
        Ok(())
    }
}
