//! The in-memory view of a [`LocalCas`](super::LocalCas) directory: which
//! entries exist, what their one `stat` must still show, their LRU order and
//! pins. Pure bookkeeping: no I/O happens here, so the lock around it is only
//! ever held for map updates.

use crate::tree::FileMode;
use std::collections::{BTreeMap, HashMap};

use buildfleet_model::digest::Digest;

/// One cache entry: the same content as mode and as plain file are two
/// entries, because hard links share the inode and so its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    pub digest: Digest,
    pub mode: FileMode,
}

/// What a single `stat` of an intact entry shows. Any in-place write changes
/// the mtime (entries carry a fixed stamp far in the past), a `chmod` the
/// mode, a replaced file the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStat {
    pub size: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: i64,
    pub ino: u64,
    pub mode: u32,
}

#[derive(Debug)]
struct Entry {
    stat: EntryStat,
    /// Position in `lru`; larger is more recent.
    tick: u64,
    /// Materialisations that will still link from this entry; eviction
    /// skips it while this is non-zero.
    pins: u32,
}

/// Entries, their total size and their LRU order.
#[derive(Debug, Default)]
pub struct Index {
    entries: HashMap<EntryKey, Entry>,
    lru: BTreeMap<u64, EntryKey>,
    next_tick: u64,
    total_bytes: u64,
}

impl Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn get(&self, key: &EntryKey) -> Option<EntryStat> {
        self.entries.get(key).map(|e| e.stat)
    }

    /// Records (or replaces) an entry as most recently used, keeping any pins
    /// it already had.
    pub fn record(&mut self, key: EntryKey, stat: EntryStat) {
        let tick = self.bump();
        let pins = match self.entries.remove(&key) {
            Some(old) => {
                self.lru.remove(&old.tick);
                self.total_bytes -= old.stat.size;
                old.pins
            }
            None => 0,
        };
        self.lru.insert(tick, key);
        self.total_bytes += stat.size;
        self.entries.insert(key, Entry { stat, tick, pins });
    }

    /// Marks an entry as just used.
    pub fn touch(&mut self, key: &EntryKey) {
        let tick = self.bump();
        if let Some(entry) = self.entries.get_mut(key) {
            self.lru.remove(&entry.tick);
            entry.tick = tick;
            self.lru.insert(tick, *key);
        }
    }

    /// Forgets an entry if it still shows `stat` (so a fresh entry recorded
    /// by a concurrent insert is not forgotten by a stale check). True if it
    /// was forgotten.
    pub fn remove_if(&mut self, key: &EntryKey, stat: &EntryStat) -> bool {
        match self.entries.get(key) {
            Some(entry) if entry.stat == *stat => {
                let entry = self.entries.remove(key).expect("just looked up");
                self.lru.remove(&entry.tick);
                self.total_bytes -= entry.stat.size;
                true
            }
            _ => false,
        }
    }

    pub fn pin(&mut self, key: &EntryKey) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.pins += 1;
        }
    }

    pub fn unpin(&mut self, key: &EntryKey) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.pins = entry.pins.saturating_sub(1);
        }
    }

    /// Removes least recently used unpinned entries until the total is at
    /// most `cap`, returning them. Pinned entries are in use by a running
    /// materialisation and stay, even if that leaves the total over the cap.
    pub fn evict_to(&mut self, cap: u64) -> Vec<(EntryKey, EntryStat)> {
        if self.total_bytes <= cap {
            return Vec::new();
        }
        let mut victims: Vec<(u64, EntryKey)> = Vec::new();
        let mut over = self.total_bytes - cap;
        for (&tick, key) in &self.lru {
            if over == 0 {
                break;
            }
            let entry = &self.entries[key];
            if entry.pins > 0 {
                continue;
            }
            over = over.saturating_sub(entry.stat.size);
            victims.push((tick, *key));
        }
        victims
            .into_iter()
            .map(|(tick, key)| {
                self.lru.remove(&tick);
                let entry = self.entries.remove(&key).expect("listed in lru");
                self.total_bytes -= entry.stat.size;
                (key, entry.stat)
            })
            .collect()
    }

    fn bump(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(data: &[u8]) -> EntryKey {
        EntryKey {
            digest: Digest::of(data),
            mode: FileMode::Plain,
        }
    }

    fn stat(size: u64, ino: u64) -> EntryStat {
        EntryStat {
            size,
            mtime_secs: 0,
            mtime_nanos: 0,
            ino,
            mode: 0o444,
        }
    }

    #[test]
    fn eviction_takes_least_recently_used_first_and_skips_pinned() {
        let mut index = Index::default();
        let (a, b, c) = (key(b"a"), key(b"b"), key(b"c"));
        index.record(a, stat(10, 1));
        index.record(b, stat(10, 2));
        index.record(c, stat(10, 3));
        assert_eq!(index.total_bytes(), 30);
        index.touch(&a); // order is now b, c, a
        index.pin(&b);
        let evicted = index.evict_to(15);
        let keys: Vec<EntryKey> = evicted.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![c, a], "b is pinned, c then a are oldest");
        assert_eq!(index.total_bytes(), 10);
        assert_eq!(index.len(), 1);
        index.unpin(&b);
        assert_eq!(index.evict_to(0).len(), 1);
        assert_eq!(index.total_bytes(), 0);
    }

    #[test]
    fn remove_if_ignores_an_entry_recorded_since() {
        let mut index = Index::default();
        let a = key(b"a");
        index.record(a, stat(1, 1));
        assert!(!index.remove_if(&a, &stat(1, 99)));
        assert_eq!(index.get(&a), Some(stat(1, 1)));
        assert!(index.remove_if(&a, &stat(1, 1)));
        assert_eq!(index.get(&a), None);
        assert_eq!(index.total_bytes(), 0);
    }

    #[test]
    fn re_recording_keeps_pins_and_fixes_the_total() {
        let mut index = Index::default();
        let a = key(b"a");
        index.record(a, stat(5, 1));
        index.pin(&a);
        index.record(a, stat(7, 2));
        assert_eq!(index.total_bytes(), 7);
        assert!(index.evict_to(0).is_empty(), "still pinned");
    }
}
