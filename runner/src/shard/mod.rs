//! Running one lease: the step-result cache first, then a fresh working
//! directory, inputs materialised, dependency caches restored, the command
//! under its supervisor in its own process group (and cgroup), outputs and
//! caches saved, and a result whose every field was checked.
//!
//! Phases, each in its own module: `prepare` (the step-result cache),
//! `workspace` (inputs, dependency caches, environment), the command
//! (here), `judge` (what the exit means), `finish` (outputs, verify,
//! saves).

mod cached;
mod error;
mod finish;
mod framed;
mod handover;
mod judge;
mod keep;
pub(crate) mod log;
mod mask;
mod place;
mod prepare;
mod workspace;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use buildfleet_cache::{CasClient, LocalCas};
use buildfleet_model::{
    CacheOutcome, CacheReport, Lease, LeaseKind, MutedCheck, ShardReport, State,
};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::caching::action::{ActionKey, ActionSpec};
use crate::cgroup::{Isolation, ShardCgroup};
use crate::exec::{self, ExecReport, ExecSpec, LogStream, OutputChunk};
use crate::oom::OomWatch;
use crate::wire::Outgoing;
pub use error::ShardError;
use log::LogSender;
pub use mask::Masker;
pub use place::PlaceError;
use prepare::Prepared;

#[derive(Clone)]
pub struct ShardContext {
    pub work_root: PathBuf,
    pub cas: CasClient,
    pub kill_grace: std::time::Duration,
    pub out: mpsc::Sender<Outgoing>,
    pub local: Option<LocalCas>,
    /// The binary holding the shard supervisor.
    pub supervisor: PathBuf,
    pub isolation: Arc<Isolation>,
    /// Who each shard's processes run as.
    pub step_users: Arc<crate::step_users::StepUserPool>,
    pub metrics: Arc<crate::metrics::RunnerMetrics>,
}

/// Runs a lease to its end: its processes are gone and its last log chunk
/// was sent when this returns the report, which the caller sends (or, for
/// a lease it handed back, does not).
pub async fn run_lease(
    ctx: &ShardContext,
    lease: Lease,
    cancel: watch::Receiver<Option<String>>,
) -> ShardReport {
    // Action results and dependency caches are read and written in the
    // run's trust scope, recording the run and project they are for.
    let scoped = ShardContext {
        cas: ctx
            .cas
            .scoped_for(&lease.cache_scope, &lease.run_id, &lease.project),
        ..ctx.clone()
    };
    let ctx = &scoped;
    let started = Instant::now();
    let masker = Masker::new(lease.secrets.values());
    let mut log = LogSender::new(lease.lease_id.clone(), ctx.out.clone());
    log.mask_with(masker.clone());
    if let Some(cap) = lease.log_cap {
        log.cap_at(cap as usize);
    }
    let spool = ctx.work_root.join(format!("{}.log", lease.lease_id));
    if let Err(e) = log.spool_to(spool.clone()) {
        log.system(format!(
            "the full log cannot be kept ({}: {e}); only the streamed log exists",
            spool.display()
        ))
        .await;
    }
    if lease.attempt > 1 {
        log.system(format!(
            "attempt {} of this shard ({} item(s))",
            lease.attempt,
            lease.items.len()
        ))
        .await;
    }
    let mut found = Collected::default();
    // Boxed: the whole shard's state machine is large.
    let work = Box::pin(async {
        let state = match execute_lease(ctx, &lease, cancel, &mut log, &mut found).await {
            Ok(s) => s,
            Err(e) => {
                let reason = e.to_string();
                log.system(reason.clone()).await;
                State::failed(reason)
            }
        };
        let locator = format!(
            "buildfleet logs {} {} --shard {}",
            lease.run_id, lease.step, lease.shard_index
        );
        let finished = buildfleet_trace::phase("store log", log.finish(&ctx.cas, &locator)).await;
        (state, finished)
    });
    // The attempt's span, named by the coordinator: each phase is a child.
    let (state, finished) = match buildfleet_trace::parse_traceparent(&lease.traceparent) {
        Some(attempt) => buildfleet_trace::in_context(attempt, work).await,
        None => work.await,
    };
    info!(state = state.name(), "shard finished");
    // Reasons, cache details, test names and messages quote what the step
    // printed or wrote (a verify command's words, a key file's path, its
    // reports): masked like its log.
    // Only an end that counts as green hands outputs on: exit 0 (or a
    // reused result), or an exit the quarantine may mute whose contract held.
    let state_green = state.is_green() || matches!(found.muted, Some(MutedCheck::Met));
    ShardReport {
        state: masker.state(state),
        duration_ms: started.elapsed().as_millis() as u64,
        last_log_seq: log.seq,
        cache: found
            .reports
            .into_iter()
            .map(|r| CacheReport {
                detail: masker.text(r.detail),
                ..r
            })
            .collect(),
        tests: found
            .tests
            .into_iter()
            .map(|t| buildfleet_model::TestResult {
                id: masker.text(t.id),
                message: masker.text(t.message),
                ..t
            })
            .collect(),
        items: found.items,
        full_log: finished.full_log,
        log_dropped: finished.dropped,
        muted: found.muted.map(|checked| match checked {
            MutedCheck::Met => MutedCheck::Met,
            MutedCheck::Unmet(why) => MutedCheck::Unmet(masker.text(why)),
        }),
        outputs: if state_green {
            found.outputs
        } else {
            Vec::new()
        },
    }
}

