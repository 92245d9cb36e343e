//! `BlobStore` for the RocksDB store: the trait's operations over the key
//! layout `mod.rs` describes.

use super::*;
use crate::store::limits::Admit;
use crate::store::StoreLimits;

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
            match self.large.read(digest).map_err(|e| StoreError::Backend {
                operation: "read large blob",
                source: Box::new(e),
            })? {
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
            let _guard = self.stripe(digest);
            // Re-writing a large blob that is already there only costs
            // compaction; a present blob is just marked used.
            if let Some(old) = self.marker(digest)? {
                return self.touch_locked(digest, old);
            }
            let mut batch = WriteBatch::default();
            if LargeFiles::is_large(digest) {
                self.large
                    .write(digest, &data)
                    .map_err(|e| StoreError::Backend {
                        operation: "write large blob",
                        source: Box::new(e),
                    })?;
            } else {
                batch.put(key(DATA, digest), &data);
            }
            let last_use = self.next_use.fetch_add(1, Ordering::SeqCst);
            batch.put(use_key(last_use, digest), b"");
            batch.put(key(MARKER, digest), last_use.to_be_bytes());
            self.db.write(batch).map_err(backend("put"))?;
            self.count.fetch_add(1, Ordering::SeqCst);
            self.total.fetch_add(digest.size_bytes, Ordering::SeqCst);
        }
        self.evict(Some(digest))
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
        let mut used = Vec::with_capacity(small.len());
        for (&i, value) in small.iter().zip(values) {
            let digest = &digests[i];
            match value.map_err(backend("multi_get"))? {
                Some(v) if verify(digest, &v).is_ok() => {
                    out[i] = Some(Some(Bytes::from(v)));
                    used.push(*digest);
                }
                // Absent, or corrupt: `get` reports and repairs.
                _ => {}
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

    fn total_bytes(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
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
        self.db
            .put(meta_key(table, key), value)
            .map_err(backend("meta put"))
    }

    fn meta_delete(&self, table: MetaTable, key: &[u8]) -> Result<(), StoreError> {
        self.db
            .delete(meta_key(table, key))
            .map_err(backend("meta delete"))
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
