//! `BlobStore` for the RocksDB store: the trait's operations over the key
//! layout `mod.rs` describes.

use super::*;
use crate::store::limits::Admit;
use crate::store::{StagedBlob, StoreLimits, StoredBlob, VerifiedBlob};

fn io_backend(operation: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

impl RocksStore {
    /// The stored size (key and value) of a metadata entry, 0 if absent.
    fn stored_len(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(self
            .db
            .get_pinned(key)
            .map_err(backend("meta get"))?
            .map_or(0, |v| (key.len() + v.len()) as u64))
    }
}

impl BlobStore for RocksStore {
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError> {
        let keys = digests.iter().map(|d| key(MARKER, d));
        let found = self.db.multi_get(keys);
        let mut present = Vec::with_capacity(digests.len());
        for (digest, res) in digests.iter().zip(found) {
            let stored = res.map_err(backend("multi_get"))?.is_some();
            present.push(stored || digest.is_empty_blob());
        }
        let stored: Vec<Digest> = digests
            .iter()
            .zip(&present)
            .filter(|(d, p)| **p && !d.is_empty_blob())
            .map(|(d, _)| *d)
            .collect();
        self.touch_many(&stored)?;
        Ok(present)
    }

    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        if digest.is_empty_blob() {
            return Ok(Some(Bytes::new()));
        }
        let data = if LargeFiles::is_large(digest) {
            match self
                .large
                .read(digest)
                .map_err(io_backend("read large blob"))?
            {
                Some(data) => data,
                // Written before large blobs became files.
                None => match self
                    .db
                    .get_pinned(key(DATA, digest))
                    .map_err(backend("get"))?
                {
                    Some(v) => Bytes::copy_from_slice(&v),
                    None => {
                        let _guard = self.stripe(digest);
                        if self.marker(digest)?.is_some() {
                            tracing::error!(%digest, "large blob file missing; forgetting the blob");
                            self.delete_locked(digest)?;
                        }
                        return Ok(None);
                    }
                },
            }
        } else {
            let Some(value) = self
                .db
                .get_pinned(key(DATA, digest))
                .map_err(backend("get"))?
            else {
                return Ok(None);
            };
            Bytes::copy_from_slice(&value)
        };
        if let Err(err) = verify(digest, &data) {
            // Disk rot or a bug: serving it would spread the damage to every
            // client, and keeping it would block a clean re-upload.
            tracing::error!(%digest, %err, "corrupt blob in RocksDB store; deleting");
            let _guard = self.stripe(digest);
            self.delete_locked(digest)?;
            return Ok(None);
        }
        // Evicted between the read and now: the bytes read are still valid.
        self.touch(digest)?;
        Ok(Some(data))
    }

    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        if self.limits.admit(digest, &data)? == Admit::AlwaysPresent {
            return Ok(());
        }
        {
            let guard = self.stripe(digest);
            // Re-writing a large blob that is already there only costs
            // compaction; a present blob is just marked used.
            if self.marker(digest)?.is_some() {
                drop(guard);
                return self.touch(digest);
            }
            let mut batch = WriteBatch::default();
            if LargeFiles::is_large(digest) {
                self.large
                    .write(digest, &data)
                    .map_err(io_backend("write large blob"))?;
            } else {
                batch.put(key(DATA, digest), &data);
            }
            self.insert_locked(digest, batch)?;
        }
        self.evict(Some(digest))
    }

    fn put_many(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        self.put_batch(blobs)
    }

    fn stage(&self, digest: &Digest) -> Result<StagedBlob, StoreError> {
        StagedBlob::create(self.large.stage_path(), *digest)
    }

    /// A large blob's staged file is renamed into place: the bytes were
    /// hashed as they arrived and are neither read nor copied again.
    fn commit(&self, blob: VerifiedBlob) -> Result<(), StoreError> {
        let digest = blob.digest();
        if self.limits.admit_verified(&digest)? == Admit::AlwaysPresent {
            return Ok(());
        }
        {
            let guard = self.stripe(&digest);
            if self.marker(&digest)?.is_some() {
                drop(guard);
                return self.touch(&digest);
            }
            let mut batch = WriteBatch::default();
            if LargeFiles::is_large(&digest) {
                self.large
                    .adopt(blob.path(), &digest)
                    .map_err(io_backend("move staged blob into place"))?;
                blob.taken();
            } else {
                batch.put(key(DATA, &digest), blob.read()?);
            }
            self.insert_locked(&digest, batch)?;
        }
        self.evict(Some(&digest))
    }

    /// Large blobs come as their open file; their length is checked here,
    /// their hash by the reader that reads them whole.
    fn open(&self, digest: &Digest) -> Result<Option<StoredBlob>, StoreError> {
        if !LargeFiles::is_large(digest) {
            return Ok(self.get(digest)?.map(StoredBlob::Bytes));
        }
        let Some(file) = self
            .large
            .open_blob(digest)
            .map_err(io_backend("open large blob"))?
        else {
            // Stored before large blobs were files, or lost: `get` knows.
            return Ok(self.get(digest)?.map(StoredBlob::Bytes));
        };
        let len = file
            .metadata()
            .map_err(io_backend("stat large blob"))?
            .len();
        if len != digest.size_bytes {
            tracing::error!(%digest, len, "large blob file has the wrong length; deleting");
            self.forget_corrupt(digest)?;
            return Ok(None);
        }
        // Evicted since it was opened? The open file still reads whole.
        self.touch(digest)?;
        Ok(Some(StoredBlob::File(file)))
    }

    fn forget_corrupt(&self, digest: &Digest) -> Result<(), StoreError> {
        let _guard = self.stripe(digest);
        self.delete_locked(digest).map(|_| ())
    }

    /// Small blobs are read with one `multi_get` and marked used with one
    /// write per lock stripe; large ones and any needing repair go through
    /// [`get`](BlobStore::get).
    fn get_many(&self, digests: &[Digest]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let small: Vec<usize> = (0..digests.len())
            .filter(|&i| !digests[i].is_empty_blob() && !LargeFiles::is_large(&digests[i]))
            .collect();
        let values = self
            .db
            .multi_get(small.iter().map(|&i| key(DATA, &digests[i])));
        let mut out: Vec<Option<Option<Bytes>>> = vec![None; digests.len()];
        let mut found: Vec<(Digest, Bytes)> = Vec::with_capacity(small.len());
        let mut at: Vec<usize> = Vec::with_capacity(small.len());
        for (&i, value) in small.iter().zip(values) {
            // Absent ones are left to `get`, which also repairs.
            if let Some(v) = value.map_err(backend("multi_get"))? {
                found.push((digests[i], Bytes::from(v)));
                at.push(i);
            }
        }
        let mut used = Vec::with_capacity(found.len());
        let sound = crate::store::batch::verify_all(&found);
        for ((i, (digest, data)), sound) in at.into_iter().zip(found).zip(sound) {
            // Corrupt ones too: `get` reports and deletes them.
            if sound {
                out[i] = Some(Some(data));
                used.push(digest);
            }
        }
        self.touch_many(&used)?;
        out.into_iter()
            .zip(digests)
            .map(|(found, digest)| match found {
                Some(data) => Ok(data),
                None => self.get(digest),
            })
            .collect()
    }

    fn evictions(&self) -> &crate::store::limits::Evictions {
        &self.evictions
    }

    fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    fn meta_bytes(&self) -> u64 {
        self.meta_total.load(Ordering::SeqCst)
    }

    fn limits(&self) -> StoreLimits {
        self.limits
    }

    fn meta_get(&self, table: MetaTable, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .db
            .get_pinned(meta_key(table, key))
            .map_err(backend("meta get"))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn meta_put(&self, table: MetaTable, key: &[u8], value: Bytes) -> Result<(), StoreError> {
        let key = meta_key(table, key);
        {
            let _one = self.meta_writing.lock();
            let old = self.stored_len(&key)?;
            let new = (key.len() + value.len()) as u64;
            let now = self.meta_total.load(Ordering::SeqCst);
            let would_be = now - old + new;
            if new > old {
                self.limits.meta_full(table, would_be)?;
            }
            self.db.put(&key, value).map_err(backend("meta put"))?;
            self.meta_total.store(would_be, Ordering::SeqCst);
        }
        // Metadata shares the budget: a growing table pushes out old blobs.
        self.evict(None)
    }

    fn meta_delete(&self, table: MetaTable, key: &[u8]) -> Result<(), StoreError> {
        let key = meta_key(table, key);
        let _one = self.meta_writing.lock();
        let old = self.stored_len(&key)?;
        self.db.delete(&key).map_err(backend("meta delete"))?;
        self.meta_total.fetch_sub(old, Ordering::SeqCst);
        Ok(())
    }

    fn meta_scan_prefix(
        &self,
        table: MetaTable,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        let start = meta_key(table, prefix);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item.map_err(backend("meta scan"))?;
            if !k.starts_with(&start) {
                break;
            }
            out.push((k[2..].to_vec(), Bytes::from(v.into_vec())));
        }
        Ok(out)
    }
}
