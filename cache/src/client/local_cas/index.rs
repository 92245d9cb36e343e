//! The in-memory view of a [`LocalCas`](super::LocalCas) directory: which
//! entries exist, what their `stat` must still show and whether that stat
//! can be trusted, their LRU order and pins. Pure bookkeeping: no I/O
//! happens here, so the lock around it is only ever held for map updates.

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

/// What a single `stat` of an intact entry shows. An in-place write changes
/// the mtime (entries carry a fixed stamp far in the past) — but a step
/// running as root can put the mtime back (`touch -d`). The ctime it
/// cannot: the kernel sets it to "now" on every change of the inode (data,
/// mode, owner, times, and its links), and no system call sets it to
/// anything else. So a recorded ctime that still shows proves the inode was
/// not touched since — provided every change this process makes itself (a
/// link into a work directory, an unlink when one is removed) is recorded
/// as it happens (see `trust.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryStat {
    pub size: u64,
    pub mtime_secs: i64,
    pub mtime_nanos: i64,
    pub ctime_secs: i64,
    pub ctime_nanos: i64,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
}

impl EntryStat {
    /// Equal in everything but the ctime: what linking or unlinking the
    /// entry changes, and nothing else does without changing more.
    pub fn same_but_ctime(&self, other: &EntryStat) -> bool {
        let strip = |s: &EntryStat| EntryStat {
            ctime_secs: 0,
            ctime_nanos: 0,
            ..*s
        };
        strip(self) == strip(other)
    }
}

/// How far an entry's recorded `stat` proves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Written from verified bytes or hashed by this process, and every
    /// change of its ctime since was one this process made and recorded:
    /// an equal `stat` proves the bytes.
    Sealed,
    /// Found in the directory when it was opened (or seen to change while
    /// this process linked it): the `stat` was not recorded by us, so the
    /// bytes are hashed again before the entry is used.
    Unverified,
}

/// An entry's recorded `stat` and how far it can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub stat: EntryStat,
    pub trust: Trust,
}

impl Recorded {
    pub fn sealed(stat: EntryStat) -> Recorded {
        Recorded {
            stat,
            trust: Trust::Sealed,
        }
    }

    /// True if `now` is what this record promises, with nothing to hash.
    pub fn proves(&self, now: &EntryStat) -> bool {
        self.trust == Trust::Sealed && self.stat == *now
    }
}

#[derive(Debug)]
struct Entry {
    recorded: Recorded,
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
    /// Which entry an inode is, for a work directory's links being removed.
    by_ino: HashMap<u64, EntryKey>,
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

    pub fn get(&self, key: &EntryKey) -> Option<Recorded> {
        self.entries.get(key).map(|e| e.recorded)
    }

    /// The entry whose inode is `ino`, if any.
    pub fn key_of_ino(&self, ino: u64) -> Option<EntryKey> {
        self.by_ino.get(&ino).copied()
    }

    /// Records (or replaces) an entry as most recently used, keeping any pins
    /// it already had.
    pub fn record(&mut self, key: EntryKey, recorded: Recorded) {
        let tick = self.bump();
        let pins = match self.entries.remove(&key) {
            Some(old) => {
                self.lru.remove(&old.tick);
                self.total_bytes -= old.recorded.stat.size;
                self.by_ino.remove(&old.recorded.stat.ino);
                old.pins
            }
            None => 0,
        };
        self.lru.insert(tick, key);
        self.total_bytes += recorded.stat.size;
        self.by_ino.insert(recorded.stat.ino, key);
        self.entries.insert(
            key,
            Entry {
                recorded,
                tick,
                pins,
            },
        );
    }

