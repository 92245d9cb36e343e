//! Partial ByteStream uploads kept across broken streams, so a client that
//! lost its connection at 900 MiB of 1 GiB resumes instead of restarting
//! (REAPI's QueryWriteStatus + `write_offset` protocol). Each upload is a
//! [`StagedBlob`]: a file on the store's disk with the hash of what it
//! holds so far, so neither a live nor a parked upload holds its bytes in
//! memory, and resuming continues the hash where it stopped.
//!
//! Bounded three ways, each drop logged: the parked bytes of all uploads
//! together are capped, so is their number (each keeps a file open), with
//! the oldest-idle dropped first; and an upload idle for longer than the
//! expiry is dropped at the next visit to the table. Sweeping lazily on use
//! needs no background task, and an idle table costs nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::CacheError;
use crate::store::{StagedBlob, StoreError, VerifiedBlob};

/// Bounds on parked partial uploads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UploadLimits {
    /// Most bytes parked across all partial uploads.
    pub(crate) max_parked_bytes: u64,
    /// Most partial uploads parked at once.
    pub(crate) max_parked_uploads: usize,
    /// Most bytes live uploads may declare together: each stages a file
    /// of its declared size, so many slow streams could otherwise fill the
    /// disk past what the store may hold.
    pub(crate) max_active_bytes: u64,
    /// A parked upload not resumed within this long is dropped.
    pub(crate) idle_expiry: Duration,
}

/// The table of uploads, by write resource name.
#[derive(Debug)]
pub(crate) struct PartialUploads {
    limits: UploadLimits,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    parked: HashMap<String, Parked>,
    parked_bytes: u64,
    /// Uploads with a live stream: bytes received, bytes declared.
    active: HashMap<String, (u64, u64)>,
    /// The declared sizes of the live uploads, together.
    active_declared: u64,
}

#[derive(Debug)]
struct Parked {
    data: StagedBlob,
    touched: Instant,
}

impl Table {
    fn end_active(&mut self, name: &str) {
        if let Some((_, declared)) = self.active.remove(name) {
            self.active_declared -= declared;
        }
    }

    fn unpark(&mut self, name: &str) -> Option<Parked> {
        let parked = self.parked.remove(name)?;
        self.parked_bytes -= parked.data.written();
        Some(parked)
    }

    fn sweep(&mut self, now: Instant, idle_expiry: Duration) {
        let expired: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.touched) > idle_expiry)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            if let Some(p) = self.unpark(&name) {
                tracing::info!(
                    resource_name = %name,
                    bytes = p.data.written(),
                    idle_secs = now.saturating_duration_since(p.touched).as_secs(),
                    "dropped idle partial upload"
                );
            }
        }
    }
}

impl PartialUploads {
    pub(crate) fn new(limits: UploadLimits) -> Arc<PartialUploads> {
        Arc::new(PartialUploads {
            limits,
            table: Mutex::new(Table::default()),
        })
    }

    /// Starts (or resumes) the upload `name`, taking over its parked file,
    /// or staging a new one with `stage`. A second live stream for one name
    /// is refused: two writers appending to one file would interleave.
    /// Blocks on file creation: call from the blocking pool.
    pub(crate) fn begin(
        self: &Arc<Self>,
        name: &str,
        declared: u64,
        now: Instant,
        stage: impl FnOnce() -> Result<StagedBlob, StoreError>,
    ) -> Result<ActiveUpload, CacheError> {
        let parked = {
            let mut table = self.table.lock();
            table.sweep(now, self.limits.idle_expiry);
            if table.active.contains_key(name) {
                return Err(CacheError::UploadInProgress {
                    resource_name: name.to_owned(),
                });
            }
            let in_flight = table.active_declared + declared;
            if in_flight > self.limits.max_active_bytes {
                tracing::warn!(resource_name = %name, declared, in_flight, max = self.limits.max_active_bytes, "refused upload: too many bytes in flight");
                return Err(CacheError::UploadsFull {
                    in_flight,
                    max_bytes: self.limits.max_active_bytes,
                });
            }
            let parked = table.unpark(name);
            let written = parked.as_ref().map_or(0, |p| p.data.written());
            table.active.insert(name.to_owned(), (written, declared));
            table.active_declared = in_flight;
            parked
        };
        let data = match parked {
            Some(parked) => parked.data,
            None => match stage() {
                Ok(data) => data,
                Err(err) => {
                    self.table.lock().end_active(name);
                    return Err(err.into());
                }
            },
        };
        Ok(ActiveUpload {
            uploads: Arc::clone(self),
            name: name.to_owned(),
            data: Some(data),
        })
    }

