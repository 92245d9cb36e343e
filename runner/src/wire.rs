//! The runner's gRPC edge: what it says to the coordinator and what it is
//! told, as plain Rust, converted here and nowhere else. Shard execution,
//! logs and reports never see a protobuf type.

use std::time::Duration;

use buildfleet_model::{Lease, LogStream, ShardReport};
use buildfleet_proto::convert::{self, WireError};
use buildfleet_proto::v1 as pb;
use pb::runner_message::Msg as Out;

/// A message for the coordinator. All of a session's messages go through
/// one channel, so a shard's last log chunk is always ahead of its result.
#[derive(Debug)]
pub enum Outgoing {
    /// The first message of a session.
    Register {
        name: String,
        labels: Vec<String>,
        slots: u32,
        /// How shards are isolated here, in words.
        isolation: String,
    },
    /// Alive, and why no new leases fit (`None` = they do).
    Heartbeat {
        unavailable: Option<String>,
        /// Free bytes on the work directory's disk (`None`: unreadable).
        disk_free: Option<u64>,
    },
    /// One numbered chunk of a lease's log.
    Log {
        lease_id: String,
        seq: u64,
        stream: LogStream,
        data: Vec<u8>,
    },
    /// A lease's end; sent only once its processes are gone.
    Result {
        lease_id: String,
        report: Box<ShardReport>,
    },
    /// The runner is stopping: running shards get this long.
    Drain { grace: Duration },
    /// A lease given back unfinished, and why.
    HandBack { lease_id: String, reason: String },
}

impl From<Outgoing> for pb::RunnerMessage {
    fn from(m: Outgoing) -> pb::RunnerMessage {
        let msg = match m {
            Outgoing::Register {
                name,
                labels,
                slots,
                isolation,
            } => Out::Register(pb::Register {
                name,
                labels,
                slots,
                isolation,
            }),
            Outgoing::Heartbeat {
                unavailable,
                disk_free,
            } => Out::Heartbeat(pb::Heartbeat {
                unavailable: unavailable.unwrap_or_default(),
                disk_free_bytes: disk_free,
            }),
            Outgoing::Log {
                lease_id,
                seq,
                stream,
                data,
            } => Out::Log(pb::ShardLog {
                lease_id,
                seq,
                stream: convert::log_stream(stream) as i32,
                data,
            }),
            Outgoing::Result { lease_id, report } => {
                Out::Result(convert::shard_result(lease_id, &report))
            }
            Outgoing::Drain { grace } => Out::Drain(pb::Drain {
                grace_ms: grace.as_millis() as u64,
            }),
            Outgoing::HandBack { lease_id, reason } => {
                Out::HandBack(pb::HandBack { lease_id, reason })
            }
        };
        pb::RunnerMessage { msg: Some(msg) }
    }
}

/// What the coordinator told the runner.
#[derive(Debug)]
pub enum Incoming {
    /// Registration accepted: heartbeat this often.
    Registered {
        runner_id: String,
        heartbeat: Duration,
    },
    /// A lease to run.
    Lease(Box<Lease>),
    /// A lease the runner cannot read: it is failed with why, never run
    /// on a guess.
    Unreadable { lease_id: String, error: WireError },
    /// Stop this lease.
    Cancel { lease_id: String, reason: String },
    /// A message with nothing in it.
    Empty,
}

impl From<pb::CoordinatorMessage> for Incoming {
    fn from(m: pb::CoordinatorMessage) -> Incoming {
        use pb::coordinator_message::Msg;
        match m.msg {
            Some(Msg::Registered(r)) => Incoming::Registered {
                runner_id: r.runner_id,
                // A coordinator asking for 0 would make the runner spin.
                heartbeat: Duration::from_millis(r.heartbeat_interval_ms.max(10)),
            },
            Some(Msg::Lease(l)) => {
                let lease_id = l.lease_id.clone();
                match convert::lease_from_wire(l) {
                    Ok(lease) => Incoming::Lease(Box::new(lease)),
                    Err(error) => Incoming::Unreadable { lease_id, error },
                }
            }
            Some(Msg::Cancel(c)) => Incoming::Cancel {
                lease_id: c.lease_id,
                reason: c.reason,
            },
            None => Incoming::Empty,
        }
    }
}

/// One session's stream from the coordinator.
pub struct Session {
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
}

impl Session {
    /// Opens the session stream: everything sent on `out` goes to the
    /// coordinator, in order.
    pub async fn open(
        channel: buildfleet_trust::AuthChannel,
        out: tokio::sync::mpsc::Receiver<Outgoing>,
    ) -> Result<Session, tonic::Status> {
        use futures::StreamExt as _;
        let mut client = pb::runner_service_client::RunnerServiceClient::new(channel)
            .max_decoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES);
        let outbound =
            tokio_stream::wrappers::ReceiverStream::new(out).map(pb::RunnerMessage::from);
        let inbound = client.session(outbound).await?.into_inner();
        Ok(Session { inbound })
    }

    /// The next message; `None` once the coordinator closed the stream.
    pub async fn next(&mut self) -> Result<Option<Incoming>, tonic::Status> {
        Ok(self.inbound.message().await?.map(Incoming::from))
    }
}
