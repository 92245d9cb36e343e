//! The persistent store. The only module that knows RocksDB exists.
//!
//! Key layout (one column family, distinguished by the first byte):
//! - `m` blob → last-use sequence number (8 bytes, big endian): the presence
//!   marker. Presence checks dominate cache traffic (FindMissingBlobs on
//!   every submit), and reading the marker keeps them from pulling large
//!   values out of blob files.
//! - `d` blob → the data, for blobs under 1 MiB; larger ones
//!   are plain files (see `large_files`), which cost one write instead of a
//!   WAL copy, a memtable copy and a flush, and free their disk space the
//!   moment they are evicted.
//! - `u` last-use blob → nothing: the LRU order, oldest first, so eviction is
//!   a forward scan.
//! - `t` table key → a metadata value.
//!
//! A blob key is the digest function's tag, the hash and the size. The three
//! blob entries always change together in one write batch, under the blob's
//! lock stripe, so the total size is counted exactly once per blob.
//!
//! The total size and the next sequence number are not persisted: they are
//! recomputed from the markers at open, so they can never disagree with what
//! is stored.
//!
//! Durability: blob entries (`m`, `d`, `u`) are written without RocksDB's
//! write-ahead log. A blob is content-addressed, so one lost in a crash is
//! simply missing — FindMissingBlobs says so and the client uploads it
//! again — and its three entries share one batch, so a crash loses all of
//! them or none. Metadata (`t`: action results, index entries, pins) keeps
//! the log: a result is expensive to remake. An entry that names a blob
//! lost in a crash is not served (the completeness checks), and a clean
//! close flushes everything (`Drop`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use rocksdb::{DBCompressionType, Direction, IteratorMode, Options, WriteBatch, DB};

use super::large_files::LargeFiles;
use super::limits::log_eviction;
use super::{verify, BlobStore, MetaTable, StoreError, StoreLimits};
use buildfleet_model::digest::Digest;

/// Values at least this large go to blob files, so compactions of the LSM tree
/// don't keep rewriting multi-megabyte file contents.
const MIN_BLOB_SIZE: u64 = 64 * 1024;

const MARKER: u8 = b'm';
const DATA: u8 = b'd';
const USE_ORDER: u8 = b'u';
const META: u8 = b't';

/// Blob key length: kind, function tag, 32-byte hash, 8-byte size.
const BLOB_KEY_LEN: usize = 42;
/// The layout before digest functions were part of the key; such keys are
/// dropped at open.
const LEGACY_BLOB_KEY_LEN: usize = 41;

/// RocksDB's block cache: small blobs' blocks, indexes and filters.
const BLOCK_CACHE_BYTES: usize = 128 << 20;

/// Lock stripes: enough that unrelated blobs rarely contend on 2–16 cores.
const STRIPES: usize = 64;

/// A RocksDB-backed [`BlobStore`].
pub struct RocksStore {
    db: DB,
    large: LargeFiles,
    limits: StoreLimits,
    evictions: crate::store::limits::Evictions,
    total: AtomicU64,
    /// Blobs stored; sizes the "recently used" window below.
    count: AtomicU64,
    next_use: AtomicU64,
    /// Bytes of metadata keys and values; counts towards the limit.
    meta_total: AtomicU64,
    /// One metadata write at a time, so replacing a value counts its old
    /// size out exactly once.
    meta_writing: Mutex<()>,
    stripes: Vec<Mutex<()>>,
    /// Uses not yet written (see `recency`), sharded like the stripes.
    recency: recency::Recency,
    /// One eviction at a time; others would only race it for the same victims.
    evicting: Mutex<()>,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .field("limits", &self.limits)
            .field("total_bytes", &self.total.load(Ordering::Relaxed))
            .finish()
    }
}

fn key(kind: u8, digest: &Digest) -> [u8; BLOB_KEY_LEN] {
    let mut key = [0u8; BLOB_KEY_LEN];
    key[0] = kind;
    key[1..].copy_from_slice(&digest.key_bytes());
    key
}

