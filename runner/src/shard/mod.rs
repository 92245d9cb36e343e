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
mod finish;
mod framed;
mod judge;
pub(crate) mod log;
mod mask;
mod prepare;
mod workspace;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildfleet_cache::{CasClient, Digest, LocalCas};
use buildfleet_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::caching::action::{ActionKey, ActionSpec};
use crate::caching::{Outcome, Report};
use crate::cgroup::{Isolation, Resources, ShardCgroup};
use crate::exec::{self, ExecReport, ExecSpec, OutputChunk, Stream};
use crate::oom::OomWatch;
use judge::state;
use log::LogSender;
pub use mask::Masker;
use prepare::Prepared;

pub struct ShardContext {
    pub work_root: PathBuf,
    pub cas: CasClient,
    pub kill_grace: Duration,
    pub out: mpsc::Sender<pb::RunnerMessage>,
    pub local: Option<LocalCas>,
    /// The binary holding the shard supervisor.
    pub supervisor: PathBuf,
    pub isolation: Arc<Isolation>,
}

/// Runs a lease to its end: its processes are gone and its last log chunk
/// was sent when this returns the result, which the caller reports (or,
/// for a lease it handed back, does not).
pub async fn run_lease(
    ctx: &ShardContext,
    lease: pb::Lease,
    cancel: watch::Receiver<Option<String>>,
) -> pb::ShardResult {
    let started = Instant::now();
    let masker = Masker::new(lease.secrets.values());
    let mut log = LogSender::new(lease.lease_id.clone(), ctx.out.clone());
    log.mask_with(masker.clone());
    if lease.log_cap_bytes > 0 {
        log.cap_at(lease.log_cap_bytes as usize);
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
    let outcome = execute_lease(ctx, &lease, cancel, &mut log, &mut found).await;
    let mut result_state = match outcome {
        Ok(s) => s,
        Err(reason) => {
            log.system(reason.clone()).await;
            state(pb::StateKind::Failed, reason)
        }
    };
    // Reasons and cache details quote what the step printed or wrote (a
    // verify command's words, a key file's path): masked like its log.
    result_state.reason = masker.text(result_state.reason);
    let locator = format!(
        "buildfleet logs {} {} --shard {}",
        lease.run_id, lease.step, lease.shard_index
    );
    let finished = log.finish(&ctx.cas, &locator).await;
    info!(state = ?pb::StateKind::try_from(result_state.kind), "shard finished");
    // Test names and messages carry whatever the step printed into its
    // reports, secrets included: masked like every log line.
    let tests = found
        .tests
        .into_iter()
        .map(|t| pb::TestCaseResult {
            id: masker.text(t.id),
            message: masker.text(t.message),
            ..t
        })
        .collect();
    pb::ShardResult {
        lease_id: lease.lease_id.clone(),
        state: Some(result_state),
        duration_ms: started.elapsed().as_millis() as u64,
        last_log_seq: log.seq,
        cache: found
            .reports
            .iter()
            .map(|r| pb::CacheReport {
                detail: masker.text(r.detail.clone()),
                ..report_to_pb(r)
            })
            .collect(),
        tests,
        items: found.items,
        full_log: finished.full_log.map(Into::into),
        log_dropped_bytes: finished.dropped,
        muted: found.muted.map(|checked| match checked {
            Muted::Met => pb::MutedCheck {
                met: true,
                failure: String::new(),
            },
            Muted::Unmet(why) => pb::MutedCheck {
                met: false,
                failure: masker.text(why),
            },
        }),
    }
}

/// What the runner found of the step's other promises for an exit the
/// quarantine may mute.
enum Muted {
    Met,
    /// What still failed.
    Unmet(String),
}

/// What a lease found besides its state: cache activity, test outcomes,
/// (for a listing lease) the items its command printed, and (for an exit
/// the quarantine may mute) whether the rest of the contract held.
#[derive(Default)]
struct Collected {
    reports: Vec<Report>,
    tests: Vec<pb::TestCaseResult>,
    items: Vec<String>,
    muted: Option<Muted>,
}

fn report_to_pb(r: &Report) -> pb::CacheReport {
    let outcome = match r.outcome {
        Outcome::Hit => pb::CacheOutcome::Hit,
        Outcome::Fallback => pb::CacheOutcome::Fallback,
        Outcome::Miss => pb::CacheOutcome::Miss,
        Outcome::SaveFailed => pb::CacheOutcome::SaveFailed,
        Outcome::Saved => pb::CacheOutcome::Saved,
        Outcome::Disabled => pb::CacheOutcome::Disabled,
    };
    pb::CacheReport {
        cache: r.cache.clone(),
        outcome: outcome as i32,
        key: r.key.clone(),
        detail: r.detail.clone(),
    }
}

async fn note(log: &mut LogSender, reports: &mut Vec<Report>, report: Report) {
    log.system(report.log_line()).await;
    if matches!(report.outcome, Outcome::SaveFailed) {
        warn!(cache = %report.cache, detail = %report.detail, "cache save failed");
    }
    reports.push(report);
}

fn resources(lease: &pb::Lease) -> Resources {
    Resources {
        memory_bytes: (lease.memory_bytes > 0).then_some(lease.memory_bytes),
        cpu_millis: (lease.cpu_millis > 0).then_some(lease.cpu_millis),
    }
}

async fn execute_lease(
    ctx: &ShardContext,
    lease: &pb::Lease,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
    found: &mut Collected,
) -> Result<pb::State, String> {
    let root = lease.input_root.as_ref().ok_or("lease has no input root")?;
    let root = Digest::try_from(root).map_err(|e| format!("bad input root: {e}"))?;
    let prepared = prepare::step_cache(ctx, lease, root, log, &mut found.reports).await;
    let (result, action) = match prepared {
        // A hit needs no working directory at all, unless it must be checked.
        Prepared::Cached(_) if lease.verify.is_empty() => {
            return Ok(state(pb::StateKind::Cached, String::new()))
        }
        Prepared::Cached(result) => (Some(result), None),
        Prepared::Run(action) => (None, action),
    };
    let dir = ctx.work_root.join(&lease.lease_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create work directory {}: {e}", dir.display()))?;
    let (cgroup, notes) = ctx.isolation.shard(&lease.lease_id, &resources(lease));
    for n in notes {
        log.system(n).await;
    }
    let run = Run {
        ctx,
        lease,
        root,
        dir: &dir,
        cgroup: &cgroup,
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
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        warn!(dir = %dir.display(), error = %e, "work directory not removed");
        log.system(format!(
            "could not remove work directory {}: {e}",
            dir.display()
        ))
        .await;
    }
    outcome
}

/// One lease's fixed surroundings while it runs.
struct Run<'a> {
    ctx: &'a ShardContext,
    lease: &'a pb::Lease,
    root: Digest,
    dir: &'a Path,
    cgroup: &'a ShardCgroup,
}

impl Run<'_> {
    /// How every process of this lease is run: the step, its checks.
    fn exec_spec(&self, command: &str, env: &[(String, String)]) -> ExecSpec {
        ExecSpec {
            command: command.to_owned(),
            cwd: self.dir.to_path_buf(),
            env: env.to_vec(),
            timeout: (self.lease.timeout_ms > 0)
                .then(|| Duration::from_millis(self.lease.timeout_ms)),
            kill_grace: self.ctx.kill_grace,
            supervisor: Some(self.ctx.supervisor.clone()),
            cgroups: self.cgroup.dirs(),
        }
    }

    async fn verify_hit(
        &self,
        result: &buildfleet_cache::StepResult,
        cancel: watch::Receiver<Option<String>>,
        log: &mut LogSender,
        found: &mut Collected,
    ) -> Result<pb::State, String> {
        let ws = workspace::prepare(
            self.ctx,
            self.lease,
            self.root,
            self.dir,
            log,
            &mut found.reports,
        )
        .await?;
        let base = self.exec_spec("", &ws.env);
        let ended = finish::verify_hit(self.ctx, self.lease, result, &base, cancel, log).await;
        ws.tidy().await;
        Ok(ended)
    }

    async fn step(
        &self,
        action: Option<&(ActionSpec, ActionKey)>,
        cancel: watch::Receiver<Option<String>>,
        log: &mut LogSender,
        found: &mut Collected,
    ) -> Result<pb::State, String> {
        let lease = self.lease;
        let ws = workspace::prepare(
            self.ctx,
            lease,
            self.root,
            self.dir,
            log,
            &mut found.reports,
        )
        .await?;
        let base = self.exec_spec(&lease.command, &ws.env);
        let started_at = std::time::SystemTime::now();
        let oom = OomWatch::start(self.cgroup.memory_events());
        let (report, printed) =
            run_command(base.clone(), cancel.clone(), log, lease.list_items).await;
        // What is stored for a replay is the command's output: not the
        // checks that follow, which run again after every hit.
        log.stop_capture();
        ws.tidy().await;
        let report = report.map_err(|e| format!("could not start the command: {e}"))?;
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
        if ended.kind == pb::StateKind::Succeeded as i32 {
            let reports = &mut found.reports;
            return Ok(
                finish::success(self.ctx, lease, &base, &ws, action, cancel, log, reports).await,
            );
        }
        if !ended.reason.is_empty() {
            log.system(ended.reason.clone()).await;
        }
        // An exit already explained otherwise (an OOM kill) is not the
        // tests' doing, whatever they report: never mutable.
        let explained = !ended.reason.is_empty();
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
                Ok(_) => Muted::Met,
                Err(why) => Muted::Unmet(why),
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
    listing: bool,
) -> (Result<ExecReport, exec::ExecError>, Option<Vec<u8>>) {
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let exec = exec::execute(spec, tx, cancel);
    tokio::pin!(exec);
    let mut printed = listing.then(Vec::<u8>::new);
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
) -> pb::State {
    match judge::listing(&report.outcome, printed, oom) {
        Ok(items) => {
            log.system(format!("listed {} item(s)", items.len())).await;
            found.items = items;
            state(pb::StateKind::Succeeded, String::new())
        }
        Err(judge::ListingEnd::Refused(why)) => {
            log.system(why.clone()).await;
            state(pb::StateKind::Failed, why)
        }
        Err(judge::ListingEnd::State(ended)) => {
            // What it printed may explain the failure; show it.
            if !printed.is_empty() {
                log.send(pb::LogStream::Stdout, printed.to_vec()).await;
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
    if let (Some(buf), Stream::Stdout) = (listing, chunk.stream) {
        // Keep one byte past the cap so "too long" can be told apart.
        let room = (judge::MAX_LISTING_BYTES + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk.data[..chunk.data.len().min(room)]);
        return;
    }
    let stream = match chunk.stream {
        Stream::Stdout => pb::LogStream::Stdout,
        Stream::Stderr => pb::LogStream::Stderr,
        Stream::System => pb::LogStream::System,
    };
    log.send(stream, chunk.data.to_vec()).await;
}
