//! The shard's log: numbered chunks to the coordinator, and a copy of what
//! the command printed, kept for the action cache.

use buildfleet_proto::v1 as pb;
use tokio::sync::mpsc;
use tracing::warn;

/// A result whose log is larger than this is not cached: replaying a
/// truncated log as if it were the whole would hide output.
pub const CAPTURE_LIMIT: usize = 64 * 1024 * 1024;

/// Bytes per replayed chunk of a cached log.
const REPLAY_CHUNK: usize = 64 * 1024;

/// Sends log chunks for one lease, numbering them from 1 so the coordinator
/// can tell repeats and gaps apart.
pub struct LogSender {
    lease_id: String,
    pub seq: u64,
    out: mpsc::Sender<pb::RunnerMessage>,
    captured: Vec<u8>,
    overflowed: bool,
}

impl LogSender {
    pub fn new(lease_id: String, out: mpsc::Sender<pb::RunnerMessage>) -> LogSender {
        LogSender {
            lease_id,
            seq: 0,
            out,
            captured: Vec::new(),
            overflowed: false,
        }
    }

    pub async fn send(&mut self, stream: pb::LogStream, data: Vec<u8>) {
        if stream != pb::LogStream::System {
            if self.captured.len() + data.len() > CAPTURE_LIMIT {
                self.overflowed = true;
            } else if !self.overflowed {
                self.captured.extend_from_slice(&data);
            }
        }
        self.seq += 1;
        let msg = pb::RunnerMessage {
            msg: Some(pb::runner_message::Msg::Log(pb::ShardLog {
                lease_id: self.lease_id.clone(),
                seq: self.seq,
                stream: stream as i32,
                data,
            })),
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
            pb::LogStream::System,
            format!("buildfleet: {text}\n").into_bytes(),
        )
        .await;
    }

    /// Sends a stored log again, as stdout. Not captured: it is already stored.
    pub async fn replay(&mut self, log: &[u8]) {
        for chunk in log.chunks(REPLAY_CHUNK) {
            self.seq += 1;
            let msg = pb::RunnerMessage {
                msg: Some(pb::runner_message::Msg::Log(pb::ShardLog {
                    lease_id: self.lease_id.clone(),
                    seq: self.seq,
                    stream: pb::LogStream::Stdout as i32,
                    data: chunk.to_vec(),
                })),
            };
            if self.out.send(msg).await.is_err() {
                warn!(
                    seq = self.seq,
                    "replayed log chunk not delivered: coordinator stream closed"
                );
            }
        }
    }

    /// The command's whole output, or `None` if it outgrew the capture limit.
    pub fn captured(&self) -> Option<&[u8]> {
        (!self.overflowed).then_some(self.captured.as_slice())
    }
}