/// The digest in a blob key (any kind), or `None` for a foreign layout.
fn digest_of_key(key: &[u8]) -> Option<Digest> {
    Digest::from_key_bytes(key.get(1..)?)
}

const USE_KEY_LEN: usize = 9 + BLOB_KEY_LEN - 1;

fn use_key(last_use: u64, digest: &Digest) -> [u8; USE_KEY_LEN] {
    let mut out = [0u8; USE_KEY_LEN];
    out[0] = USE_ORDER;
    out[1..9].copy_from_slice(&last_use.to_be_bytes());
    out[9..].copy_from_slice(&digest.key_bytes());
    out
}

/// (last use, digest) from a use-order key.
fn parse_use_key(raw: &[u8]) -> Option<(u64, Digest)> {
    if raw.len() != USE_KEY_LEN || raw[0] != USE_ORDER {
        return None;
    }
    let last_use = u64::from_be_bytes(raw[1..9].try_into().ok()?);
    Some((last_use, Digest::from_key_bytes(&raw[9..])?))
}

fn stripe_of(digest: &Digest) -> usize {
    usize::from(digest.hash[0]) % STRIPES
}

fn parse_last_use(value: &[u8]) -> u64 {
    // An empty marker can only come from a store written before use tracking;
    // treat it as the oldest possible use.
    value.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

fn meta_key(table: MetaTable, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + key.len());
    out.push(META);
    out.push(table.tag());
    out.extend_from_slice(key);
    out
}

fn backend(operation: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
    move |source| StoreError::Backend {
        operation,
        source: Box::new(source),
    }
}

