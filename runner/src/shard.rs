//! Running one lease: fresh working directory, inputs materialised from the
//! cache, the command in its own process group, logs streamed with sequence
//! numbers, and a result whose every field was checked.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use buildfleet_cache::{CasClient, Digest};
use buildfleet_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::exec::{self, ExecOutcome, ExecSpec, OutputChunk, Stream};

/// Sends log chunks for one lease, numbering them from 1 so the coordinator
/// can tell repeats and gaps apart.
struct LogSender {
    lease_id: String,
    seq: u64,
    out: mpsc::Sender<pb::RunnerMessage>,
}

impl LogSender {
    async fn send(&mut self, stream: pb::LogStream, data: Vec<u8>) {
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

    async fn system(&mut self, text: String) {
        self.send(
            pb::LogStream::System,
            format!("buildfleet: {text}\n").into_bytes(),
        )
        .await;
    }
}

pub struct ShardContext {
    pub work_root: PathBuf,
    pub cas: CasClient,
    pub kill_grace: Duration,
    pub out: mpsc::Sender<pb::RunnerMessage>,
}

fn state(kind: pb::StateKind, reason: String) -> pb::State {
    pb::State {
        kind: kind as i32,
        reason,
        ..pb::State::default()
    }
}

/// Runs a lease to its end and reports the result on the coordinator stream.
pub async fn run_lease(
    ctx: &ShardContext,
    lease: pb::Lease,
    cancel: watch::Receiver<Option<String>>,
) {
    let started = Instant::now();
    let mut log = LogSender {
        lease_id: lease.lease_id.clone(),
        seq: 0,
        out: ctx.out.clone(),
    };
    let outcome = execute_lease(ctx, &lease, cancel, &mut log).await;
    let result_state = match outcome {
        Ok(s) => s,
        Err(reason) => {
            log.system(reason.clone()).await;
            state(pb::StateKind::Failed, reason)
        }
    };
    info!(state = ?pb::StateKind::try_from(result_state.kind), "shard finished");
    let msg = pb::RunnerMessage {
        msg: Some(pb::runner_message::Msg::Result(pb::ShardResult {
            lease_id: lease.lease_id.clone(),
            state: Some(result_state),
            duration_ms: started.elapsed().as_millis() as u64,
            last_log_seq: log.seq,
            cache: Vec::new(),
        })),
    };
    if ctx.out.send(msg).await.is_err() {
        warn!("result not delivered: coordinator stream closed");
    }
}

async fn execute_lease(
    ctx: &ShardContext,
    lease: &pb::Lease,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Result<pb::State, String> {
    let dir = ctx.work_root.join(&lease.lease_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create work directory {}: {e}", dir.display()))?;
    let result = run_in(ctx, lease, &dir, cancel, log).await;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        warn!(dir = %dir.display(), error = %e, "work directory not removed");
        log.system(format!(
            "could not remove work directory {}: {e}",
            dir.display()
        ))
        .await;
    }
    result
}

async fn run_in(
    ctx: &ShardContext,
    lease: &pb::Lease,
    dir: &std::path::Path,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Result<pb::State, String> {
    let root = lease.input_root.as_ref().ok_or("lease has no input root")?;
    let root = Digest::try_from(root).map_err(|e| format!("bad input root: {e}"))?;
    let stats = ctx
        .cas
        .materialise(&root, dir)
        .await
        .map_err(|e| format!("could not materialise inputs {root}: {e}"))?;
    tracing::debug!(?stats, "inputs materialised");

    let spec = ExecSpec {
        command: lease.command.clone(),
        cwd: dir.to_path_buf(),
        env: lease
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        timeout: (lease.timeout_ms > 0).then(|| Duration::from_millis(lease.timeout_ms)),
        kill_grace: ctx.kill_grace,
    };
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let exec = exec::execute(spec, tx, cancel);
    tokio::pin!(exec);
    let report = loop {
        tokio::select! {
            biased;
            Some(chunk) = rx.recv() => forward(log, chunk).await,
            r = &mut exec => break r,
        }
    };
    // The process is done; deliver what it printed last, in order.
    while let Some(chunk) = rx.recv().await {
        forward(log, chunk).await;
    }
    let report = report.map_err(|e| format!("could not start the command: {e}"))?;
    Ok(match report.outcome {
        ExecOutcome::Exited { code: 0 } => {
            match crate::outputs::collect(&ctx.cas, dir, &lease.outputs).await {
                Ok(uploaded) => {
                    for u in uploaded {
                        log.system(format!(
                            "output {} ({}) stored as {}",
                            u.path, u.kind, u.digest
                        ))
                        .await;
                    }
                    state(pb::StateKind::Succeeded, String::new())
                }
                Err(e) => {
                    log.system(e.to_string()).await;
                    pb::State {
                        exit_code: Some(0),
                        ..state(pb::StateKind::Failed, e.to_string())
                    }
                }
            }
        }
        ExecOutcome::Exited { code } => pb::State {
            exit_code: Some(code),
            ..state(pb::StateKind::Failed, String::new())
        },
        ExecOutcome::Signalled { signal } => pb::State {
            signal: Some(signal),
            ..state(pb::StateKind::Failed, String::new())
        },
        ExecOutcome::TimedOut { after } => pb::State {
            timeout_ms: Some(after.as_millis() as u64),
            ..state(pb::StateKind::TimedOut, String::new())
        },
        ExecOutcome::Cancelled { reason } => state(pb::StateKind::Cancelled, reason),
    })
}

async fn forward(log: &mut LogSender, chunk: OutputChunk) {
    let stream = match chunk.stream {
        Stream::Stdout => pb::LogStream::Stdout,
        Stream::Stderr => pb::LogStream::Stderr,
        Stream::System => pb::LogStream::System,
    };
    log.send(stream, chunk.data.to_vec()).await;
}