    /// Replaces the record of `key` with `new` if it still is `expected`
    /// (so a record made meanwhile by another thread is never overwritten
    /// with an older view, and a dropped entry is not brought back). True
    /// if replaced.
    pub fn replace_if(&mut self, key: &EntryKey, expected: &Recorded, new: Recorded) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) if entry.recorded == *expected => {
                self.total_bytes = self.total_bytes - expected.stat.size + new.stat.size;
                self.by_ino.remove(&expected.stat.ino);
                self.by_ino.insert(new.stat.ino, *key);
                entry.recorded = new;
                true
            }
            _ => false,
        }
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
            Some(entry) if entry.recorded.stat == *stat => {
                let entry = self.entries.remove(key).expect("just looked up");
                self.lru.remove(&entry.tick);
                self.total_bytes -= entry.recorded.stat.size;
                self.by_ino.remove(&entry.recorded.stat.ino);
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
            over = over.saturating_sub(entry.recorded.stat.size);
            victims.push((tick, *key));
        }
        victims
            .into_iter()
            .map(|(tick, key)| {
                self.lru.remove(&tick);
                let entry = self.entries.remove(&key).expect("listed in lru");
                self.total_bytes -= entry.recorded.stat.size;
                self.by_ino.remove(&entry.recorded.stat.ino);
                (key, entry.recorded.stat)
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
            ctime_secs: 1,
            ctime_nanos: 2,
            ino,
            mode: 0o444,
            uid: 0,
        }
    }

    fn sealed(size: u64, ino: u64) -> Recorded {
        Recorded::sealed(stat(size, ino))
    }

    #[test]
    fn eviction_takes_least_recently_used_first_and_skips_pinned() {
        let mut index = Index::default();
        let (a, b, c) = (key(b"a"), key(b"b"), key(b"c"));
        index.record(a, sealed(10, 1));
        index.record(b, sealed(10, 2));
        index.record(c, sealed(10, 3));
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
        index.record(a, sealed(1, 1));
        assert!(!index.remove_if(&a, &stat(1, 99)));
        assert_eq!(index.get(&a), Some(sealed(1, 1)));
        assert!(index.remove_if(&a, &stat(1, 1)));
        assert_eq!(index.get(&a), None);
        assert_eq!(index.total_bytes(), 0);
    }

    #[test]
    fn re_recording_keeps_pins_and_fixes_the_total() {
        let mut index = Index::default();
        let a = key(b"a");
        index.record(a, sealed(5, 1));
        index.pin(&a);
        index.record(a, sealed(7, 2));
        assert_eq!(index.total_bytes(), 7);
        assert!(index.evict_to(0).is_empty(), "still pinned");
        assert_eq!(index.key_of_ino(2), Some(a));
        assert_eq!(index.key_of_ino(1), None, "the old inode is forgotten");
    }

    #[test]
    fn only_a_change_of_ctime_is_what_linking_does() {
        let before = stat(5, 1);
        let linked = EntryStat {
            ctime_secs: 9,
            ..before
        };
        assert!(before.same_but_ctime(&linked));
        assert_ne!(before, linked, "but the ctime is compared");
        for changed in [
            EntryStat { size: 6, ..linked },
            EntryStat {
                mtime_nanos: 1,
                ..linked
            },
            EntryStat { ino: 2, ..linked },
            EntryStat {
                mode: 0o644,
                ..linked
            },
            EntryStat {
                uid: 1000,
                ..linked
            },
        ] {
            assert!(!before.same_but_ctime(&changed), "{changed:?}");
        }
        // A record proves a stat only when sealed by us and exactly equal.
        assert!(Recorded::sealed(before).proves(&before));
        assert!(!Recorded::sealed(before).proves(&linked));
        let found = Recorded {
            stat: before,
            trust: Trust::Unverified,
        };
        assert!(!found.proves(&before), "found at open: hash first");
    }

    #[test]
    fn replace_if_swaps_only_the_record_it_expects() {
        let mut index = Index::default();
        let a = key(b"a");
        index.record(a, sealed(5, 1));
        let newer = Recorded::sealed(EntryStat {
            ctime_secs: 7,
            ..stat(5, 1)
        });
        assert!(
            !index.replace_if(&a, &sealed(5, 9), newer),
            "not what is held"
        );
        assert!(index.replace_if(&a, &sealed(5, 1), newer));
        assert_eq!(index.get(&a), Some(newer));
        assert_eq!(index.total_bytes(), 5);
        assert!(!index.replace_if(&key(b"gone"), &newer, newer));
    }
}
