//! A BatchUpdateBlobs as one RocksDB write: the blobs are checked in
//! parallel, their lock stripes taken together (in order, so two batches
//! cannot deadlock), their markers read with one `multi_get`, and every
//! new blob and every touch of a present one goes into one write batch.

use super::*;
use crate::store::batch::admit_all;
use crate::store::limits::Admit;

impl RocksStore {
    pub(super) fn put_batch(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(blobs.len());
        let mut wanted: Vec<usize> = Vec::new();
        for (i, admitted) in admit_all(&self.limits, &blobs).into_iter().enumerate() {
            match admitted {
                Ok(Admit::Store) => {
                    wanted.push(i);
                    results.push(Ok(()));
                }
                Ok(Admit::AlwaysPresent) => results.push(Ok(())),
                Err(e) => results.push(Err(e)),
            }
        }
        // One entry per distinct blob; a batch may name one twice.
        wanted.sort_by_key(|&i| blobs[i].0);
        wanted.dedup_by_key(|&mut i| blobs[i].0);
        if let Err(e) = self.store_locked_together(&blobs, &wanted) {
            let shown = e.to_string();
            for &i in &wanted {
                results[i] = Err(StoreError::Backend {
                    operation: "batch put",
                    source: shown.clone().into(),
                });
            }
            return results;
        }
        if let Err(e) = self.evict(None) {
            tracing::error!(error = %e, "eviction after a batch put failed");
        }
        results
    }

    fn store_locked_together(
        &self,
        blobs: &[(Digest, Bytes)],
        wanted: &[usize],
    ) -> Result<(), StoreError> {
        let mut stripes: Vec<usize> = wanted.iter().map(|&i| stripe_of(&blobs[i].0)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = stripes.iter().map(|&s| self.stripes[s].lock()).collect();
        let markers = self
            .db
            .multi_get(wanted.iter().map(|&i| key(MARKER, &blobs[i].0)));
        let mut batch = WriteBatch::default();
        let (mut added, mut added_bytes) = (0u64, 0u64);
        let mut present = Vec::new();
        for (&i, marker) in wanted.iter().zip(markers) {
            let (digest, data) = &blobs[i];
            match marker.map_err(backend("multi_get"))? {
                // Present: a use, recorded in memory like a read's.
                Some(_) => {
                    present.push(*digest);
                    continue;
                }
                None => {
                    if LargeFiles::is_large(digest) {
                        self.large
                            .write(digest, data)
                            .map_err(|e| StoreError::Backend {
                                operation: "write large blob",
                                source: Box::new(e),
                            })?;
                    } else {
                        batch.put(key(DATA, digest), data);
                    }
                    added += 1;
                    added_bytes += digest.size_bytes;
                }
            }
            let new_use = self.next_use.fetch_add(1, Ordering::SeqCst);
            batch.put(use_key(new_use, digest), b"");
            batch.put(key(MARKER, digest), new_use.to_be_bytes());
        }
        self.write_blobs(batch, "batch put")?;
        self.count.fetch_add(added, Ordering::SeqCst);
        self.total.fetch_add(added_bytes, Ordering::SeqCst);
        drop(_guards);
        self.touch_many(&present)
    }
}
