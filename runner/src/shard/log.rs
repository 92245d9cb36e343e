//! The shard's log: numbered chunks to the coordinator, and a copy of what
//! the command printed — chunk by chunk, each with its stream — kept for
//! the action cache, so a replay is the stream watchers saw.
//!
//! Logs are never cut silently: past the lease's cap only the head has been
//! streamed; the tail is kept and sent at the end after a marker that says
//! how many bytes were dropped and where the whole log is. The whole log is
//! always spooled to disk and stored in the cache by digest.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;

use buildfleet_cache::{CasClient, Digest};
use buildfleet_model::LogStream;
use tokio::sync::mpsc;
use tracing::warn;

use super::framed;
use super::mask::Masker;
use crate::wire::Outgoing;

/// A result whose log is larger than this is not cached: replaying a
/// truncated log as if it were the whole would hide output.
pub const CAPTURE_LIMIT: usize = 64 * 1024 * 1024;

/// Sends log chunks for one lease, numbering them from 1 so the coordinator
/// can tell repeats and gaps apart.
pub struct LogSender {
    lease_id: String,
    pub seq: u64,
    out: mpsc::Sender<Outgoing>,
    captured: framed::Writer,
    capturing: bool,
    overflowed: bool,
    /// Secret values, replaced by `***` wherever they appear.
    masker: Masker,
    cap: Option<Cap>,
    /// Every byte of output, for the cache: a file beside the work dir.
    spool: Option<(PathBuf, std::fs::File)>,
    spooled: u64,
    /// The end of a chunk that stopped mid-line (a line longer than a
    /// chunk), per stream, held back until the next chunk of that stream:
    /// a secret cut in two by the split is masked whole.
    held: Vec<(LogStream, Vec<u8>)>,
}

/// Head streamed, tail kept, middle counted.
struct Cap {
    head_left: usize,
    tail_max: usize,
    tail: VecDeque<(LogStream, Vec<u8>)>,
    tail_len: usize,
    dropped: u64,
}

/// What the log came to: the whole log's digest and what the cap dropped.
#[derive(Debug, Default)]
pub struct Finished {
    pub full_log: Option<Digest>,
    pub dropped: u64,
}

impl LogSender {
    pub fn new(lease_id: String, out: mpsc::Sender<Outgoing>) -> LogSender {
        LogSender {
            lease_id,
            seq: 0,
            out,
            captured: framed::Writer::default(),
            capturing: true,
            overflowed: false,
            masker: Masker::default(),
            cap: None,
            spool: None,
            spooled: 0,
            held: Vec::new(),
        }
    }

    /// Masks these secret values in everything sent and stored.
    pub fn mask_with(&mut self, masker: Masker) {
        self.masker = masker;
    }

    /// Streams at most `bytes` of output live (half head, half tail).
    pub fn cap_at(&mut self, bytes: usize) {
        self.cap = Some(Cap {
            head_left: bytes / 2,
            tail_max: bytes - bytes / 2,
            tail: VecDeque::new(),
            tail_len: 0,
            dropped: 0,
        });
    }

    /// Spools the whole log to `path` (removed by `finish`).
    pub fn spool_to(&mut self, path: PathBuf) -> std::io::Result<()> {
        let file = std::fs::File::create(&path)?;
        self.spool = Some((path, file));
        Ok(())
    }

    pub async fn send(&mut self, stream: LogStream, data: Vec<u8>) {
        let mut data = match self.held.iter().position(|(s, _)| *s == stream) {
            Some(i) => {
                let mut joined = self.held.swap_remove(i).1;
                joined.extend_from_slice(&data);
                joined
            }
            None => data,
        };
        let longest = self.masker.longest();
        if longest > 1 && stream != LogStream::System && !data.ends_with(b"\n") {
            let keep = (longest - 1).min(data.len());
            let tail = data.split_off(data.len() - keep);
            self.held.push((stream, tail));
            if data.is_empty() {
                return;
            }
        }
        self.emit(stream, data, true).await;
    }

