//! The runner connection: one bidirectional stream per runner. The first
//! message must be `register`; after that, heartbeats, logs and results.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use buildfleet_proto::convert as wire;
use buildfleet_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, info_span, warn, Instrument};

use crate::error::CoordinatorError;
use crate::hub::{Hub, Outbound};
use crate::scheduler::RunnerView;

pub struct RunnerService {
    pub hub: Arc<Hub>,
}

type OutStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

fn outbound_to_pb(m: Outbound) -> pb::CoordinatorMessage {
    use pb::coordinator_message::Msg;
    let msg = match m {
        Outbound::Lease(l) => Msg::Lease((*l).into()),
        Outbound::Cancel(c) => Msg::Cancel(pb::CancelLease {
            lease_id: c.lease_id,
            reason: c.reason,
        }),
    };
    pb::CoordinatorMessage { msg: Some(msg) }
}

#[tonic::async_trait]
impl pb::runner_service_server::RunnerService for RunnerService {
    type SessionStream = OutStream;

    async fn session(
        &self,
        req: Request<Streaming<pb::RunnerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let caller = buildfleet_trust::Caller::of(&req)?;
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or(CoordinatorError::ClosedBeforeRegistering)?;
        let reg = match first.msg {
            Some(pb::runner_message::Msg::Register(r)) => r,
            _ => return Err(CoordinatorError::NotRegistered("another message").into()),
        };
        if reg.slots == 0 {
            return Err(
                CoordinatorError::BadRequest("a runner needs at least one slot".into()).into(),
            );
        }
        let runner_id = uuid::Uuid::new_v4().simple().to_string();
        let name = runner_name(caller.owner(), reg.name, &runner_id);
        let view = RunnerView::new(&runner_id, &name, reg.labels, reg.slots, reg.isolation);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let registered = pb::CoordinatorMessage {
            msg: Some(pb::coordinator_message::Msg::Registered(pb::Registered {
                runner_id: runner_id.clone(),
                heartbeat_interval_ms: self.hub.config.heartbeat_interval.as_millis() as u64,
            })),
        };
        let out = futures::stream::once(async move { Ok(registered) }).chain(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|m| Ok(outbound_to_pb(m))),
        );
        let hub = self.hub.clone();
        let span = info_span!("runner_stream", runner = %name);
        tokio::spawn(
            async move {
                info!("runner connected");
                hub.connect_runner(view, tx);
                loop {
                    match inbound.message().await {
                        Ok(Some(m)) => {
                            hub.seen(&runner_id);
                            if let Err(e) = handle(&hub, &runner_id, m) {
                                warn!(error = %e, "runner message rejected");
                            }
                        }
                        Ok(None) => {
                            info!("runner closed its stream");
                            break;
                        }
                        Err(status) => {
                            warn!(%status, "runner stream failed");
                            break;
                        }
                    }
                }
                hub.disconnect_runner(&runner_id);
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(out)))
    }
}

/// A runner is known by its token, not by the name it claims: with tokens,
/// the token's name leads (`token/claimed`), so one token can never pass
/// for another's runner in the runner list, the logs or a shard's record.
fn runner_name(token: Option<&str>, claimed: String, runner_id: &str) -> String {
    match token {
        Some(token) if claimed.is_empty() || claimed == token => token.to_owned(),
        Some(token) => format!("{token}/{claimed}"),
        None if claimed.is_empty() => runner_id[..8].to_string(),
        None => claimed,
    }
}

fn handle(hub: &Hub, runner_id: &str, m: pb::RunnerMessage) -> Result<(), CoordinatorError> {
    use pb::runner_message::Msg;
    match m.msg {
        Some(Msg::Heartbeat(h)) => {
            let why = Some(h.unavailable).filter(|w| !w.is_empty());
            hub.with(|s| s.heartbeat(runner_id, why, h.disk_free_bytes));
            Ok(())
        }
        None => Ok(()),
        Some(Msg::Drain(d)) => {
            let why = format!(
                "draining: stopping within {}",
                humantime::format_duration(std::time::Duration::from_millis(d.grace_ms))
            );
            hub.with(|s| s.drain(runner_id, why));
            Ok(())
        }
        Some(Msg::HandBack(h)) => {
            hub.with(|s| s.hand_back(runner_id, &h.lease_id, &h.reason, Instant::now()))?;
            hub.dispatch();
            Ok(())
        }
        Some(Msg::Register(_)) => Err(CoordinatorError::BadRequest("registered twice".into())),
        Some(Msg::Log(l)) => hub.with(|s| {
            s.record_log(
                runner_id,
                &l.lease_id,
                l.seq,
                wire::log_stream_from_wire(l.stream),
                l.data,
                Instant::now(),
            )
        }),
        Some(Msg::Result(r)) => {
            let received = wire::shard_report_from_wire(r);
            if let Some(what) = &received.malformed {
                warn!(lease = %received.lease_id, %what, "malformed shard result");
            }
            hub.with(|s| {
                s.record_result(
                    runner_id,
                    &received.lease_id,
                    received.report,
                    Instant::now(),
                )
            })?;
            hub.dispatch();
            Ok(())
        }
    }
}
