//! An in-process store for tests and for embedding a cache without disk.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use super::limits::log_eviction;
use super::limits::Admit;
use super::{verify, BlobStore, MetaTable, StagedBlob, StoreError, StoreLimits};
use buildfleet_model::digest::Digest;

/// Blobs in a hash map, with an LRU order kept beside them. Nothing survives
/// the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    limits: StoreLimits,
    blobs: Mutex<Blobs>,
    meta: RwLock<Meta>,
    /// Where ByteStream writes are staged: made on first use, removed with
    /// the store.
    staging: std::sync::OnceLock<tempfile::TempDir>,
    next_staged: std::sync::atomic::AtomicU64,
    evictions: super::limits::Evictions,
}

#[derive(Debug, Default)]
struct Meta {
    entries: BTreeMap<(MetaTable, Vec<u8>), Bytes>,
    /// Bytes of keys and values; counts towards the limit.
    bytes: u64,
}

impl Meta {
    fn get(&self, table: MetaTable, key: &[u8]) -> Option<&Bytes> {
        self.entries.get(&(table, key.to_vec()))
    }
}

/// Everything that must change together: one lock, so a size is never
/// counted twice and the LRU order never names a missing blob.
#[derive(Debug, Default)]
struct Blobs {
    entries: HashMap<Digest, Entry>,
    /// Last use → blob; the first entry is the least recently used.
    by_use: BTreeMap<u64, Digest>,
    next_use: u64,
    total: u64,
}

#[derive(Debug)]
struct Entry {
    data: Bytes,
    last_use: u64,
}

impl Blobs {
    fn touch(&mut self, digest: &Digest) -> bool {
        let next = self.next_use;
        let Some(entry) = self.entries.get_mut(digest) else {
            return false;
        };
        self.by_use.remove(&entry.last_use);
        entry.last_use = next;
        self.by_use.insert(next, *digest);
        self.next_use += 1;
        true
    }

    fn remove(&mut self, digest: &Digest) -> Option<Entry> {
        let entry = self.entries.remove(digest)?;
        self.by_use.remove(&entry.last_use);
        self.total -= digest.size_bytes;
        Some(entry)
    }

    fn insert(&mut self, digest: Digest, data: Bytes) {
        let last_use = self.next_use;
        self.next_use += 1;
        self.by_use.insert(last_use, digest);
        self.entries.insert(digest, Entry { data, last_use });
        self.total += digest.size_bytes;
    }
}

impl MemoryStore {
    /// An unlimited store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store that evicts least recently used blobs beyond `limits`.
    pub fn with_limits(limits: StoreLimits) -> MemoryStore {
        MemoryStore {
            limits,
            ..MemoryStore::default()
        }
    }

    /// Number of stored blobs; the empty blob is implicit and not counted.
    pub fn len(&self) -> usize {
        self.blobs.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.lock().entries.is_empty()
    }

    /// Evicts least recently used blobs, sparing `keep` (the blob just put).
    fn evict(&self, blobs: &mut Blobs, keep: Option<&Digest>) {
        let meta = self.meta.read();
        if !self.limits.over(blobs.total + meta.bytes) {
            return;
        }
        let low_water = self.limits.low_water();
        let now = super::pins::unix_secs(std::time::SystemTime::now());
        let read = |k: &[u8]| meta.get(MetaTable::Pins, k).cloned();
        let victims: Vec<Digest> = blobs
            .by_use
            .values()
            .filter(|d| Some(*d) != keep && !super::pins::held(read, d, now))
            .scan(blobs.total + meta.bytes, |total, d| {
                (*total > low_water).then(|| {
                    *total -= d.size_bytes;
                    *d
                })
            })
            .collect();
        let bytes: u64 = victims.iter().map(|d| d.size_bytes).sum();
        for victim in &victims {
            blobs.remove(victim);
        }
        log_eviction(
            "memory",
            victims.len() as u64,
            bytes,
            blobs.total,
            &self.limits,
            &self.evictions,
        );
    }