    /// Sends (and spools) one chunk; `capture` keeps it for the action cache.
    async fn emit(&mut self, stream: LogStream, data: Vec<u8>, capture: bool) {
        let data = self.masker.bytes(data);
        if let Some((path, file)) = &mut self.spool {
            if let Err(e) = file.write_all(&data) {
                warn!(file = %path.display(), error = %e, "log spool write failed; the stored log will be marked incomplete");
                self.spool = None;
            } else {
                self.spooled += data.len() as u64;
            }
        }
        if stream != LogStream::System {
            if let Some(cap) = &mut self.cap {
                if data.len() > cap.head_left {
                    let (head, rest) = data.split_at(cap.head_left);
                    let head = head.to_vec();
                    cap.head_left = 0;
                    cap.tail_len += rest.len();
                    cap.tail.push_back((stream, rest.to_vec()));
                    while cap.tail_len > cap.tail_max {
                        let (s, mut front) = cap.tail.pop_front().expect("non-empty while over");
                        let over = cap.tail_len - cap.tail_max;
                        if front.len() > over {
                            front.drain(..over);
                            cap.dropped += over as u64;
                            cap.tail_len -= over;
                            cap.tail.push_front((s, front));
                        } else {
                            cap.dropped += front.len() as u64;
                            cap.tail_len -= front.len();
                        }
                    }
                    if capture {
                        self.capture(stream, &data);
                    }
                    if !head.is_empty() {
                        self.transmit(stream, head).await;
                    }
                    return;
                }
                cap.head_left -= data.len();
            }
        }
        if capture {
            self.capture(stream, &data);
        }
        self.transmit(stream, data).await;
    }

    fn capture(&mut self, stream: LogStream, data: &[u8]) {
        if !self.capturing {
            return;
        }
        let stream = match stream {
            LogStream::Stdout => framed::Stream::Stdout,
            LogStream::Stderr => framed::Stream::Stderr,
            _ => return,
        };
        // Framing costs 5 bytes a chunk.
        if self.captured.len() + data.len() + 5 > CAPTURE_LIMIT {
            self.overflowed = true;
        } else if !self.overflowed {
            self.captured.push(stream, data);
        }
    }

    /// Sends what the cap kept back (after a marker), stores the whole log
    /// in the cache, and says where it is.
    /// Sends what was held back for masking: the command's output has
    /// ended, so nothing will follow it.
    pub async fn flush_held(&mut self) {
        for (stream, tail) in std::mem::take(&mut self.held) {
            self.emit(stream, tail, true).await;
        }
    }

    pub async fn finish(&mut self, cas: &CasClient, locator: &str) -> Finished {
        self.flush_held().await;
        let mut done = Finished::default();
        if let Some((path, file)) = self.spool.take() {
            drop(file);
            // Streamed from the spool: a whole log may be gigabytes.
            match cas.upload_file(&path).await {
                Ok(d) => done.full_log = Some(d),
                Err(e) => {
                    self.system(format!(
                        "the full log could not be stored in the cache: {e}"
                    ))
                    .await
                }
            }
            if let Err(e) = tokio::fs::remove_file(&path).await {
                warn!(file = %path.display(), error = %e, "log spool not removed");
            }
        }
        let Some(cap) = self.cap.take() else {
            return done;
        };
        if cap.dropped == 0 {
            for (stream, data) in cap.tail {
                self.transmit(stream, data).await;
            }
            return done;
        }
        done.dropped = cap.dropped;
        let whole = match &done.full_log {
            Some(d) => format!(
                "the full log ({} bytes) is stored as {d}: `{locator}`",
                self.spooled
            ),
            None => "the full log could not be stored".to_owned(),
        };
        let marker = format!(
            "[log cap reached: {} bytes dropped between the first and last part; {whole}]",
            cap.dropped
        );
        self.system(marker).await;
        for (stream, data) in cap.tail {
            self.transmit(stream, data).await;
        }
        done
    }

    async fn transmit(&mut self, stream: LogStream, data: Vec<u8>) {
        self.seq += 1;
        let msg = Outgoing::Log {
            lease_id: self.lease_id.clone(),
            seq: self.seq,
            stream,
            data,
        };
        if self.out.send(msg).await.is_err() {
            warn!(
                seq = self.seq,
                "log chunk not delivered: coordinator stream closed"
            );
        }
    }

    pub async fn system(&mut self, text: String) {
        self.send(
            LogStream::System,
            format!("buildfleet: {text}\n").into_bytes(),
        )
        .await;
    }

    /// Sends a stored log again, chunk by chunk on the stream each was
    /// first sent on: what a watcher saw when the step ran. Spooled, so the
    /// shard's whole log includes it; not captured, as it is stored already.
    /// A malformed log is refused before anything is sent.
    pub async fn replay(&mut self, stored: &[u8]) -> Result<(), framed::FramingError> {
        let chunks = framed::read(stored)?;
        for (stream, data) in chunks {
            let stream = match stream {
                framed::Stream::Stdout => LogStream::Stdout,
                framed::Stream::Stderr => LogStream::Stderr,
            };
            self.emit(stream, data.to_vec(), false).await;
        }
        Ok(())
    }

    /// Nothing sent from now on is kept for the action cache.
    pub fn stop_capture(&mut self) {
        self.capturing = false;
    }

    /// The command's whole output in its stored form, or `None` if it
    /// outgrew the capture limit.
    pub fn captured(&self) -> Option<&[u8]> {
        (!self.overflowed).then_some(self.captured.bytes())
    }
}