/// What a lease found besides its state: cache activity, test outcomes,
/// (for a listing lease) the items its command printed, and (for an exit
/// the quarantine may mute) whether the rest of the contract held.
#[derive(Default)]
struct Collected {
    reports: Vec<CacheReport>,
    tests: Vec<buildfleet_model::TestResult>,
    items: Vec<String>,
    muted: Option<MutedCheck>,
    /// The declared outputs, as the cache holds them.
    outputs: Vec<buildfleet_model::Artifact>,
}

async fn note(log: &mut LogSender, reports: &mut Vec<CacheReport>, report: CacheReport) {
    log.system(report.log_line()).await;
    if report.outcome == CacheOutcome::SaveFailed {
        warn!(cache = %report.cache, detail = %report.detail, "cache save failed");
    }
    reports.push(report);
}

async fn execute_lease(
    ctx: &ShardContext,
    lease: &Lease,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
    found: &mut Collected,
) -> Result<State, ShardError> {
    let prepared = buildfleet_trace::phase(
        "step cache lookup",
        prepare::step_cache(ctx, lease, log, &mut found.reports),
    )
    .await;
    let (result, action) = match prepared {
        // A hit needs no working directory at all, unless it must be checked
        // or receives artifacts... which only its checks would read.
        // A reused result's outputs are this run's artifacts: kept as long.
        Prepared::Cached(result) if lease.verify.is_empty() => {
            found.outputs = crate::outputs::artifacts_of(&result);
            keep::pin(ctx, lease, &found.outputs, log).await;
            return Ok(State::Cached);
        }
        Prepared::Cached(result) => {
            found.outputs = crate::outputs::artifacts_of(&result);
            keep::pin(ctx, lease, &found.outputs, log).await;
            (Some(result), None)
        }
        Prepared::Run(action) => (None, action),
    };
    // Held until the shard's processes are gone and its files removed.
    let step_user = ctx.step_users.acquire().map_err(ShardError::StepUser)?;
    let user = step_user.as_ref().map(|s| &s.identity);
    let dir = ctx.work_root.join(&lease.lease_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|source| ShardError::WorkDir {
            path: dir.clone(),
            source,
        })?;
    let (cgroup, notes) = ctx.isolation.shard(&lease.lease_id, &lease.resources);
    for n in notes {
        log.system(n).await;
    }
    let run = Run {
        ctx,
        lease,
        dir: &dir,
        cgroup: &cgroup,
        user,
    };
    let outcome = match result {
        Some(result) => run.verify_hit(&result, cancel, log, found).await,
        None => run.step(action.as_deref(), cancel, log, found).await,
    };
    let cleared = cgroup.clear().await;
    if cleared.remaining > 0 {
        log.system(format!(
            "{} process(es) were still in the shard's cgroup after it ended, and {} of them are still there after SIGKILL",
            cleared.left, cleared.remaining
        ))
        .await;
    } else if cleared.left > 0 {
        log.system(format!(
            "{} process(es) were still in the shard's cgroup after it ended: killed",
            cleared.left
        ))
        .await;
    }
    cgroup.remove();
    if let Err(e) = remove_work_dir(ctx, &dir, user.is_some()).await {
        warn!(dir = %dir.display(), error = %e, "work directory not removed");
        log.system(format!(
            "could not remove work directory {}: {e}",
            dir.display()
        ))
        .await;
    }
    drop(step_user);
    outcome
}

