//! Pins: blobs kept from eviction until a moment — a run's artifacts, so a
//! deploy can always be re-done within the retention. A pin is a metadata
//! entry (blob key → Unix seconds it lasts until); eviction passes over
//! a blob whose pin has not expired, whichever store it is. Pinning again
//! only ever extends.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{BlobStore, MetaTable, StoreError};
use buildfleet_model::digest::Digest;

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The moment a stored pin lasts until, if the value is one.
fn until_of(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

/// Whether `digest` is pinned at `now` (Unix seconds), given a reader of
/// the store's pin table — the stores call this from their eviction loop
/// with their own access to it.
pub(crate) fn held(read: impl Fn(&[u8]) -> Option<Bytes>, digest: &Digest, now: u64) -> bool {
    read(&digest.key_bytes())
        .and_then(|v| until_of(&v))
        .is_some_and(|until| until > now)
}

/// Pins each digest until `until`, keeping a later pin where there is one.
/// Returns how many pins were set or extended.
pub fn pin(
    store: &dyn BlobStore,
    digests: &[Digest],
    until: SystemTime,
) -> Result<usize, StoreError> {
    let until = unix_secs(until);
    let mut changed = 0;
    for d in digests {
        let key = d.key_bytes();
        let current = store
            .meta_get(MetaTable::Pins, &key)?
            .and_then(|v| until_of(&v));
        if current.is_some_and(|c| c >= until) {
            continue;
        }
        store.meta_put(
            MetaTable::Pins,
            &key,
            Bytes::copy_from_slice(&until.to_be_bytes()),
        )?;
        changed += 1;
    }
    Ok(changed)
}
