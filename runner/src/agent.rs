//! The runner's life: connect to the coordinator, register, heartbeat, take
//! leases, and keep one task per running shard.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use buildfleet_cache::{CasClient, LocalCas};
use buildfleet_model::{Lease, ShardReport, State};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;
use tracing::{info, info_span, warn, Instrument};

use crate::error::RunnerError;
use crate::shard::{run_lease, ShardContext};
use crate::wire::{Incoming, Outgoing, Session};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub coordinator_url: String,
    pub cache_url: String,
    pub name: String,
    pub labels: Vec<String>,
    pub slots: u32,
    /// Each lease gets a fresh directory below this one.
    pub work_root: PathBuf,
    /// Time between SIGTERM and SIGKILL when a shard is stopped.
    pub kill_grace: Duration,
    /// The runner's local blob cache: inputs and dependency caches are
    /// hard-linked from it, so a warm restore costs metadata, not bytes.
    /// `None` downloads and writes every file.
    pub local_cas: Option<LocalCas>,
    /// Below this much free disk on `work_root`, take no new leases (0 = no floor).
    pub min_free_disk: u64,
    /// On SIGTERM, how long running shards may go on before they are
    /// handed back to the coordinator.
    pub drain_grace: Duration,
    /// The binary holding the shard supervisor (`buildfleet` itself): every
    /// shard runs under it, so nothing it starts outlives the runner.
    pub supervisor: PathBuf,
    /// The cgroups shards get, when found once for several runners of one
    /// process (the embedded fleet); `None`: this runner finds its own.
    pub isolation: Option<Arc<crate::cgroup::Isolation>>,
    /// The token this runner presents to the coordinator and the cache
    /// (its identity: the coordinator names the runner after it).
    pub trust: buildfleet_trust::ClientTrust,
    /// Who shards run as (shared by the embedded fleet's runners, so a
    /// uid range is one range for the machine).
    pub step_users: Arc<crate::step_users::StepUserPool>,
    /// The runner's Prometheus series (served by the binary when asked).
    pub metrics: Arc<crate::metrics::RunnerMetrics>,
}

impl RunnerConfig {
    pub fn validate(&self) -> Result<(), RunnerError> {
        if self.slots == 0 {
            return Err(RunnerError::Config("slots must be at least 1".into()));
        }
        for (what, url) in [
            ("coordinator", &self.coordinator_url),
            ("cache", &self.cache_url),
        ] {
            Endpoint::from_shared(url.clone())
                .map_err(|e| RunnerError::Config(format!("{what} URL `{url}`: {e}")))?;
        }
        self.step_users
            .check_slots(self.slots)
            .map_err(|e| RunnerError::Config(e.to_string()))?;
        if !self.supervisor.is_file() {
            return Err(RunnerError::Config(format!(
                "the shard supervisor `{}` is not a file (it is the buildfleet binary itself)",
                self.supervisor.display()
            )));
        }
        Ok(())
    }
}

type CancelMap = Arc<Mutex<HashMap<String, watch::Sender<Option<String>>>>>;

/// Leases being given back, with why: their shard is stopped first, and the
/// hand-back goes to the coordinator only once its processes are gone, so
/// the next attempt never runs beside this one.
type HandBacks = Arc<Mutex<HashMap<String, String>>>;

/// How a session with the coordinator ended.
enum Ended {
    Shutdown,
    /// The stream ended or could not be opened: try again.
    Lost(String),
    /// The coordinator refused our token: trying again cannot help.
    Refused(String),
}

