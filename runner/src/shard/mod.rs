//! Running one lease: the step-result cache first, then a fresh working
//! directory, inputs materialised, dependency caches restored, the command
//! in its own process group, outputs and caches saved, and a result whose
//! every field was checked.

mod cached;
pub(crate) mod log;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use buildfleet_cache::{CasClient, Digest, LocalCas};
use buildfleet_proto::v1 as pb;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::caching::action::{self, ActionKey, ActionSpec, STEP_CACHE};
use crate::caching::dependency::{self, CacheSpec, Keyed};
use crate::caching::{platform, Outcome, Report};
use crate::exec::{self, ExecOutcome, ExecSpec, OutputChunk, Stream};
use log::LogSender;

pub struct ShardContext {
    pub work_root: PathBuf,
    pub cas: CasClient,
    pub kill_grace: Duration,
    pub out: mpsc::Sender<pb::RunnerMessage>,
    pub local: Option<LocalCas>,
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
    let mut log = LogSender::new(lease.lease_id.clone(), ctx.out.clone());
    log.mask_secrets(lease.secrets.values());
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
    let result_state = match outcome {
        Ok(s) => s,
        Err(reason) => {
            log.system(reason.clone()).await;
            state(pb::StateKind::Failed, reason)
        }
    };
    let locator = format!(
        "buildfleet logs {} {} --shard {}",
        lease.run_id, lease.step, lease.shard_index
    );
    let finished = log.finish(&ctx.cas, &locator).await;
    info!(state = ?pb::StateKind::try_from(result_state.kind), "shard finished");
    let msg = pb::RunnerMessage {
        msg: Some(pb::runner_message::Msg::Result(pb::ShardResult {
            lease_id: lease.lease_id.clone(),
            state: Some(result_state),
            duration_ms: started.elapsed().as_millis() as u64,
            last_log_seq: log.seq,
            cache: found.reports.iter().map(report_to_pb).collect(),
            tests: found.tests,
            items: found.items,
            full_log: finished.full_log.map(Into::into),
            log_dropped_bytes: finished.dropped,
        })),
    };
    if ctx.out.send(msg).await.is_err() {
        warn!("result not delivered: coordinator stream closed");
    }
}

/// What a lease found besides its state: cache activity, test outcomes,
/// and (for a listing lease) the items its command printed.
#[derive(Default)]
struct Collected {
    reports: Vec<Report>,
    tests: Vec<pb::TestCaseResult>,
    items: Vec<String>,
}

/// A list command printing more than this is almost certainly not a list.
const MAX_LISTING_BYTES: usize = 16 << 20;

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

/// The step-result cache, before anything is materialised: a hit needs no
/// working directory at all.
enum Prepared {
    Cached(pb::State),
    /// Run the step; store its result under this action if it succeeds.
    Run(Option<Box<(ActionSpec, ActionKey)>>),
}