    /// Stores bytes under a digest without verification, so tests can prove
    /// corrupt data is never served.
    #[cfg(test)]
    pub(crate) fn write_unverified(&self, digest: &Digest, data: &[u8]) {
        let mut blobs = self.blobs.lock();
        blobs.remove(digest);
        blobs.insert(*digest, Bytes::copy_from_slice(data));
    }
}

impl BlobStore for MemoryStore {
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError> {
        let mut blobs = self.blobs.lock();
        Ok(digests
            .iter()
            .map(|d| d.is_empty_blob() || blobs.touch(d))
            .collect())
    }

    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        if digest.is_empty_blob() {
            return Ok(Some(Bytes::new()));
        }
        let data = {
            let mut blobs = self.blobs.lock();
            if !blobs.touch(digest) {
                return Ok(None);
            }
            blobs.entries[digest].data.clone()
        };
        // Memory can't rot on its own, but the contract is uniform so a bug in
        // a writer can never turn into corrupt data served to a reader.
        if let Err(err) = verify(digest, &data) {
            tracing::error!(%digest, %err, "corrupt blob in memory store; deleting");
            self.blobs.lock().remove(digest);
            return Ok(None);
        }
        Ok(Some(data))
    }

    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        if self.limits.admit(digest, &data)? == Admit::AlwaysPresent {
            return Ok(());
        }
        let mut blobs = self.blobs.lock();
        if blobs.touch(digest) {
            return Ok(());
        }
        blobs.insert(*digest, data);
        self.evict(&mut blobs, Some(digest));
        Ok(())
    }

    fn stage(&self, digest: &Digest) -> Result<StagedBlob, StoreError> {
        let dir = match self.staging.get() {
            Some(dir) => dir,
            None => {
                let made = tempfile::Builder::new()
                    .prefix("buildfleet-memory-store-")
                    .tempdir()
                    .map_err(|e| StoreError::Backend {
                        operation: "make staging directory",
                        source: Box::new(e),
                    })?;
                // A racing first use made one too: keep theirs, drop ours.
                let _ = self.staging.set(made);
                self.staging.get().expect("set just now")
            }
        };
        let n = self
            .next_staged
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        StagedBlob::create(dir.path().join(format!("upload-{n}")), *digest)
    }

    fn forget_corrupt(&self, digest: &Digest) -> Result<(), StoreError> {
        self.blobs.lock().remove(digest);
        Ok(())
    }

    fn evictions(&self) -> &super::limits::Evictions {
        &self.evictions
    }

    fn total_bytes(&self) -> u64 {
        self.blobs.lock().total
    }

    fn meta_bytes(&self) -> u64 {
        self.meta.read().bytes
    }

    fn limits(&self) -> StoreLimits {
        self.limits
    }

    fn meta_get(&self, table: MetaTable, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self.meta.read().get(table, key).cloned())
    }

    fn meta_put(&self, table: MetaTable, key: &[u8], value: Bytes) -> Result<(), StoreError> {
        {
            let mut meta = self.meta.write();
            // Sizes as the RocksDB store counts them: its keys carry two
            // bytes of prefix.
            let size = |v: &Bytes| (2 + key.len() + v.len()) as u64;
            let old = meta.get(table, key).map_or(0, size);
            let new = size(&value);
            let would_be = meta.bytes - old + new;
            if new > old {
                self.limits.meta_full(table, would_be)?;
            }
            meta.entries.insert((table, key.to_vec()), value);
            meta.bytes = would_be;
        }
        // Metadata shares the budget: a growing table pushes out old blobs.
        self.evict(&mut self.blobs.lock(), None);
        Ok(())
    }

    fn meta_delete(&self, table: MetaTable, key: &[u8]) -> Result<(), StoreError> {
        let mut meta = self.meta.write();
        if let Some(old) = meta.entries.remove(&(table, key.to_vec())) {
            meta.bytes -= (2 + key.len() + old.len()) as u64;
        }
        Ok(())
    }

    fn meta_scan_prefix(
        &self,
        table: MetaTable,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        let meta = self.meta.read();
        Ok(meta
            .entries
            .range((table, prefix.to_vec())..)
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}