/// Removes a lease's working directory (and its step user's home): through
/// the local cache, which records the ctime each of its links leaves as it
/// is unlinked, so the next shard links those entries without hashing them.
async fn remove_work_dir(ctx: &ShardContext, dir: &Path, with_home: bool) -> std::io::Result<()> {
    if with_home {
        let home = handover::home_of(dir);
        if let Err(e) = tokio::fs::remove_dir_all(&home).await {
            warn!(home = %home.display(), error = %e, "step user's home not removed");
        }
    }
    let Some(local) = ctx.local.clone() else {
        return tokio::fs::remove_dir_all(dir).await;
    };
    let dir = dir.to_owned();
    let released = tokio::task::spawn_blocking(move || local.remove_work_dir(&dir))
        .await
        .map_err(std::io::Error::other)??;
    tracing::debug!(?released, "work directory removed");
    Ok(())
}

/// One lease's fixed surroundings while it runs.
struct Run<'a> {
    ctx: &'a ShardContext,
    lease: &'a Lease,
    dir: &'a Path,
    cgroup: &'a ShardCgroup,
    /// The step user its processes run as; `None`: the runner's own.
    user: Option<&'a crate::step_users::Identity>,
}

impl Run<'_> {
    /// How every process of this lease is run: the step, its checks.
    fn exec_spec(&self, command: &str, env: &[(String, String)]) -> ExecSpec {
        ExecSpec {
            command: command.to_owned(),
            cwd: self.dir.to_path_buf(),
            env: env.to_vec(),
            timeout: self.lease.timeout,
            kill_grace: self.ctx.kill_grace,
            supervisor: Some(self.ctx.supervisor.clone()),
            cgroups: self.cgroup.dirs(),
            user: self.user.cloned(),
        }
    }

    /// The step's services, started and ready, their ports in the
    /// environment; or the state the step ends in because one is not.
    async fn start_services(
        &self,
        ws: &mut workspace::Workspace,
        log: &mut LogSender,
    ) -> Result<crate::services::Services, State> {
        let services = &self.lease.services;
        if services.is_empty() {
            return Ok(crate::services::Services::default());
        }
        let ports = crate::services::ports(services).map_err(|e| State::failed(e.to_string()))?;
        ws.env.extend(ports);
        let base = self.exec_spec("", &ws.env);
        let (started, ready) = crate::services::start(services, &base, log).await;
        let Err(not_ready) = ready else {
            return Ok(started);
        };
        // The reason ends with what the service last printed; its whole
        // tail follows in the log as it stops.
        let name = not_ready.name().to_owned();
        let tail = started.tail_of(&name);
        started.stop(log).await;
        let last: Vec<&str> = tail
            .iter()
            .rev()
            .take(3)
            .rev()
            .map(String::as_str)
            .collect();
        let mut reason = not_ready.to_string();
        if !last.is_empty() {
            reason.push_str(&format!("; its output ends: {}", last.join(" | ")));
        }
        Err(State::failed(reason))
    }

    async fn verify_hit(
        &self,
        result: &buildfleet_cache::StepResult,
        cancel: watch::Receiver<Option<String>>,
        log: &mut LogSender,
        found: &mut Collected,
    ) -> Result<State, ShardError> {
        let ws = workspace::prepare(
            self.ctx,
            self.lease,
            self.dir,
            self.user,
            log,
            &mut found.reports,
        )
        .await?;
        let base = self.exec_spec("", &ws.env);
        let ended = finish::verify_hit(self.ctx, self.lease, result, &base, cancel, log).await;
        ws.tidy().await;
        Ok(ended)
    }

    /// The command: prepare, execute, judge the exit, finish.
    async fn step(
        &self,
        action: Option<&(ActionSpec, ActionKey)>,
        cancel: watch::Receiver<Option<String>>,
        log: &mut LogSender,
        found: &mut Collected,
    ) -> Result<State, ShardError> {
        let lease = self.lease;
        let mut ws = workspace::prepare(
            self.ctx,
            lease,
            self.dir,
            self.user,
            log,
            &mut found.reports,
        )
        .await?;
        let services = match self.start_services(&mut ws, log).await {
            Ok(s) => s,
            Err(failed) => {
                ws.tidy().await;
                return Ok(failed);
            }
        };
        let base = self.exec_spec(&lease.command, &ws.env);
        let started_at = std::time::SystemTime::now();
        let oom = OomWatch::start(self.cgroup.memory_events());
        let (report, printed) = buildfleet_trace::phase(
            "execute",
            run_command(base.clone(), cancel.clone(), log, lease.kind),
        )
        .await;
        log.flush_held().await;
        services.stop(log).await;
        // What is stored for a replay is the command's output: not the
        // checks that follow, which run again after every hit.
        log.stop_capture();
        ws.tidy().await;
        let report = report.map_err(ShardError::Start)?;
        if let Some(printed) = printed {
            return Ok(listing_result(&report, &printed, &oom, found, log).await);
        }
        if !lease.reports.is_empty() {
            let (tests, problems) =
                crate::reports::read(self.dir, &lease.reports, started_at).await;
            for p in problems {
                log.system(p).await;
            }
            log.system(format!(
                "reports: {} tests, {} failed or errored",
                tests.len(),
                judge::failures(&tests)
            ))
            .await;
            found.tests = tests;
        }
        let ended = judge::exit_state(&report.outcome, &oom);
        if ended == State::Succeeded {
            let (reports, outputs) = (&mut found.reports, &mut found.outputs);
            return Ok(finish::success(
                self.ctx, lease, &base, &ws, action, cancel, log, reports, outputs,
            )
            .await);
        }
        let explanation = match &ended {
            State::Failed(f) => f.reason.clone(),
            State::Cancelled { reason } => reason.clone(),
            _ => String::new(),
        };
        if !explanation.is_empty() {
            log.system(explanation.clone()).await;
        }
        // An exit already explained otherwise (an OOM kill) is not the
        // tests' doing, whatever they report: never mutable.
        let explained = !explanation.is_empty();
        if let Some(code) = judge::mutable_exit(&report.outcome, &found.tests, &lease.quarantine)
            .filter(|_| !explained)
        {
            log.system(format!(
                "exit code {code}, and every failed test is in the quarantine file: the exit may be muted, so the step's outputs and verify are checked as for exit 0 (nothing is saved)"
            ))
            .await;
            let checked = finish::contract(self.ctx, lease, &base, cancel, log).await;
            if let Err(why) = &checked {
                log.system(format!("the muted exit does not stand: {why}"))
                    .await;
            }
            found.muted = Some(match checked {
                Ok(uploaded) => {
                    found.outputs = uploaded.iter().map(|u| u.artifact()).collect();
                    keep::pin(self.ctx, lease, &found.outputs, log).await;
                    MutedCheck::Met
                }
                Err(why) => MutedCheck::Unmet(why.to_string()),
            });
        }
        Ok(ended)
    }
}