    /// Bytes received so far for `name`, live or parked; `None` if unknown.
    pub(crate) fn committed(&self, name: &str, now: Instant) -> Option<u64> {
        let mut table = self.table.lock();
        table.sweep(now, self.limits.idle_expiry);
        table
            .active
            .get(name)
            .map(|(committed, _)| *committed)
            .or_else(|| table.parked.get(name).map(|p| p.data.written()))
    }

    /// Drops a parked upload whose blob exists anyway.
    pub(crate) fn forget(&self, name: &str) {
        if let Some(p) = self.table.lock().unpark(name) {
            tracing::info!(
                resource_name = %name,
                bytes = p.data.written(),
                "dropped partial upload: the blob is already stored"
            );
        }
    }

    /// Total parked bytes, for tests and logs.
    #[cfg(test)]
    pub(crate) fn parked_bytes(&self) -> u64 {
        self.table.lock().parked_bytes
    }

    fn park(&self, name: &str, data: StagedBlob, now: Instant) {
        let mut table = self.table.lock();
        table.end_active(name);
        table.sweep(now, self.limits.idle_expiry);
        let size = data.written();
        if size == 0 {
            return;
        }
        if size > self.limits.max_parked_bytes {
            tracing::warn!(
                resource_name = %name,
                bytes = size,
                max_parked_bytes = self.limits.max_parked_bytes,
                "dropped broken upload: too large to keep for resumption"
            );
            return;
        }
        while table.parked_bytes + size > self.limits.max_parked_bytes
            || table.parked.len() >= self.limits.max_parked_uploads
        {
            let Some(oldest) = table
                .parked
                .iter()
                .min_by_key(|(_, p)| p.touched)
                .map(|(n, _)| n.clone())
            else {
                break;
            };
            if let Some(p) = table.unpark(&oldest) {
                tracing::warn!(
                    resource_name = %oldest,
                    bytes = p.data.written(),
                    "dropped partial upload to make room for a newer one"
                );
            }
        }
        tracing::info!(
            resource_name = %name,
            bytes = size,
            "kept partial upload of a broken stream for resumption"
        );
        table.parked_bytes += size;
        table
            .parked
            .insert(name.to_owned(), Parked { data, touched: now });
    }
}

/// One live write stream's staged file. Dropped without
/// [`ActiveUpload::finish`] or [`ActiveUpload::discard`] (a broken stream, a
/// cancelled handler, a bad offset), it parks the file so the client can
/// resume.
#[derive(Debug)]
pub(crate) struct ActiveUpload {
    uploads: Arc<PartialUploads>,
    name: String,
    /// `None` once finished or discarded.
    data: Option<StagedBlob>,
}

impl ActiveUpload {
    /// Bytes received so far: the only offset the next message may have.
    pub(crate) fn committed(&self) -> u64 {
        self.data.as_ref().map_or(0, StagedBlob::written)
    }

    /// Appends to the file and the hash. Blocks on the write: call from the
    /// blocking pool.
    pub(crate) fn append(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let data = self.data.as_mut().expect("a live upload has its file");
        data.append(chunk)?;
        let committed = data.written();
        if let Some((c, _)) = self.uploads.table.lock().active.get_mut(&self.name) {
            *c = committed;
        }
        Ok(())
    }

    /// Ends the upload: the file, if its bytes hash to the digest.
    pub(crate) fn finish(mut self) -> Result<VerifiedBlob, StoreError> {
        let data = self.data.take().expect("a live upload has its file");
        self.uploads.table.lock().end_active(&self.name);
        data.finish()
    }

    /// Ends the upload keeping nothing: its bytes are known to be useless.
    pub(crate) fn discard(mut self, reason: &str) {
        let data = self.data.take().expect("a live upload has its file");
        self.uploads.table.lock().end_active(&self.name);
        tracing::warn!(
            resource_name = %self.name,
            bytes = data.written(),
            reason,
            "dropped upload"
        );
    }
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            self.uploads.park(&self.name, data, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlobStore, MemoryStore};
    use buildfleet_model::digest::Digest;

    fn uploads(max_bytes: u64, max_uploads: usize) -> Arc<PartialUploads> {
        PartialUploads::new(UploadLimits {
            max_parked_bytes: max_bytes,
            max_parked_uploads: max_uploads,
            max_active_bytes: 1000,
            idle_expiry: Duration::from_secs(60),
        })
    }