/// How often the runner pings its coordinator, and how long an unanswered
/// ping may stay unanswered before the connection counts as lost.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// First and longest wait between reconnection attempts.
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Serves the coordinator until `shutdown` resolves, reconnecting (with
/// backoff, each failure logged) whenever the connection is lost — a
/// coordinator restart must not take the fleet down with it.
pub async fn run(
    config: RunnerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunnerError> {
    config.validate()?;
    // Orphaned shard processes must be reparented to us so we can reap them
    // and prove the shard's process group is empty.
    if let Err(e) = crate::exec::become_subreaper() {
        warn!(error = %e, "not a child subreaper: leftover shard processes may go unreaped");
    }
    std::fs::create_dir_all(&config.work_root).map_err(|source| RunnerError::WorkDir {
        path: config.work_root.clone(),
        source,
    })?;
    config.step_users.admit(&config.work_root)?;
    config.step_users.say_once(config.slots);
    config.metrics.set_slots(config.slots);
    // Said once, in the log and to the coordinator (ListRunners).
    let (isolation, own_isolation) = match &config.isolation {
        Some(shared) => (shared.clone(), false),
        None => (
            Arc::new(crate::cgroup::Isolation::detect(&config.name)),
            true,
        ),
    };
    tokio::pin!(shutdown);
    let mut wait = RECONNECT_MIN;
    loop {
        match session(&config, &isolation, &mut shutdown).await {
            Ended::Shutdown => break,
            Ended::Lost(why) => {
                warn!(reason = %why, retry_in = ?wait, "coordinator connection lost; reconnecting");
            }
            Ended::Refused(why) => {
                if own_isolation {
                    isolation.remove();
                }
                return Err(RunnerError::Refused(why));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => break,
        }
        wait = (wait * 2).min(RECONNECT_MAX);
    }
    if own_isolation {
        isolation.remove();
    }
    Ok(())
}

/// One connection: register, take leases, until it ends. Running shards
/// are cancelled when it ends: their results could not be delivered, and
/// the coordinator leases them again.
async fn session(
    config: &RunnerConfig,
    isolation: &Arc<crate::cgroup::Isolation>,
    shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
) -> Ended {
    // HTTP/2 pings find a coordinator that went silent (a partition, a
    // dead host) within seconds; the session then ends and its shards are
    // stopped, well before the coordinator's heartbeat deadline (10s by
    // default) leases them to another runner.
    let channel = match config.trust.endpoint(&config.coordinator_url) {
        Ok(e) => {
            e.tcp_nodelay(true)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .connect()
                .await
        }
        Err(e) => return Ended::Lost(format!("coordinator URL: {e}")),
    };
    let channel = match channel {
        Ok(c) => config.trust.wrap(c),
        Err(e) => return Ended::Lost(format!("connecting to {}: {e}", config.coordinator_url)),
    };
    let cas = match CasClient::connect_with(&config.cache_url, &config.trust).await {
        Ok(c) => c,
        Err(e) => return Ended::Lost(format!("cache {}: {e}", config.cache_url)),
    };
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(1024);
    out_tx
        .send(Outgoing::Register {
            name: config.name.clone(),
            labels: config.labels.clone(),
            slots: config.slots,
            isolation: format!(
                "{}; {}",
                isolation.describe(),
                config.step_users.describe(config.slots)
            ),
        })
        .await
        .expect("receiver held above");
    let mut inbound = match Session::open(channel, out_rx).await {
        Ok(session) => session,
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) =>
        {
            return Ended::Refused(format!(
                "the coordinator at {} refused this runner: {}",
                config.coordinator_url,
                status.message()
            ))
        }
        Err(status) => return Ended::Lost(format!("session refused: {status}")),
    };
    let ctx = Arc::new(ShardContext {
        work_root: config.work_root.clone(),
        cas,
        kill_grace: config.kill_grace,
        out: out_tx.clone(),
        local: config.local_cas.clone(),
        supervisor: config.supervisor.clone(),
        isolation: isolation.clone(),
        step_users: config.step_users.clone(),
        metrics: config.metrics.clone(),
    });
    let cancels: CancelMap = Arc::default();
    let hand_backs: HandBacks = Arc::default();
    let mut heartbeat: Option<tokio::task::JoinHandle<()>> = None;
    // Set on SIGTERM: no new leases, running ones get until the deadline.
    let mut draining: Option<tokio::time::Instant> = None;
    let ended = loop {
        let msg = tokio::select! {
            m = inbound.next() => m,
            _ = shutdown.as_mut(), if draining.is_none() => {
                let deadline = tokio::time::Instant::now() + config.drain_grace;
                draining = Some(deadline);
                let running = cancels.lock().len();
                info!(running, grace = ?config.drain_grace, "draining: no new leases");
                let drain = Outgoing::Drain { grace: config.drain_grace };
                if out_tx.send(drain).await.is_err() {
                    warn!("drain notice not delivered: coordinator stream closed");
                }
                // Nothing running: leave now rather than at the next tick.
                if running == 0 {
                    break Ended::Shutdown;
                }
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)), if draining.is_some() => {
                if cancels.lock().is_empty() {
                    break Ended::Shutdown;
                }
                if draining.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    hand_back_all(&cancels, &hand_backs, "the runner is stopping and its drain grace ran out");
                    break Ended::Shutdown;
                }
                continue;
            }
        };
        let msg = match msg {
            Ok(Some(m)) => m,
            Ok(None) => break Ended::Lost("the coordinator closed the stream".into()),
            Err(status) => break Ended::Lost(format!("stream error: {status}")),
        };
        match msg {
            Incoming::Registered {
                runner_id,
                heartbeat: every,
            } => {
                info!(%runner_id, "registered with the coordinator");
                ctx.metrics.connected(true);
                heartbeat = Some(spawn_heartbeat(out_tx.clone(), every, config));
            }
            Incoming::Unreadable { lease_id, error } => {
                warn!(lease = %lease_id, %error, "unreadable lease failed");
                let why = format!("the runner could not read this lease: {error}");
                let report = Box::new(ShardReport::of(State::failed(why), 0));
                if out_tx
                    .send(Outgoing::Result { lease_id, report })
                    .await
                    .is_err()
                {
                    warn!("result not delivered: coordinator stream closed");
                }
            }
            Incoming::Lease(lease) => {
                let refuse = match draining {
                    Some(_) => Some("the runner is draining".to_owned()),
                    None => crate::disk::below_floor(&config.work_root, config.min_free_disk),
                };
                match refuse {
                    Some(reason) => {
                        warn!(lease = %lease.lease_id, %reason, "lease handed back");
                        ctx.metrics.handed_back();
                        send_hand_back(&out_tx, lease.lease_id, reason).await;
                    }
                    None => spawn_shard(ctx.clone(), cancels.clone(), hand_backs.clone(), lease),
                }
            }
            Incoming::Cancel { lease_id, reason } => match cancels.lock().get(&lease_id) {
                Some(tx) => {
                    tx.send_replace(Some(reason));
                }
                None => warn!(lease = %lease_id, "cancel for a lease this runner does not hold"),
            },
            Incoming::Empty => warn!("empty message from the coordinator ignored"),
        }
    };
    ctx.metrics.connected(false);
    if let Some(h) = heartbeat {
        h.abort();
    }
    for (lease, tx) in cancels.lock().drain() {
        warn!(%lease, "cancelling shard: runner is leaving the coordinator");
        tx.send_replace(Some("runner disconnected from the coordinator".into()));
    }
    if matches!(ended, Ended::Shutdown) {
        // Everything queued (results, hand-backs) must reach the coordinator
        // before the stream closes: close our side once the shards are done
        // with it, then wait for the coordinator to close its own.
        drop(ctx);
        drop(out_tx);
        let flush = config.kill_grace + Duration::from_secs(5);
        let drained = tokio::time::timeout(flush, async {
            while let Ok(Some(_)) = inbound.next().await {}
        })
        .await;
        if drained.is_err() {
            warn!(
                ?flush,
                "the coordinator did not close the stream; leaving anyway"
            );
        }
    }
    ended
}

