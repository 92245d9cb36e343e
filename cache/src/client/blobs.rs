//! Many in-memory blobs at once: small ones packed into batches, large ones
//! streamed, a few requests in flight so a loopback or LAN link is not left
//! idle between round trips.

use std::collections::HashMap;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tracing::Instrument;

use super::{CasClient, UploadStats, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES};
use crate::error::CacheError;
use buildfleet_model::digest::Digest;

/// Requests in flight at once. Enough to hide one round trip behind the
/// transfer of another; more only queues on the server's blocking pool.
const IN_FLIGHT: usize = 4;

/// One unit of transfer: a batch of small blobs or one large blob.
enum Transfer<T> {
    Batch(Vec<T>),
    Large(T),
}

/// Packs items into batches of at most [`BATCH_TARGET_BYTES`]; blobs at or
/// above [`BATCH_BLOB_LIMIT`] travel alone.
fn plan<T>(items: impl IntoIterator<Item = (u64, T)>) -> Vec<Transfer<T>> {
    let mut plan = Vec::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0u64;
    for (size, item) in items {
        if size >= BATCH_BLOB_LIMIT {
            plan.push(Transfer::Large(item));
            continue;
        }
        if batch_bytes + size > BATCH_TARGET_BYTES && !batch.is_empty() {
            plan.push(Transfer::Batch(std::mem::take(&mut batch)));
            batch_bytes = 0;
        }
        batch_bytes += size;
        batch.push(item);
    }
    if !batch.is_empty() {
        plan.push(Transfer::Batch(batch));
    }
    plan
}

/// Hashes blobs on a few blocking threads: hashing a large upload on one
/// core before the first byte is sent would take a third of the time.
async fn digests_of(blobs: &[Bytes]) -> Result<Vec<Digest>, CacheError> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let total: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    // Contiguous groups of about equal bytes, so results stay in order.
    let share = total / threads as u64 + 1;
    let mut groups: Vec<Vec<Bytes>> = vec![Vec::new()];
    let mut group_bytes = 0u64;
    for blob in blobs {
        if group_bytes >= share {
            groups.push(Vec::new());
            group_bytes = 0;
        }
        group_bytes += blob.len() as u64;
        groups.last_mut().expect("never empty").push(blob.clone());
    }
    let handles: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let span = tracing::debug_span!("hash_blobs", blobs = group.len());
            tokio::task::spawn_blocking(move || {
                span.in_scope(|| group.iter().map(|b| Digest::of(b)).collect::<Vec<_>>())
            })
        })
        .collect();
    let mut digests = Vec::with_capacity(blobs.len());
    for handle in handles {
        digests.extend(handle.await?);
    }
    Ok(digests)
}

/// Runs one transfer as its own task: decoding, copying and verifying
/// happen where the transfer is polled, and in one task they would all
/// share a single thread.
async fn spawn_transfer<T: Send + 'static>(
    what: &'static str,
    transfer: impl std::future::Future<Output = Result<T, CacheError>> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::spawn(transfer.instrument(tracing::debug_span!("transfer", what))).await?
}

impl CasClient {
    /// Uploads every blob the server lacks. Returns their digests in input
    /// order, and what was sent.
    pub async fn upload_blobs(
        &self,
        blobs: Vec<Bytes>,
    ) -> Result<(Vec<Digest>, UploadStats), CacheError> {
        let digests = digests_of(&blobs).await?;
        let mut by_digest: HashMap<Digest, Bytes> = digests.iter().copied().zip(blobs).collect();
        let distinct: Vec<Digest> = by_digest.keys().copied().collect();
        let missing = self.find_missing(&distinct).await?;
        let mut stats = UploadStats::default();
        let mut todo = Vec::with_capacity(missing.len());
        for digest in missing {
            if let Some(data) = by_digest.remove(&digest) {
                stats.uploaded_blobs += 1;
                stats.uploaded_bytes += digest.size_bytes;
                todo.push((digest.size_bytes, (digest, data)));
            }
        }
        stats.skipped_blobs = distinct.len() as u64 - stats.uploaded_blobs;
        futures::stream::iter(plan(todo))
            .map(|transfer| {
                let client = self.clone();
                spawn_transfer("upload", async move {
                    match transfer {
                        Transfer::Batch(blobs) => client.batch_update(blobs).await,
                        Transfer::Large((digest, data)) => client.write_bytes(digest, data).await,
                    }
                })
            })
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok((digests, stats))
    }

    /// Reads and verifies blobs, in input order.
    pub async fn read_blobs(&self, digests: &[Digest]) -> Result<Vec<Bytes>, CacheError> {
        let mut distinct: Vec<Digest> = digests
            .iter()
            .copied()
            .filter(|d| !d.is_empty_blob())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let fetched: Vec<Vec<(Digest, Bytes)>> =
            futures::stream::iter(plan(distinct.into_iter().map(|d| (d.size_bytes, d))))
                .map(|transfer| {
                    let client = self.clone();
                    spawn_transfer("download", async move {
                        match transfer {
                            Transfer::Batch(batch) => client.batch_read(&batch).await,
                            Transfer::Large(digest) => {
                                Ok(vec![(digest, client.stream_read(&digest).await?)])
                            }
                        }
                    })
                })
                .buffer_unordered(IN_FLIGHT)
                .try_collect()
                .await?;
        let by_digest: HashMap<Digest, Bytes> = fetched.into_iter().flatten().collect();
        digests
            .iter()
            .map(|d| {
                if d.is_empty_blob() {
                    return Ok(Bytes::new());
                }
                by_digest.get(d).cloned().ok_or(CacheError::NotFound(*d))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_packs_small_blobs_and_sends_large_ones_alone() {
        const K900: u64 = 900 * 1024;
        let sizes = [10, BATCH_BLOB_LIMIT, K900, K900, K900, K900, 5];
        let shapes: Vec<(bool, Vec<u64>)> = plan(sizes.iter().map(|&s| (s, s)))
            .into_iter()
            .map(|t| match t {
                Transfer::Batch(b) => (false, b),
                Transfer::Large(l) => (true, vec![l]),
            })
            .collect();
        assert_eq!(
            shapes,
            vec![
                (true, vec![BATCH_BLOB_LIMIT]),
                (false, vec![10, K900, K900, K900]),
                (false, vec![K900, 5]),
            ]
        );
    }
}
