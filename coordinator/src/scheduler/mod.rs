//! The scheduling core: runs, runners and leases, with no network and no clock
//! of its own (callers pass `now`), so every rule is tested in plain Rust.

use buildfleet_model::{Digest, Lease};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::error::CoordinatorError;
use crate::events::{Event, LogStream};
use crate::history::History;
use crate::pipeline::Pipeline;
use crate::run::{Listing, Run, RunOptions};
use buildfleet_model::state::State;

mod deadlines;
mod ends;
mod gauges;
mod lease;
mod lessons;
mod listing;
mod restore;
mod runners;

pub use crate::run::Loss;
pub use buildfleet_model::ShardReport;
use lease::{expired_secret, LeaseFor};
pub use lessons::{Learned, Lesson};
use runners::pick_runner;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How long a ready step may wait for a runner whose labels match before
    /// it fails; queueing forever hides a misconfigured fleet.
    pub label_wait: Duration,
    /// A run with no state change and no log line for this long is
    /// `stalled`: said in the run and notified, once.
    pub stall_after: Duration,
    /// Finished runs kept (in memory, and in the store across restarts);
    /// the oldest beyond this are forgotten.
    pub keep_runs: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            label_wait: Duration::from_secs(60),
            stall_after: Duration::from_secs(30 * 60),
            keep_runs: 200,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunnerView {
    pub id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub slots: u32,
    pub busy: u32,
    pub connected_at: std::time::SystemTime,
    /// Why it takes no new leases for now (low disk), as its heartbeats
    /// say; `None` = it does.
    pub unavailable: Option<String>,
    /// Set once the runner said it is stopping; heartbeats do not clear it.
    pub draining: Option<String>,
    /// How it isolates shards (cgroups, limits) and what it cannot do.
    pub isolation: String,
    /// Free bytes on its work disk at the last heartbeat.
    pub disk_free: Option<u64>,
    /// When its last heartbeat arrived (or it registered).
    pub last_seen: std::time::SystemTime,
    /// The shards it runs now (filled in by [`Scheduler::runners`]).
    pub leases: Vec<RunnerLease>,
}

/// A shard a runner holds, and whose run it is.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerLease {
    /// The run's owner (`None`: submitted without tokens).
    pub owner: Option<String>,
    /// `RUN/STEP#SHARD`, or `RUN/STEP (listing)`.
    pub shard: String,
}

impl RunnerView {
    /// A runner just registered: free, available, seen now.
    pub fn new(id: &str, name: &str, labels: Vec<String>, slots: u32, isolation: String) -> Self {
        let now = std::time::SystemTime::now();
        RunnerView {
            id: id.to_owned(),
            name: name.to_owned(),
            labels,
            slots,
            busy: 0,
            connected_at: now,
            unavailable: None,
            draining: None,
            isolation,
            disk_free: None,
            last_seen: now,
            leases: Vec::new(),
        }
    }