/// Heartbeats carry the runner's availability: below its disk floor it
/// says so, and the coordinator stops leasing to it until it recovers.
fn spawn_heartbeat(
    out: mpsc::Sender<Outgoing>,
    every: Duration,
    config: &RunnerConfig,
) -> tokio::task::JoinHandle<()> {
    let (dir, floor, name) = (
        config.work_root.clone(),
        config.min_free_disk,
        config.name.clone(),
    );
    tokio::spawn(
        async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let unavailable = crate::disk::below_floor(&dir, floor);
                let disk_free = crate::disk::free_bytes(&dir);
                let beat = Outgoing::Heartbeat {
                    unavailable,
                    disk_free,
                };
                if out.send(beat).await.is_err() {
                    return;
                }
            }
        }
        .instrument(info_span!("heartbeat", runner = %name)),
    )
}

async fn send_hand_back(out: &mpsc::Sender<Outgoing>, lease_id: String, reason: String) {
    if out
        .send(Outgoing::HandBack { lease_id, reason })
        .await
        .is_err()
    {
        warn!("hand-back not delivered: coordinator stream closed");
    }
}

/// Gives every running lease back (so the coordinator leases it again at
/// once), then stops its shard.
/// Stops every running shard to give its lease back; each shard's task
/// sends the hand-back once the shard's processes are gone.
fn hand_back_all(cancels: &CancelMap, hand_backs: &HandBacks, reason: &str) {
    let held: Vec<(String, watch::Sender<Option<String>>)> = cancels.lock().drain().collect();
    for (lease, tx) in held {
        warn!(%lease, reason, "stopping the shard to hand its lease back");
        hand_backs.lock().insert(lease, reason.to_owned());
        tx.send_replace(Some(format!("handed back: {reason}")));
    }
}

fn spawn_shard(
    ctx: Arc<ShardContext>,
    cancels: CancelMap,
    hand_backs: HandBacks,
    lease: Box<Lease>,
) {
    let (tx, rx) = watch::channel(None);
    let lease_id = lease.lease_id.clone();
    cancels.lock().insert(lease_id.clone(), tx);
    let span =
        info_span!("shard", run = %lease.run_id, step = %lease.step, shard = lease.shard_index);
    ctx.metrics.started();
    tokio::spawn(
        async move {
            let report = Box::new(run_lease(&ctx, *lease, rx).await);
            cancels.lock().remove(&lease_id);
            let reason = hand_backs.lock().remove(&lease_id);
            ctx.metrics.ended(reason.is_none().then_some(&report.state));
            match reason {
                Some(reason) => send_hand_back(&ctx.out, lease_id, reason).await,
                None => {
                    let msg = Outgoing::Result { lease_id, report };
                    if ctx.out.send(msg).await.is_err() {
                        warn!("result not delivered: coordinator stream closed");
                    }
                }
            }
        }
        .instrument(span),
    );
}