/// Runs one command, forwarding its output; a listing's stdout is kept as
/// its item list instead of being logged.
async fn run_command(
    spec: ExecSpec,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
    kind: LeaseKind,
) -> (Result<ExecReport, exec::ExecError>, Option<Vec<u8>>) {
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let exec = exec::execute(spec, tx, cancel);
    tokio::pin!(exec);
    let mut printed = (kind == LeaseKind::Listing).then(Vec::<u8>::new);
    let report = loop {
        tokio::select! {
            biased;
            Some(chunk) = rx.recv() => forward(log, chunk, printed.as_mut()).await,
            r = &mut exec => break r,
        }
    };
    // The process is done; deliver what it printed last, in order.
    while let Some(chunk) = rx.recv().await {
        forward(log, chunk, printed.as_mut()).await;
    }
    (report, printed)
}

/// A listing lease's end: its items when the command succeeded, else the
/// state that says why there are none.
async fn listing_result(
    report: &ExecReport,
    printed: &[u8],
    oom: &OomWatch,
    found: &mut Collected,
    log: &mut LogSender,
) -> State {
    match judge::listing(&report.outcome, printed, oom) {
        Ok(items) => {
            log.system(format!("listed {} item(s)", items.len())).await;
            found.items = items;
            State::Succeeded
        }
        Err(judge::ListingEnd::Refused(why)) => {
            log.system(why.clone()).await;
            State::failed(why)
        }
        Err(judge::ListingEnd::State(ended)) => {
            // What it printed may explain the failure; show it.
            if !printed.is_empty() {
                log.send(LogStream::Stdout, printed.to_vec()).await;
            }
            ended
        }
    }
}

pub(crate) async fn forward(
    log: &mut LogSender,
    chunk: OutputChunk,
    listing: Option<&mut Vec<u8>>,
) {
    if let (Some(buf), LogStream::Stdout) = (listing, chunk.stream) {
        // Keep one byte past the cap so "too long" can be told apart.
        let room = (judge::MAX_LISTING_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
        return;
    }
    log.send(chunk.stream, chunk.data.to_vec()).await;
}