async fn check_action_cache(
    ctx: &ShardContext,
    lease: &pb::Lease,
    root: Digest,
    log: &mut LogSender,
    reports: &mut Vec<Report>,
) -> Prepared {
    let step_report = |outcome, key: String, detail: String| Report {
        cache: STEP_CACHE.to_owned(),
        outcome,
        key,
        detail,
    };
    if !lease.use_action_cache {
        let r = step_report(
            Outcome::Disabled,
            String::new(),
            "`--no-cache` or `cache: false`: the step always runs".into(),
        );
        note(log, reports, r).await;
        return Prepared::Run(None);
    }
    let spec = ActionSpec {
        project: lease.project.clone(),
        step: lease.step.clone(),
        command: lease.command.clone(),
        env: lease
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        input_root: root,
        input_globs: lease.inputs.clone(),
        shard_index: lease.shard_index,
        shard_count: lease.shard_count,
        outputs: lease.outputs.clone(),
        platform: platform(),
        verify: lease.verify.clone(),
        secret_names: lease
            .secrets
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let key = match action::compute(&ctx.cas, &spec).await {
        Ok(key) => key,
        Err(e) => {
            let r = step_report(
                Outcome::Miss,
                String::new(),
                format!("no action digest, so no reuse and no save: {e}"),
            );
            note(log, reports, r).await;
            return Prepared::Run(None);
        }
    };
    let action_id = key.digest.to_string();
    match action::lookup(&ctx.cas, &key).await {
        Ok(Some(result)) => match cached::replay(&ctx.cas, &key, &result, log).await {
            Ok(()) => {
                note(
                    log,
                    reports,
                    step_report(Outcome::Hit, action_id, String::new()),
                )
                .await;
                return Prepared::Cached(state(pb::StateKind::Cached, String::new()));
            }
            Err(e) => {
                let r = step_report(
                    Outcome::Miss,
                    action_id,
                    format!("the stored result could not be replayed ({e}); running the step"),
                );
                note(log, reports, r).await;
            }
        },
        Ok(None) => {
            let why = match action::previous(&ctx.cas, &spec).await {
                Ok(Some(old)) => {
                    crate::caching::explain::action_miss(&ctx.cas, &old, &key.record).await
                }
                Ok(None) => format!(
                    "no earlier result for step `{}` shard {}/{} on {}",
                    spec.step, spec.shard_index, spec.shard_count, spec.platform
                ),
                Err(e) => format!("no explanation: {e}"),
            };
            note(log, reports, step_report(Outcome::Miss, action_id, why)).await;
        }
        Err(e) => {
            note(log, reports, step_report(Outcome::Miss, action_id, e)).await;
        }
    }
    Prepared::Run(Some(Box::new((spec, key))))
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
    let action = match check_action_cache(ctx, lease, root, log, &mut found.reports).await {
        Prepared::Cached(s) => return Ok(s),
        Prepared::Run(action) => action,
    };
    let dir = ctx.work_root.join(&lease.lease_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("cannot create work directory {}: {e}", dir.display()))?;
    let result = run_in(ctx, lease, root, &dir, cancel, log, found, action).await;
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

fn cache_specs(lease: &pb::Lease) -> Vec<CacheSpec> {
    lease
        .caches
        .iter()
        .map(|c| CacheSpec {
            name: c.name.clone(),
            key_files: c.key_files.clone(),
            paths: c.paths.clone(),
            version: c.version.clone(),
            restore: c.restore.clone(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn run_in(
    ctx: &ShardContext,
    lease: &pb::Lease,
    root: Digest,
    dir: &Path,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
    found: &mut Collected,
    action: Option<Box<(ActionSpec, ActionKey)>>,
) -> Result<pb::State, String> {
    let reports = &mut found.reports;
    let stats = ctx
        .cas
        .materialise_with(&root, dir, ctx.local.as_ref())
        .await
        .map_err(|e| format!("could not materialise inputs {root}: {e}"))?;
    tracing::debug!(?stats, "inputs materialised");
    if stats.copied_files > 0 {
        log.system(format!(
            "{} input file(s) copied instead of hard-linked from the runner's cache (another filesystem?)",
            stats.copied_files
        ))
        .await;
    }

    let mut env: Vec<(String, String)> = lease
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Secrets only reach the process, never the action record.
    env.extend(lease.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut to_save: Vec<Keyed> = Vec::new();
    for spec in cache_specs(lease) {
        let keyed = dependency::key(&spec, dir, &platform())?;
        let (report, restored) =
            dependency::restore(&ctx.cas, ctx.local.as_ref(), &keyed, dir).await;
        note(log, reports, report).await;
        env.push((
            dependency::env_name(&spec.name),
            restored.env_value().to_owned(),
        ));
        // A listing only reads; saving is the step's job once it succeeds.
        if restored != dependency::Restored::Exact && !lease.list_items {
            to_save.push(keyed);
        }
    }

    // Split items, one per line, beside (not inside) the working directory
    // so they are neither an input nor an output of the step.
    let items_file = ctx.work_root.join(format!("{}.items", lease.lease_id));
    if !lease.items.is_empty() {
        let mut text = lease.items.join("\n");
        text.push('\n');
        tokio::fs::write(&items_file, text).await.map_err(|e| {
            format!(
                "cannot write the shard's item list {}: {e}",
                items_file.display()
            )
        })?;
        env.push((
            "BUILDFLEET_SHARD_ITEMS_FILE".to_owned(),
            items_file.display().to_string(),
        ));
        log.system(format!(
            "split: {} item(s) in this shard",
            lease.items.len()
        ))
        .await;
    }
    let verify_cancel = cancel.clone();
    let spec = ExecSpec {
        command: lease.command.clone(),
        cwd: dir.to_path_buf(),
        env: env.clone(),
        timeout: (lease.timeout_ms > 0).then(|| Duration::from_millis(lease.timeout_ms)),
        kill_grace: ctx.kill_grace,
    };
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let started_at = std::time::SystemTime::now();
    let oom = crate::oom::OomWatch::start();
    let exec = exec::execute(spec, tx, cancel);
    tokio::pin!(exec);
    // A listing's stdout is its item list, kept rather than logged.
    let mut listing = lease.list_items.then(Vec::<u8>::new);
    let report = loop {
        tokio::select! {
            biased;
            Some(chunk) = rx.recv() => forward(log, chunk, listing.as_mut()).await,
            r = &mut exec => break r,
        }
    };
    // The process is done; deliver what it printed last, in order.
    while let Some(chunk) = rx.recv().await {
        forward(log, chunk, listing.as_mut()).await;
    }
    if !lease.items.is_empty() {
        if let Err(e) = tokio::fs::remove_file(&items_file).await {
            warn!(file = %items_file.display(), error = %e, "item list not removed");
        }
    }
    let report = report.map_err(|e| format!("could not start the command: {e}"))?;
    if let Some(printed) = listing {
        return listing_result(report.outcome, &printed, found, log).await;
    }
    let tests = &mut found.tests;
    if !lease.reports.is_empty() {
        let (found, problems) = crate::reports::read(dir, &lease.reports, started_at).await;
        for p in problems {
            log.system(p).await;
        }
        let failed = found
            .iter()
            .filter(|t| {
                t.outcome == pb::TestOutcome::Failed as i32
                    || t.outcome == pb::TestOutcome::Error as i32
            })
            .count();
        log.system(format!(
            "reports: {} tests, {failed} failed or errored",
            found.len()
        ))
        .await;
        *tests = found;
    }
    Ok(match report.outcome {
        ExecOutcome::Exited { code: 0 } => {
            match crate::outputs::collect(&ctx.cas, dir, &lease.outputs).await {
                Ok(uploaded) => {
                    for u in &uploaded {
                        log.system(format!(
                            "output {} ({}) stored as {} (confirmed by the cache)",
                            u.path,
                            u.kind.name(),
                            u.digest
                        ))
                        .await;
                    }
                    let checks = crate::verify::Checks {
                        commands: &lease.verify,
                        dir,
                        env: &env,
                        timeout: (lease.timeout_ms > 0)
                            .then(|| Duration::from_millis(lease.timeout_ms)),
                        kill_grace: ctx.kill_grace,
                    };
                    if let Err(reason) = crate::verify::run(checks, verify_cancel, log).await {
                        return Ok(pb::State {
                            exit_code: Some(0),
                            ..state(pb::StateKind::Failed, reason)
                        });
                    }
                    for keyed in &to_save {
                        let r = dependency::save(&ctx.cas, ctx.local.as_ref(), keyed, dir).await;
                        note(log, reports, r).await;
                    }
                    if let Some((spec, key)) = action.as_deref() {
                        let r = cached::store(&ctx.cas, spec, key, &uploaded, log).await;
                        note(log, reports, r).await;
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
        ExecOutcome::Exited { code } => {
            let why = crate::oom::explain_exit(code, &oom).unwrap_or_default();
            if !why.is_empty() {
                log.system(why.clone()).await;
            }
            pb::State {
                exit_code: Some(code),
                ..state(pb::StateKind::Failed, why)
            }
        }
        ExecOutcome::Signalled { signal } => {
            let why = crate::oom::explain_signal(signal, &oom);
            if !why.is_empty() {
                log.system(why.clone()).await;
            }
            pb::State {
                signal: Some(signal),
                ..state(pb::StateKind::Failed, why)
            }
        }
        ExecOutcome::TimedOut { after } => pb::State {
            timeout_ms: Some(after.as_millis() as u64),
            ..state(pb::StateKind::TimedOut, String::new())
        },
        ExecOutcome::Cancelled { reason } => state(pb::StateKind::Cancelled, reason),
    })
}

/// A listing lease's end: its items when the command succeeded, else the
/// state that says why there are none.
async fn listing_result(
    outcome: ExecOutcome,
    printed: &[u8],
    found: &mut Collected,
    log: &mut LogSender,
) -> Result<pb::State, String> {
    match outcome {
        ExecOutcome::Exited { code: 0 } => {
            if printed.len() > MAX_LISTING_BYTES {
                return Err(format!(
                    "the list command printed more than {} MiB; that is not an item list",
                    MAX_LISTING_BYTES >> 20
                ));
            }
            let text = std::str::from_utf8(printed)
                .map_err(|e| format!("the list command printed bytes that are not UTF-8: {e}"))?;
            found.items = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            log.system(format!("listed {} item(s)", found.items.len()))
                .await;
            Ok(state(pb::StateKind::Succeeded, String::new()))
        }
        ExecOutcome::Exited { code } => {
            // What it printed may explain the failure; show it.
            if !printed.is_empty() {
                log.send(pb::LogStream::Stdout, printed.to_vec()).await;
            }
            Ok(pb::State {
                exit_code: Some(code),
                ..state(pb::StateKind::Failed, String::new())
            })
        }
        ExecOutcome::Signalled { signal } => Ok(pb::State {
            signal: Some(signal),
            ..state(pb::StateKind::Failed, String::new())
        }),
        ExecOutcome::TimedOut { after } => Ok(pb::State {
            timeout_ms: Some(after.as_millis() as u64),
            ..state(pb::StateKind::TimedOut, String::new())
        }),
        ExecOutcome::Cancelled { reason } => Ok(state(pb::StateKind::Cancelled, reason)),
    }
}

pub(crate) async fn forward(
    log: &mut LogSender,
    chunk: OutputChunk,
    listing: Option<&mut Vec<u8>>,
) {
    if let (Some(buf), Stream::Stdout) = (listing, chunk.stream) {
        // Keep one byte past the cap so "too long" can be told apart.
        let room = (MAX_LISTING_BYTES + 1).saturating_sub(buf.len());
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