    /// Why the runner takes no new leases, if it does not.
    pub fn availability(&self) -> Option<&str> {
        self.draining.as_deref().or(self.unavailable.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub runner_id: String,
    pub lease: Lease,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelOrder {
    pub runner_id: String,
    pub lease_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub run_id: String,
    pub deduplicated: bool,
}

#[derive(Debug)]
struct LeaseRef {
    run_id: String,
    step: usize,
    /// `None` for a listing lease.
    shard: Option<usize>,
    runner_id: String,
    /// Last log chunk sequence number accepted for this lease.
    log_seq: u64,
}

#[derive(Debug, Default)]
pub struct Scheduler {
    config: SchedulerConfig,
    runs: HashMap<String, Run>,
    /// Submission order: earlier runs get free slots first.
    order: Vec<String>,
    idempotency: HashMap<String, String>,
    runners: BTreeMap<String, RunnerView>,
    leases: HashMap<String, LeaseRef>,
    history: History,
    /// What finished shards taught history, not yet written.
    lessons: Vec<Lesson>,
    /// Notifications not yet handed to the delivery task.
    outbox: Vec<crate::notify::Notification>,
    /// Whether the last finished run of each (project, pipeline) was green,
    /// to tell a recovery.
    last_green: HashMap<(String, String), bool>,
    /// Where runs are persisted, and how far each one is stored.
    store: Option<crate::persist::RunStore>,
    saved: HashMap<String, u64>,
    /// Runs whose latest state could not be stored, with the error: no
    /// new leases for them until it can, since a restart would lose them.
    unsaved: HashMap<String, String>,
    /// The Prometheus series, and how far each run's events are counted.
    metrics: Arc<crate::metrics::CoordinatorMetrics>,
    observed: HashMap<String, u64>,
    /// The coordinator's spans of each run, from the same events.
    traces: crate::traces::RunTraces,
}

impl Scheduler {
    /// A scheduler whose history lasts as long as it does.
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler::with_history(config, History::default())
    }

    pub fn with_history(config: SchedulerConfig, history: History) -> Scheduler {
        Scheduler {
            config,
            history,
            lessons: Vec::new(),
            ..Scheduler::default()
        }
    }

    /// Runner slots that could run a step with these labels.
    fn slots_for(&self, labels: &[String]) -> u32 {
        self.runners
            .values()
            .filter(|r| labels.iter().all(|l| r.labels.contains(l)))
            .map(|r| r.slots)
            .sum()
    }

    pub fn submit(
        &mut self,
        pipeline: Pipeline,
        pipeline_path: String,
        input_root: Digest,
        options: RunOptions,
        idempotency_key: Option<String>,
        now: Instant,
    ) -> Submitted {
        if let Some(existing) = idempotency_key
            .as_ref()
            .and_then(|k| self.idempotency.get(k))
        {
            return Submitted {
                run_id: existing.clone(),
                deduplicated: true,
            };
        }
        let run_id = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut run = Run::new(
            run_id.clone(),
            pipeline,
            pipeline_path,
            input_root,
            options,
            now,
        );
        for w in run.options().warnings.clone() {
            warn!(run = %run_id, warning = %w, "run warning");
            run.notice(crate::events::NoticeKind::Warning, w.clone());
            self.outbox.push(crate::notify::Notification {
                event: crate::notify::Event::SecretExpiring,
                runs: vec![run_id.clone()],
                text: w,
                context: Some(run.options().context.clone()),
            });
        }
        if !run.options().secret_problems.is_empty() {
            let problems = run.options().secret_problems.clone();
            warn!(run = %run_id, ?problems, "run fails before any step starts");
            run.fail_before_start(&problems, now);
        }
        for step in 0..run.steps().len() {
            if run.steps()[step].listing() == &Listing::Files && !run.is_finished() {
                let items = run
                    .options()
                    .split_items
                    .get(run.steps()[step].name())
                    .cloned()
                    .unwrap_or_default();
                self.plan_step(&mut run, step, &items, now);
            }
        }
        run.advance(now);
        info!(run = %run_id, steps = run.steps().len(), "run submitted");
        self.runs.insert(run_id.clone(), run);
        self.order.push(run_id.clone());
        if let Some(k) = idempotency_key {
            self.idempotency.insert(k, run_id.clone());
        }
        Submitted {
            run_id,
            deduplicated: false,
        }
    }

    /// Records a notice (e.g. a delivery attempt) in a run's events.
    pub fn record_notice(&mut self, run_id: &str, kind: crate::events::NoticeKind, text: String) {
        if let Some(run) = self.runs.get_mut(run_id) {
            run.notice(kind, text);
        }
    }

    /// Notifications to deliver: queued ones, plus a `run-failed` or
    /// `run-recovered` for each run that ended since the last call.
    pub fn take_notifications(&mut self) -> Vec<crate::notify::Notification> {
        use crate::notify::{Event, Notification};
        let mut out = std::mem::take(&mut self.outbox);
        for id in &self.order {
            let Some(run) = self.runs.get_mut(id) else {
                continue;
            };
            for step in run.take_approvals_asked() {
                out.push(Notification {
                    event: Event::ApprovalNeeded,
                    runs: vec![run.id().to_owned()],
                    text: format!(
                        "run {} of {} ({}) for {}: step {step} is waiting for approval (`buildfleet approve {} {step}`)",
                        run.id(),
                        run.pipeline_path(),
                        run.options().project,
                        run.options().context.describe(),
                        run.id()
                    ),
                    context: Some(run.options().context.clone()),
                });
            }
            if !run.is_finished() || !run.mark_end_notified() {
                continue;
            }
            let key = (
                run.options().project.clone(),
                run.pipeline_path().to_owned(),
            );
            let green = run.state().is_green();
            let was_green = self.last_green.insert(key, green);
            let event = match (green, was_green) {
                (false, _) => Event::RunFailed,
                (true, Some(false)) => Event::RunRecovered,
                (true, _) => continue,
            };
            let text = format!(
                "run {} of {} ({}) for {}: {}",
                run.id(),
                run.pipeline_path(),
                run.options().project,
                run.options().context.describe(),
                run.state()
            );
            out.push(Notification {
                event,
                runs: vec![run.id().to_owned()],
                text,
                context: Some(run.options().context.clone()),
            });
        }
        out
    }

    /// Hands ready shards to runners with free slots and matching labels:
    /// earlier runs first, then declaration order, then shard index.
    pub fn assign(&mut self, now: Instant) -> Vec<Assignment> {
        let mut out = Vec::new();
        for run_id in &self.order {
            let Some(run) = self.runs.get_mut(run_id) else {
                continue;
            };
            if run.is_finished() || self.unsaved.contains_key(run_id) {
                continue;
            }
            for step in 0..run.steps().len() {
                if !matches!(run.steps()[step].state(), State::Waiting | State::Running) {
                    continue;
                }
                // A cancelled run starts nothing but its cleanup steps.
                if run.cancel_reason().is_some() && !run.runs_when_cancelled(step) {
                    continue;
                }
                if let Some(reason) = run
                    .has_unstarted(step)
                    .then(|| {
                        expired_secret(run, step, now)
                            .or_else(|| run.received_artifacts(step).err().map(|e| e.to_string()))
                    })
                    .flatten()
                {
                    warn!(run = %run.id(), step = %run.steps()[step].name(), %reason, "the step may not start");
                    run.fail_unstarted(step, &reason, now);
                    run.advance(now);
                    continue;
                }
                if run.steps()[step].listing() == &Listing::Needed {
                    let Some(runner) = pick_runner(&mut self.runners, run.steps()[step].labels())
                    else {
                        continue;
                    };
                    runner.busy += 1;
                    let lease_id = uuid::Uuid::new_v4().simple().to_string();
                    run.lease_listing(step, &lease_id, &runner.name, now);
                    let lease = lease::build(run, step, LeaseFor::Listing, lease_id.clone());
                    self.leases.insert(
                        lease_id,
                        LeaseRef {
                            run_id: run_id.clone(),
                            step,
                            shard: None,
                            runner_id: runner.id.clone(),
                            log_seq: 0,
                        },
                    );
                    out.push(Assignment {
                        runner_id: runner.id.clone(),
                        lease,
                    });
                    continue;
                }
                for shard in 0..run.steps()[step].shards().len() {
                    if run.steps()[step].shards()[shard].state() != &State::Waiting {
                        continue;
                    }
                    let Some(runner) = pick_runner(&mut self.runners, run.steps()[step].labels())
                    else {
                        break;
                    };
                    runner.busy += 1;
                    self.metrics.shard_leased(run.waited(step, now));
                    let lease_id = uuid::Uuid::new_v4().simple().to_string();
                    run.lease_shard(step, shard, &runner.name, &lease_id, now);
                    let lease = lease::build(run, step, LeaseFor::Shard(shard), lease_id.clone());
                    self.leases.insert(
                        lease_id,
                        LeaseRef {
                            run_id: run_id.clone(),
                            step,
                            shard: Some(shard),
                            runner_id: runner.id.clone(),
                            log_seq: 0,
                        },
                    );
                    out.push(Assignment {
                        runner_id: runner.id.clone(),
                        lease,
                    });
                }
            }
            run.refresh_run(now);
        }
        out
    }

    /// Appends a log chunk from a lease, dropping repeats and marking gaps.
    pub fn record_log(
        &mut self,
        runner_id: &str,
        lease_id: &str,
        seq: u64,
        stream: LogStream,
        data: Vec<u8>,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let lease = self
            .leases
            .get_mut(lease_id)
            .filter(|l| l.runner_id == runner_id)
            .ok_or_else(|| CoordinatorError::UnknownLease(lease_id.to_string()))?;
        if seq <= lease.log_seq {
            warn!(lease = %lease_id, seq, "duplicate log chunk dropped");
            return Ok(());
        }
        let gap = seq - lease.log_seq - 1;
        lease.log_seq = seq;
        let (step, shard) = (lease.step, lease.shard);
        let run = self
            .runs
            .get_mut(&lease.run_id)
            .ok_or_else(|| CoordinatorError::UnknownRun(lease.run_id.clone()))?;
        run.touch(now);
        let step_name = run.steps()[step].name().to_owned();
        let index = shard.map_or(0, |s| run.steps()[step].shards()[s].index());
        if gap > 0 {
            warn!(run = %run.id(), step = %step_name, shard = index, gap, "log chunks missing");
            run.system_log(
                step,
                index,
                &format!("{gap} log chunk(s) before #{seq} never arrived"),
            );
        }
        run.append_log(step, index, stream, data, now);
        Ok(())
    }

    pub fn record_result(
        &mut self,
        runner_id: &str,
        lease_id: &str,
        report: ShardReport,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let lease = self
            .leases
            .get(lease_id)
            .filter(|l| l.runner_id == runner_id)
            .ok_or_else(|| CoordinatorError::UnknownLease(lease_id.to_string()))?;
        let (run_id, step, shard, seen_seq) =
            (lease.run_id.clone(), lease.step, lease.shard, lease.log_seq);
        let mut run = self
            .runs
            .remove(&run_id)
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.clone()))?;
        if report.last_log_seq > seen_seq {
            let gap = report.last_log_seq - seen_seq;
            let index = shard.map_or(0, |s| run.steps()[step].shards()[s].index());
            run.system_log(
                step,
                index,
                &format!("the last {gap} log chunk(s) never arrived"),
            );
        }
        match shard {
            Some(shard) => self.end_attempt(&mut run, step, shard, report, now),
            // A step that has ended meanwhile (cancelled, failed before it
            // could start) must not grow shards from a late listing.
            None if run.steps()[step].listing() != &Listing::Leased(lease_id.to_owned()) => {
                run.system_log(
                    step,
                    0,
                    "the listing ended after its step no longer waited for it; its items are not used",
                );
            }
            // A cancelled run plans nothing more: the step ends cancelled.
            None if run.cancel_reason().is_some() && !run.runs_when_cancelled(step) => {
                let reason = run.cancel_reason().unwrap_or_default().to_owned();
                run.end_listing_unrun(step, State::Cancelled { reason });
            }
            None => self.end_listing(&mut run, step, report, now),
        }
        run.advance(now);
        self.runs.insert(run_id, run);
        self.leases.remove(lease_id);
        if let Some(r) = self.runners.get_mut(runner_id) {
            r.busy = r.busy.saturating_sub(1);
        }
        Ok(())
    }

