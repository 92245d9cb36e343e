//! Checks for a batch of blobs (a BatchUpdateBlobs), spread over the cores:
//! hashing is most of what storing a small blob costs, and one request can
//! carry thousands of them.

use bytes::Bytes;

use super::limits::Admit;
use super::{StoreError, StoreLimits};
use buildfleet_model::digest::Digest;

/// Batches with less than this many bytes are checked on one thread: a
/// thread costs more than hashing them.
const PARALLEL_FROM_BYTES: usize = 256 * 1024;

/// Whether each blob hashes to its digest, in order, on up to as many
/// threads as there are cores (a BatchReadBlobs verifies what it serves).
pub(crate) fn verify_all(blobs: &[(Digest, Bytes)]) -> Vec<bool> {
    in_parallel(blobs, |(digest, data)| super::verify(digest, data).is_ok())
}

/// [`StoreLimits::admit`] for every blob, in order, on up to as many
/// threads as there are cores.
pub(crate) fn admit_all(
    limits: &StoreLimits,
    blobs: &[(Digest, Bytes)],
) -> Vec<Result<Admit, StoreError>> {
    in_parallel(blobs, |(digest, data)| limits.admit(digest, data))
}

/// `check` of every blob, in order, split over the cores when the batch is
/// large enough to pay for the threads.
fn in_parallel<T: Send>(
    blobs: &[(Digest, Bytes)],
    check: impl Fn(&(Digest, Bytes)) -> T + Sync,
) -> Vec<T> {
    let admit = &check;
    let total: usize = blobs.iter().map(|(_, d)| d.len()).sum();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if total < PARALLEL_FROM_BYTES || threads < 2 || blobs.len() < 2 {
        return blobs.iter().map(admit).collect();
    }
    // Contiguous shares of roughly equal bytes, so results stay in order.
    let share = total.div_ceil(threads);
    let mut parts: Vec<&[(Digest, Bytes)]> = Vec::with_capacity(threads);
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, data)) in blobs.iter().enumerate() {
        bytes += data.len();
        if bytes >= share && parts.len() + 1 < threads {
            parts.push(&blobs[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    parts.push(&blobs[start..]);
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .iter()
            .map(|part| {
                std::thread::Builder::new()
                    .name("cas-verify".into())
                    .spawn_scoped(scope, move || part.iter().map(admit).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .zip(&parts)
            .flat_map(|(handle, part)| match handle {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| part.iter().map(admit).collect()),
                // No thread to be had: check this share here.
                Err(_) => part.iter().map(admit).collect(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_batch_is_checked_in_order_whatever_the_threads() {
        let blobs: Vec<(Digest, Bytes)> = (0..300u32)
            .map(|i| {
                let data = Bytes::from(vec![i as u8; 2048 + i as usize]);
                let mut digest = Digest::of(&data);
                if i % 7 == 0 {
                    digest.hash[0] ^= 1;
                }
                (digest, data)
            })
            .collect();
        let results = admit_all(&StoreLimits::unlimited(), &blobs);
        assert_eq!(results.len(), 300);
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i % 7 == 0, "blob {i}");
        }
    }
}