    /// A staged upload of `data` with `written` bytes of it received.
    fn staged(store: &MemoryStore, data: &[u8], written: usize) -> StagedBlob {
        let mut s = store.stage(&Digest::of(data)).unwrap();
        s.append(&data[..written]).unwrap();
        s
    }

    #[test]
    fn a_dropped_upload_parks_its_file_and_resumes_the_hash() {
        let store = MemoryStore::new();
        let u = uploads(1000, 10);
        let now = Instant::now();
        let digest = Digest::of(b"hello world");
        let stage = || store.stage(&digest);
        let mut a = u.begin("a", 11, now, stage).unwrap();
        a.append(b"hello ").unwrap();
        assert_eq!(u.committed("a", now), Some(6), "live count visible");
        assert!(matches!(
            u.begin("a", 11, now, || store.stage(&digest)),
            Err(CacheError::UploadInProgress { .. })
        ));
        drop(a);
        assert_eq!(u.committed("a", now), Some(6));
        assert_eq!(u.parked_bytes(), 6);
        let mut a = u
            .begin("a", 11, now, || {
                panic!("a parked upload is resumed, not staged anew")
            })
            .unwrap();
        assert_eq!(a.committed(), 6);
        assert_eq!(u.parked_bytes(), 0);
        a.append(b"world").unwrap();
        let blob = a.finish().expect("the resumed hash covers both halves");
        assert_eq!(blob.digest(), digest);
        assert_eq!(u.committed("a", now), None);
    }

    #[test]
    fn discarded_uploads_keep_nothing() {
        let store = MemoryStore::new();
        let u = uploads(1000, 10);
        let mut a = u
            .begin("a", 5, Instant::now(), || {
                store.stage(&Digest::of(b"junk!"))
            })
            .unwrap();
        a.append(b"junk").unwrap();
        a.discard("test");
        assert_eq!(u.committed("a", Instant::now()), None);
        assert_eq!(u.parked_bytes(), 0);
    }

    #[test]
    fn the_caps_drop_the_oldest_and_refuse_oversized_uploads() {
        let store = MemoryStore::new();
        let u = uploads(10, 10);
        let t0 = Instant::now();
        u.park("old", staged(&store, b"123456", 5), t0);
        u.park(
            "mid",
            staged(&store, b"123456", 4),
            t0 + Duration::from_secs(1),
        );
        u.park(
            "new",
            staged(&store, b"123456", 3),
            t0 + Duration::from_secs(2),
        );
        let now = t0 + Duration::from_secs(3);
        assert_eq!(u.committed("old", now), None, "oldest dropped for room");
        assert_eq!(u.committed("mid", now), Some(4));
        assert_eq!(u.committed("new", now), Some(3));
        assert_eq!(u.parked_bytes(), 7);
        u.park("huge", staged(&store, b"123456789012", 11), now);
        assert_eq!(u.committed("huge", now), None);
        assert_eq!(u.parked_bytes(), 7, "nothing evicted for a hopeless one");

        let u = uploads(1000, 2);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            u.park(
                name,
                staged(&store, b"xy", 1),
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(
            u.committed("a", now),
            None,
            "the count cap drops the oldest"
        );
        assert_eq!(u.committed("b", now), Some(1));
        assert_eq!(u.committed("c", now), Some(1));
    }

    #[test]
    fn idle_uploads_expire() {
        let store = MemoryStore::new();
        let u = uploads(100, 10);
        let t0 = Instant::now();
        u.park("a", staged(&store, b"abcd", 3), t0);
        assert_eq!(u.committed("a", t0 + Duration::from_secs(60)), Some(3));
        assert_eq!(u.committed("a", t0 + Duration::from_secs(61)), None);
        assert_eq!(u.parked_bytes(), 0);
    }

    #[test]
    fn live_uploads_may_declare_only_so_many_bytes_together() {
        let store = MemoryStore::new();
        let u = uploads(1000, 10);
        let now = Instant::now();
        let big = |n: u8| Digest::of(&vec![n; 600]);
        let a = u.begin("a", 600, now, || store.stage(&big(1))).unwrap();
        let err = u.begin("b", 600, now, || store.stage(&big(2))).unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::UploadsFull {
                    in_flight: 1200,
                    max_bytes: 1000
                }
            ),
            "{err}"
        );
        assert_eq!(u.committed("b", now), None, "nothing staged for it");
        a.discard("test");
        let b = u.begin("b", 600, now, || store.stage(&big(2)));
        assert!(b.is_ok(), "room again once the first ended");
    }
}
