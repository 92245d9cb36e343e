//! Partial ByteStream uploads kept across broken streams, so a client that
//! lost its connection at 900 MiB of 1 GiB resumes instead of restarting
//! (REAPI's QueryWriteStatus + `write_offset` protocol).
//!
//! Bounded two ways, each drop logged: the parked bytes of all uploads
//! together are capped (oldest-idle dropped first), and an upload idle for
//! longer than the expiry is dropped at the next visit to the table. Sweeping
//! lazily on use needs no background task, and an idle table costs nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use crate::error::CacheError;

/// Bounds on parked partial uploads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UploadLimits {
    /// Most bytes parked across all partial uploads.
    pub(crate) max_parked_bytes: u64,
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
    /// Uploads with a live stream, and how many bytes each has received.
    active: HashMap<String, u64>,
}

#[derive(Debug)]
struct Parked {
    data: BytesMut,
    touched: Instant,
}

impl Table {
    fn unpark(&mut self, name: &str) -> Option<Parked> {
        let parked = self.parked.remove(name)?;
        self.parked_bytes -= parked.data.len() as u64;
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
                    bytes = p.data.len(),
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

    /// Starts (or resumes) the upload `name`, taking over its parked bytes.
    /// A second live stream for one name is refused: two writers appending
    /// to one buffer would interleave.
    pub(crate) fn begin(
        self: &Arc<Self>,
        name: &str,
        capacity: usize,
        now: Instant,
    ) -> Result<ActiveUpload, CacheError> {
        let mut table = self.table.lock();
        table.sweep(now, self.limits.idle_expiry);
        if table.active.contains_key(name) {
            return Err(CacheError::UploadInProgress {
                resource_name: name.to_owned(),
            });
        }
        let data = match table.unpark(name) {
            Some(parked) => parked.data,
            None => BytesMut::with_capacity(capacity),
        };
        table.active.insert(name.to_owned(), data.len() as u64);
        Ok(ActiveUpload {
            uploads: Arc::clone(self),
            name: name.to_owned(),
            data,
            done: false,
        })
    }

    /// Bytes received so far for `name`, live or parked; `None` if unknown.
    pub(crate) fn committed(&self, name: &str, now: Instant) -> Option<u64> {
        let mut table = self.table.lock();
        table.sweep(now, self.limits.idle_expiry);
        table
            .active
            .get(name)
            .copied()
            .or_else(|| table.parked.get(name).map(|p| p.data.len() as u64))
    }

    /// Drops a parked upload whose blob exists anyway.
    pub(crate) fn forget(&self, name: &str) {
        if let Some(p) = self.table.lock().unpark(name) {
            tracing::info!(
                resource_name = %name,
                bytes = p.data.len(),
                "dropped partial upload: the blob is already stored"
            );
        }
    }

    /// Total parked bytes, for tests and logs.
    #[cfg(test)]
    pub(crate) fn parked_bytes(&self) -> u64 {
        self.table.lock().parked_bytes
    }

    fn park(&self, name: &str, data: BytesMut, now: Instant) {
        let mut table = self.table.lock();
        table.active.remove(name);
        table.sweep(now, self.limits.idle_expiry);
        let size = data.len() as u64;
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
        while table.parked_bytes + size > self.limits.max_parked_bytes {
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
                    bytes = p.data.len(),
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

/// One live write stream's buffer. Dropped without [`ActiveUpload::finish`]
/// or [`ActiveUpload::discard`] (a broken stream, a cancelled handler, a bad
/// offset), it parks its bytes so the client can resume.
#[derive(Debug)]
pub(crate) struct ActiveUpload {
    uploads: Arc<PartialUploads>,
    name: String,
    data: BytesMut,
    done: bool,
}

impl ActiveUpload {
    /// Bytes received so far: the only offset the next message may have.
    pub(crate) fn committed(&self) -> u64 {
        self.data.len() as u64
    }

    pub(crate) fn append(&mut self, chunk: &[u8]) {
        self.data.extend_from_slice(chunk);
        let committed = self.committed();
        if let Some(c) = self.uploads.table.lock().active.get_mut(&self.name) {
            *c = committed;
        }
    }

    /// The complete data, ending the upload.
    pub(crate) fn finish(mut self) -> Bytes {
        self.done = true;
        self.uploads.table.lock().active.remove(&self.name);
        std::mem::take(&mut self.data).freeze()
    }

    /// Ends the upload keeping nothing: its bytes are known to be useless.
    pub(crate) fn discard(mut self, reason: &str) {
        self.done = true;
        self.uploads.table.lock().active.remove(&self.name);
        tracing::warn!(
            resource_name = %self.name,
            bytes = self.data.len(),
            reason,
            "dropped upload"
        );
    }
}

impl Drop for ActiveUpload {
    fn drop(&mut self) {
        if !self.done {
            let data = std::mem::take(&mut self.data);
            self.uploads.park(&self.name, data, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uploads(max: u64) -> Arc<PartialUploads> {
        PartialUploads::new(UploadLimits {
            max_parked_bytes: max,
            idle_expiry: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_dropped_upload_parks_and_resumes() {
        let u = uploads(1000);
        let now = Instant::now();
        let mut a = u.begin("a", 0, now).unwrap();
        a.append(b"hello ");
        assert_eq!(u.committed("a", now), Some(6), "live count visible");
        assert!(matches!(
            u.begin("a", 0, now),
            Err(CacheError::UploadInProgress { .. })
        ));
        drop(a);
        assert_eq!(u.committed("a", now), Some(6));
        assert_eq!(u.parked_bytes(), 6);
        let mut a = u.begin("a", 0, now).unwrap();
        assert_eq!(a.committed(), 6);
        assert_eq!(u.parked_bytes(), 0);
        a.append(b"world");
        assert_eq!(a.finish(), Bytes::from_static(b"hello world"));
        assert_eq!(u.committed("a", now), None);
    }

    #[test]
    fn discarded_uploads_keep_nothing() {
        let u = uploads(1000);
        let mut a = u.begin("a", 0, Instant::now()).unwrap();
        a.append(b"junk");
        a.discard("test");
        assert_eq!(u.committed("a", Instant::now()), None);
        assert_eq!(u.parked_bytes(), 0);
    }

    #[test]
    fn the_cap_drops_the_oldest_and_refuses_oversized_uploads() {
        let u = uploads(10);
        let t0 = Instant::now();
        u.park("old", BytesMut::from(&b"12345"[..]), t0);
        u.park(
            "mid",
            BytesMut::from(&b"1234"[..]),
            t0 + Duration::from_secs(1),
        );
        u.park(
            "new",
            BytesMut::from(&b"123"[..]),
            t0 + Duration::from_secs(2),
        );
        let now = t0 + Duration::from_secs(3);
        assert_eq!(u.committed("old", now), None, "oldest dropped for room");
        assert_eq!(u.committed("mid", now), Some(4));
        assert_eq!(u.committed("new", now), Some(3));
        assert_eq!(u.parked_bytes(), 7);
        u.park("huge", BytesMut::from(&b"12345678901"[..]), now);
        assert_eq!(u.committed("huge", now), None);
        assert_eq!(u.parked_bytes(), 7, "nothing evicted for a hopeless one");
    }

    #[test]
    fn idle_uploads_expire() {
        let u = uploads(100);
        let t0 = Instant::now();
        u.park("a", BytesMut::from(&b"abc"[..]), t0);
        assert_eq!(u.committed("a", t0 + Duration::from_secs(60)), Some(3));
        assert_eq!(u.committed("a", t0 + Duration::from_secs(61)), None);
        assert_eq!(u.parked_bytes(), 0);
    }
}
