//! How much a store may hold, and the one eviction rule both stores follow.

use std::sync::atomic::{AtomicU64, Ordering};

/// Evictions bring the total down to this share of the limit, so a store at
/// its limit does not evict on every single put.
const LOW_WATER_PERCENT: u64 = 90;

/// What a put of a verified blob comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Store it.
    Store,
    /// The empty blob: present in every store without being stored.
    AlwaysPresent,
}

/// Size limits for a [`BlobStore`](super::BlobStore).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most blob bytes the store holds; `None` keeps everything.
    pub max_bytes: Option<u64>,
}

impl StoreLimits {
    /// No limit: nothing is ever evicted.
    pub fn unlimited() -> StoreLimits {
        StoreLimits { max_bytes: None }
    }

    /// At most `max_bytes` of blobs.
    pub fn max_bytes(max_bytes: u64) -> StoreLimits {
        StoreLimits {
            max_bytes: Some(max_bytes),
        }
    }

    /// The checks every put makes, in every store, before it stores
    /// anything: the bytes hash to the digest (under its own function), and
    /// the blob is not larger than the whole limit.
    pub(crate) fn admit(
        &self,
        digest: &buildfleet_model::Digest,
        data: &[u8],
    ) -> Result<Admit, super::StoreError> {
        super::verify(digest, data)?;
        self.admit_verified(digest)
    }

    /// [`StoreLimits::admit`] for a blob whose bytes were verified as they
    /// arrived (a committed [`super::VerifiedBlob`]).
    pub(crate) fn admit_verified(
        &self,
        digest: &buildfleet_model::Digest,
    ) -> Result<Admit, super::StoreError> {
        if digest.is_empty_blob() {
            return Ok(Admit::AlwaysPresent);
        }
        if self.too_large(digest.size_bytes) {
            return Err(super::StoreError::TooLarge {
                digest: *digest,
                max_bytes: self.max_bytes.unwrap_or(u64::MAX),
            });
        }
        Ok(Admit::Store)
    }

    /// True when `total` is over the limit and eviction must run.
    pub(crate) fn over(&self, total: u64) -> bool {
        self.max_bytes.is_some_and(|max| total > max)
    }

    /// What eviction brings the total down to.
    pub(crate) fn low_water(&self) -> u64 {
        self.max_bytes.map_or(u64::MAX, |max| {
            max / 100 * LOW_WATER_PERCENT + max % 100 * LOW_WATER_PERCENT / 100
        })
    }

    /// Refuses a metadata write that would bring all metadata past half the
    /// limit: action results and index entries name blobs, and a store full
    /// of entries has no room left for what they name. Metadata is not
    /// evicted (a blob can be uploaded again; a result would have to be
    /// rebuilt), so the refusal is the bound, and it is loud.
    pub(crate) fn meta_full(
        &self,
        table: super::MetaTable,
        would_be: u64,
    ) -> Result<(), super::StoreError> {
        match self.max_bytes {
            Some(max) if would_be > max / 2 => Err(super::StoreError::MetadataFull {
                table,
                would_be,
                max_bytes: max / 2,
            }),
            _ => Ok(()),
        }
    }

    /// True when one blob of `size` bytes can never fit.
    pub(crate) fn too_large(&self, size: u64) -> bool {
        self.max_bytes.is_some_and(|max| size > max)
    }
}

/// Blobs and bytes evicted since the store opened, for the metrics.
#[derive(Debug, Default)]
pub struct Evictions {
    blobs: AtomicU64,
    bytes: AtomicU64,
}

impl Evictions {
    /// (blobs, bytes) evicted so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.blobs.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// The one log line every eviction produces, so operators see the same
/// fields whichever store runs.
pub(crate) fn log_eviction(
    store: &str,
    blobs: u64,
    bytes: u64,
    total_after: u64,
    limits: &StoreLimits,
    counted: &Evictions,
) {
    if blobs > 0 {
        counted.blobs.fetch_add(blobs, Ordering::Relaxed);
        counted.bytes.fetch_add(bytes, Ordering::Relaxed);
        tracing::info!(
            store,
            evicted_blobs = blobs,
            evicted_bytes = bytes,
            total_bytes = total_after,
            max_bytes = limits.max_bytes,
            "evicted least recently used blobs"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_water_is_ninety_percent() {
        assert_eq!(StoreLimits::max_bytes(1000).low_water(), 900);
        assert_eq!(
            StoreLimits::max_bytes(u64::MAX).low_water(),
            u64::MAX / 100 * 90 + 13
        );
        assert!(StoreLimits::max_bytes(10).over(11));
        assert!(!StoreLimits::max_bytes(10).over(10));
        assert!(!StoreLimits::unlimited().over(u64::MAX));
        assert!(StoreLimits::max_bytes(10).too_large(11));
    }
}