    /// Cancels a run: unstarted work ends now, running shards are told to stop
    /// and end when their runner reports back.
    pub fn cancel(
        &mut self,
        run_id: &str,
        reason: &str,
        now: Instant,
    ) -> Result<(bool, Vec<CancelOrder>), CoordinatorError> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.to_string()))?;
        if run.is_finished() {
            return Ok((false, Vec::new()));
        }
        let reason = if reason.is_empty() {
            "cancelled by request"
        } else {
            reason
        };
        run.cancel(reason, now);
        let orders = self
            .leases
            .iter()
            .filter(|(_, l)| l.run_id == run_id)
            .map(|(id, l)| CancelOrder {
                runner_id: l.runner_id.clone(),
                lease_id: id.clone(),
                reason: reason.to_string(),
            })
            .collect();
        info!(run = %run_id, reason, "run cancelled");
        Ok((true, orders))
    }

    /// Approves (`approved`) or rejects a step waiting for approval, as
    /// `by`, with `reason`.
    pub fn decide_approval(
        &mut self,
        run_id: &str,
        step: &str,
        approved: bool,
        by: &str,
        reason: &str,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let run = self
            .runs
            .get_mut(run_id)
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.to_string()))?;
        run.decide_approval(step, approved, by, reason, now)?;
        info!(run = %run_id, step, approved, by, reason, "approval decided");
        Ok(())
    }

    pub fn run(&self, run_id: &str) -> Result<&Run, CoordinatorError> {
        self.runs
            .get(run_id)
            .ok_or_else(|| CoordinatorError::UnknownRun(run_id.to_string()))
    }

    /// Events after `after`, and whether the run has ended with nothing more to send.
    pub fn events_after(
        &self,
        run_id: &str,
        after: u64,
        max: usize,
    ) -> Result<(Vec<Arc<Event>>, bool), CoordinatorError> {
        let run = self.run(run_id)?;
        let events = run.events().after(after, max);
        let last = events.last().map_or(after, |e| e.seq);
        Ok((events, run.is_finished() && last >= run.events().last_seq()))
    }
}