impl RocksStore {
    /// Opens (creating if needed) an unlimited store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<RocksStore, StoreError> {
        RocksStore::open_with_limits(path, StoreLimits::unlimited())
    }

    /// Opens (creating if needed) the store at `path`, evicting least
    /// recently used blobs beyond `limits`. The total size is recomputed from
    /// the stored markers, so it survives restarts and limit changes (a store
    /// reopened with a smaller limit is trimmed at once).
    pub fn open_with_limits(
        path: impl AsRef<Path>,
        limits: StoreLimits,
    ) -> Result<RocksStore, StoreError> {
        let path = path.as_ref();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Only lz4 is compiled in; RocksDB's default (snappy) would fail to open.
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(MIN_BLOB_SIZE);
        // Blob-file values are mid-sized file contents, often already
        // compressed; LZ4 would cost CPU on every flush for little gain.
        opts.set_blob_compression_type(DBCompressionType::None);
        // Deleted (evicted) values in blob files are only reclaimed by blob
        // garbage collection during compaction.
        opts.set_enable_blob_gc(true);
        // Small blobs are read back by the thousand (BatchReadBlobs): a
        // block cache that holds a working set of them spares a block read
        // and decode per blob, and Bloom filters let presence checks of
        // absent blobs (most of FindMissingBlobs) skip the files.
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        opts.set_block_based_table_factory(&table);
        // A Bloom filter over each memtable's keys: a BatchUpdateBlobs
        // first looks up every blob's marker, new blobs' markers are
        // absent, and without the filter each miss walks every memtable's
        // skip list.
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_memtable_whole_key_filtering(true);
        let db = DB::open(&opts, path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        let large_dir = path.join("large-blobs");
        let large = LargeFiles::open(large_dir.clone()).map_err(|source| StoreError::Open {
            path: large_dir,
            source: Box::new(source),
        })?;
        let store = RocksStore {
            db,
            large,
            limits,
            total: AtomicU64::new(0),
            count: AtomicU64::new(0),
            next_use: AtomicU64::new(1),
            meta_total: AtomicU64::new(0),
            meta_writing: Mutex::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            recency: recency::Recency::new(STRIPES),
            evicting: Mutex::new(()),
            evictions: Default::default(),
        };
        store.recount()?;
        store.evict(None)?;
        Ok(store)
    }

    /// Recomputes the total and the sequence counter from the markers, and
    /// drops entries of the legacy key layout (which had no digest function
    /// and so cannot be served correctly).
    fn recount(&self) -> Result<(), StoreError> {
        let mut total = 0u64;
        let mut max_use = 0u64;
        let mut blobs = 0u64;
        let mut legacy = WriteBatch::default();
        let mut legacy_count = 0u64;
        let mut lost_files = 0u64;
        // Only markers are read: data values may live in blob files, and
        // opening must not read every blob.
        for item in self
            .db
            .iterator(IteratorMode::From(&[MARKER], Direction::Forward))
        {
            let (k, v) = item.map_err(backend("open scan"))?;
            if k[0] != MARKER {
                break;
            }
            if k.len() == LEGACY_BLOB_KEY_LEN {
                let mut data_key = k.to_vec();
                data_key[0] = DATA;
                legacy.delete(&k);
                legacy.delete(&data_key);
                legacy_count += 1;
                continue;
            }
            if let Some(digest) = digest_of_key(&k) {
                if LargeFiles::is_large(&digest)
                    && !self.large.exists(&digest)
                    && !self.has_data_key(&digest)?
                {
                    // The file is gone (deleted by hand, lost disk): a marker
                    // without data would make FindMissing lie.
                    tracing::error!(%digest, "large blob file missing; forgetting the blob");
                    legacy.delete(&k);
                    legacy.delete(use_key(parse_last_use(&v), &digest));
                    lost_files += 1;
                    continue;
                }
                total += digest.size_bytes;
                max_use = max_use.max(parse_last_use(&v));
                blobs += 1;
            }
        }
        let orphans = self
            .large
            .sweep(|d| matches!(self.db.get_pinned(key(MARKER, d)), Ok(Some(_))))
            .map_err(|e| StoreError::Backend {
                operation: "sweep large blobs",
                source: Box::new(e),
            })?;
        if orphans > 0 {
            tracing::warn!(
                files = orphans,
                "removed large blob files no marker names (interrupted writes)"
            );
        }
        if legacy_count > 0 {
            tracing::warn!(
                blobs = legacy_count,
                "dropping blobs stored in the pre-digest-function layout"
            );
        }
        if legacy_count + lost_files > 0 {
            self.db.write(legacy).map_err(backend("drop legacy"))?;
        }
        let mut meta_total = 0u64;
        for item in self
            .db
            .iterator(IteratorMode::From(&[META], Direction::Forward))
        {
            let (k, v) = item.map_err(backend("open scan"))?;
            if k[0] != META {
                break;
            }
            meta_total += (k.len() + v.len()) as u64;
        }
        self.total.store(total, Ordering::SeqCst);
        self.count.store(blobs, Ordering::SeqCst);
        self.next_use.store(max_use + 1, Ordering::SeqCst);
        self.meta_total.store(meta_total, Ordering::SeqCst);
        tracing::info!(
            path = %self.db.path().display(),
            blobs,
            total_bytes = total,
            meta_bytes = meta_total,
            max_bytes = self.limits.max_bytes,
            "opened blob store"
        );
        Ok(())
    }

    fn has_data_key(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned(key(DATA, digest))
            .map_err(backend("get"))?
            .is_some())
    }

    fn stripe(&self, digest: &Digest) -> MutexGuard<'_, ()> {
        self.stripes[stripe_of(digest)].lock()
    }

    /// The blob's last use, if present. Call with its stripe held.
    fn marker(&self, digest: &Digest) -> Result<Option<u64>, StoreError> {
        Ok(self
            .db
            .get_pinned(key(MARKER, digest))
            .map_err(backend("get marker"))?
            .map(|v| parse_last_use(&v)))
    }

    /// Writes a new use for `digest` (which must be present), moving it to
    /// the back of the eviction order. Call with its stripe held.
    fn restamp_locked(&self, digest: &Digest, old_use: u64) -> Result<(), StoreError> {
        let new_use = self.next_use.fetch_add(1, Ordering::SeqCst);
        let mut batch = WriteBatch::default();
        batch.delete(use_key(old_use, digest));
        batch.put(use_key(new_use, digest), b"");
        batch.put(key(MARKER, digest), new_use.to_be_bytes());
        self.write_blobs(batch, "record use")
    }

    /// Records a use of a present blob, in memory (see `recency`).
    fn touch(&self, digest: &Digest) -> Result<(), StoreError> {
        let shard = stripe_of(digest);
        if self.recency.mark(shard, [*digest]) {
            self.write_uses(shard)?;
        }
        Ok(())
    }

    /// [`touch`](Self::touch) for many blobs: a FindMissingBlobs of a whole
    /// tree names thousands.
    fn touch_many(&self, digests: &[Digest]) -> Result<(), StoreError> {
        let mut by_shard: Vec<Vec<Digest>> = vec![Vec::new(); STRIPES];
        for d in digests {
            by_shard[stripe_of(d)].push(*d);
        }
        for (shard, group) in by_shard.into_iter().enumerate() {
            if !group.is_empty() && self.recency.mark(shard, group) {
                self.write_uses(shard)?;
            }
        }
        Ok(())
    }

    /// Writes out the uses recorded in one shard, in one batch. Blobs
    /// evicted since they were used are skipped (checked under the
    /// stripe), so a use never resurrects a marker.
    fn write_uses(&self, shard: usize) -> Result<(), StoreError> {
        let _guard = self.stripes[shard].lock();
        let mut used = self.recency.drain(shard);
        if used.is_empty() {
            return Ok(());
        }
        used.sort_unstable();
        let markers = self.db.multi_get(used.iter().map(|d| key(MARKER, d)));
        let mut batch = WriteBatch::default();
        for (digest, marker) in used.iter().zip(markers) {
            let Some(old) = marker.map_err(backend("multi_get"))? else {
                continue;
            };
            let new_use = self.next_use.fetch_add(1, Ordering::SeqCst);
            batch.delete(use_key(parse_last_use(&old), digest));
            batch.put(use_key(new_use, digest), b"");
            batch.put(key(MARKER, digest), new_use.to_be_bytes());
        }
        self.write_blobs(batch, "record uses")
    }

    /// Deletes a blob and its bookkeeping, fixing the total. Returns whether
    /// it was counted. Call with its stripe held.
    fn delete_locked(&self, digest: &Digest) -> Result<bool, StoreError> {
        let marker = self.marker(digest)?;
        let mut batch = WriteBatch::default();
        batch.delete(key(MARKER, digest));
        batch.delete(key(DATA, digest));
        if let Some(last_use) = marker {
            batch.delete(use_key(last_use, digest));
        }
        self.write_blobs(batch, "delete")?;
        // A use recorded before it went must not save its next copy.
        self.recency.take(stripe_of(digest), digest);
        if LargeFiles::is_large(digest) {
            // After the marker is gone, so a crash in between leaves an
            // orphan file (swept at open), never a marker without a file.
            if let Err(e) = self.large.remove(digest) {
                tracing::warn!(%digest, error = %e, "large blob file not removed; swept at next open");
            }
        }
        if marker.is_some() {
            self.count.fetch_sub(1, Ordering::SeqCst);
            self.total.fetch_sub(digest.size_bytes, Ordering::SeqCst);
        }
        Ok(marker.is_some())
    }

    /// Writes blob entries without the write-ahead log (see the module's
    /// note on durability).
    fn write_blobs(&self, batch: WriteBatch, operation: &'static str) -> Result<(), StoreError> {
        let mut options = rocksdb::WriteOptions::default();
        options.disable_wal(true);
        self.db
            .write_opt(batch, &options)
            .map_err(backend(operation))
    }

    /// What counts against the limit: blobs and metadata.
    fn counted(&self) -> u64 {
        self.total.load(Ordering::SeqCst) + self.meta_total.load(Ordering::SeqCst)
    }

    /// Records a new blob whose data `batch` already holds (or whose file
    /// is in place). Call with its stripe held, after checking it is absent.
    fn insert_locked(&self, digest: &Digest, mut batch: WriteBatch) -> Result<(), StoreError> {
        let last_use = self.next_use.fetch_add(1, Ordering::SeqCst);
        batch.put(use_key(last_use, digest), b"");
        batch.put(key(MARKER, digest), last_use.to_be_bytes());
        self.write_blobs(batch, "put")?;
        self.count.fetch_add(1, Ordering::SeqCst);
        self.total.fetch_add(digest.size_bytes, Ordering::SeqCst);
        Ok(())
    }

    /// Evicts least recently used blobs (sparing `keep`) until the total is
    /// at the low-water mark, if it is over the limit.
    fn evict(&self, keep: Option<&Digest>) -> Result<(), StoreError> {
        if !self.limits.over(self.counted()) {
            return Ok(());
        }
        let _one_at_a_time = self.evicting.lock();
        let low_water = self.limits.low_water();
        let now = super::pins::unix_secs(std::time::SystemTime::now());
        let read = |k: &[u8]| {
            <Self as BlobStore>::meta_get(self, MetaTable::Pins, k)
                .ok()
                .flatten()
        };
        let (mut blobs, mut bytes) = (0u64, 0u64);
        // Two passes: the first may only give second chances (every blob
        // it reached had been used); the second then finds them at the
        // back with their chance spent.
        let passes = (0..2).flat_map(|_| {
            self.db
                .iterator(IteratorMode::From(&[USE_ORDER], Direction::Forward))
                .take_while(|item| item.as_ref().map_or(true, |(k, _)| k[0] == USE_ORDER))
        });
        for item in passes {
            if self.counted() <= low_water {
                break;
            }
            let (k, _) = item.map_err(backend("eviction scan"))?;
            let Some((last_use, digest)) = parse_use_key(&k) else {
                continue;
            };
            if Some(&digest) == keep || super::pins::held(read, &digest, now) {
                continue;
            }
            let _guard = self.stripe(&digest);
            // The scan reads a snapshot: a blob used since then has moved
            // and must stay.
            if self.marker(&digest)? != Some(last_use) {
                continue;
            }
            // Used since its use was written: a second chance, at the back.
            if self.recency.take(stripe_of(&digest), &digest) {
                self.restamp_locked(&digest, last_use)?;
                continue;
            }
            if self.delete_locked(&digest)? {
                blobs += 1;
                bytes += digest.size_bytes;
            }
        }
        log_eviction(
            "rocksdb",
            blobs,
            bytes,
            self.total.load(Ordering::SeqCst),
            &self.limits,
            &self.evictions,
        );
        Ok(())
    }

    /// Writes arbitrary bytes under a digest, bypassing verification, so tests
    /// can prove that corrupt data is never served.
    #[cfg(test)]
    pub(crate) fn write_unverified(&self, digest: &Digest, data: &[u8]) {
        let _guard = self.stripe(digest);
        let mut batch = WriteBatch::default();
        if self.marker(digest).unwrap().is_none() {
            let last_use = self.next_use.fetch_add(1, Ordering::SeqCst);
            batch.put(key(MARKER, digest), last_use.to_be_bytes());
            batch.put(use_key(last_use, digest), b"");
            self.total.fetch_add(digest.size_bytes, Ordering::SeqCst);
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        if LargeFiles::is_large(digest) {
            self.large.write_raw(digest, data);
        } else {
            batch.put(key(DATA, digest), data);
        }
        self.db.write(batch).expect("raw write");
    }

    /// Writes a blob in the pre-digest-function layout, for the upgrade test.
    #[cfg(test)]
    pub(crate) fn write_legacy(&self, digest: &Digest, data: &[u8]) {
        let mut k = key(DATA, digest).to_vec();
        k.remove(1);
        let mut batch = WriteBatch::default();
        batch.put(&k, data);
        k[0] = MARKER;
        batch.put(&k, b"");
        self.db.write(batch).expect("raw write");
    }
}

impl Drop for RocksStore {
    /// Blob entries skip the write-ahead log, so a clean close must flush
    /// them: only a crash may lose recent blobs.
    fn drop(&mut self) {
        for shard in 0..self.recency.shards() {
            if let Err(e) = self.write_uses(shard) {
                tracing::warn!(error = %e, "recent blob uses not written at close; those blobs look older after restart");
            }
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "flushing the blob store at close failed; recent blobs may be missing after restart");
        }
    }
}

mod blob_store;
mod put_many;
mod recency;
#[cfg(test)]
mod tests;
