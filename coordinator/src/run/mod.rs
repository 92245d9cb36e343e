//! One submitted pipeline run: its steps, their shards, and its event log.
//!
//! The run owns state transitions so every change is recorded as an event in
//! the same place it happens — no state can move without watchers seeing it.

mod clock;
mod split_step;
pub mod verdict;

use buildfleet_model::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use crate::events::{EventKind, EventLog, LogEntry, LogStream, StateChange};
use crate::pipeline::{Pipeline, Split};
use buildfleet_model::cache::CacheReport;
use buildfleet_model::state::{combine, State};

pub use split_step::{plan_split, Planned, SplitInfo};

/// Per-run choices made at submission.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RunOptions {
    /// Run every step even if an identical earlier result exists.
    pub no_cache: bool,
    /// Names the project in step history, so misses are explained against
    /// the same project's earlier runs.
    pub project: String,
    /// Items of `split: { files }` steps, by step name.
    pub split_items: BTreeMap<String, Vec<String>>,
    /// Test ids from the quarantine file.
    pub quarantine: BTreeSet<String>,
    /// The pipeline file as submitted, so a restored run can be rebuilt.
    pub pipeline_yaml: String,
    pub idempotency_key: Option<String>,
    /// Secret values resolved at submission, by name. Never stored: after
    /// a restart they are read again from the secret store.
    #[serde(skip)]
    pub secrets: BTreeMap<String, String>,
    /// Steps that cannot start because a secret they need is expired or
    /// missing, with the reason: the run fails before any step starts.
    pub secret_problems: BTreeMap<String, String>,
    /// Warnings found at submission (secrets about to expire).
    pub warnings: Vec<String>,
    /// When each secret the run uses stops working: a step needing one
    /// that expired while the run was under way fails before it starts.
    pub secret_expiry: BTreeMap<String, Expiry>,
    /// The coordinator's default log cap (bytes; 0 = none).
    pub log_cap: u64,
    /// A flaky test fails its shard.
    pub fail_on_flaky: bool,
}

/// The moment a secret expires, and the same moment as people read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Expiry {
    #[serde(with = "clock")]
    pub at: Instant,
    /// RFC 3339, for the reason a step fails with.
    pub wall: String,
}

impl Expiry {
    /// The expiry of a secret at wall-clock `at`, against this process's clock.
    pub fn of(at: SystemTime, now: Instant) -> Expiry {
        let left = at.duration_since(SystemTime::now()).unwrap_or_default();
        Expiry {
            at: now + left,
            wall: humantime::format_rfc3339_seconds(at).to_string(),
        }
    }
}

/// Where a split step is in getting its items.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Listing {
    /// Not a split step, or its shards exist.
    Done,
    /// `split: { files }`: planned by the scheduler right after submission.
    Files,
    /// `split: { list }`: a runner must run the list command first.
    Needed,
    /// The list command is running under this lease.
    Leased(String),
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ShardRun {
    pub index: u32,
    pub state: State,
    pub runner: Option<String>,
    pub lease: Option<String>,
    pub attempt: u32,
    #[serde(with = "clock::option")]
    pub started: Option<Instant>,
    pub duration_ms: u64,
    pub cache: Vec<CacheReport>,
    pub tests: Vec<buildfleet_model::test_result::TestResult>,
    /// This shard's share of a split step's items (recorded once, when
    /// the step is planned, so any re-run stays within exactly these).
    pub items: Vec<String>,
    /// The items the current attempt runs: all of `items` at first, the
    /// failed ones on a flaky re-run.
    pub attempt_items: Vec<String>,
    /// Predicted from history (zero without).
    pub predicted: Duration,
    /// The last attempt's whole log in the cache, and what its cap dropped.
    pub full_log: Option<Digest>,
    pub log_dropped: u64,
    /// Flaky re-runs used (`retries: { flaky }`).
    pub flaky_reruns: u32,
    /// Re-leases after a lost runner (`retries: { infra }`).
    pub infra_retries: u32,
    /// The non-zero exit code the quarantine muted (the shard is green
    /// only because every failed test is quarantined).
    pub muted_exit: Option<i32>,
}

impl ShardRun {
    fn new(index: u32, items: Vec<String>, predicted: Duration, state: State) -> ShardRun {
        ShardRun {
            index,
            state,
            runner: None,
            lease: None,
            attempt: 0,
            started: None,
            duration_ms: 0,
            cache: Vec::new(),
            tests: Vec::new(),
            attempt_items: items.clone(),
            items,
            predicted,
            flaky_reruns: 0,
            infra_retries: 0,
            full_log: None,
            log_dropped: 0,
            muted_exit: None,
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StepRun {
    pub name: String,
    pub stage: String,
    pub state: State,
    pub shards: Vec<ShardRun>,
    /// Indexes of the steps this one waits for.
    pub deps: Vec<usize>,
    pub labels: Vec<String>,
    /// When the step became ready; bounds how long it may wait for a runner
    /// with matching labels.
    #[serde(with = "clock::option")]
    pub ready_at: Option<Instant>,
    #[serde(with = "clock::option")]
    pub started: Option<Instant>,
    pub duration_ms: u64,
    pub listing: Listing,
    /// How a split step's items were divided, once they were.
    pub split: Option<SplitInfo>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Run {
    pub id: String,
    /// Rebuilt from `options.pipeline_yaml` when a run is restored.
    #[serde(skip)]
    pub pipeline: Pipeline,
    pub pipeline_path: String,
    pub input_root: Digest,
    pub options: RunOptions,
    #[serde(with = "clock")]
    pub created: Instant,
    pub created_wall: SystemTime,
    pub state: State,
    pub duration_ms: u64,
    pub steps: Vec<StepRun>,
    pub by_name: HashMap<String, usize>,
    pub cancel_reason: Option<String>,
    /// Stored event by event, beside the run.
    #[serde(skip)]
    pub events: EventLog,
    /// The last state change or log line, for stall detection.
    #[serde(with = "clock")]
    pub last_progress: Instant,
    pub stall_notified: bool,
    /// Whether `run-failed`/`run-recovered` was handed out for its end.
    pub end_notified: bool,
}

impl Run {
    pub fn new(
        id: String,
        pipeline: Pipeline,
        pipeline_path: String,
        input_root: Digest,
        options: RunOptions,
        now: Instant,
    ) -> Run {
        let deps_by_name: BTreeMap<String, Vec<String>> = pipeline.dependencies();
        let by_name: HashMap<String, usize> = pipeline
            .steps()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let steps = pipeline
            .steps()
            .map(|s| StepRun {
                name: s.name.clone(),
                stage: s.stage.clone(),
                state: State::Pending,
                // A split step's shards are made once its items are known.
                shards: match s.split {
                    Some(_) => Vec::new(),
                    None => (0..s.shards.max())
                        .map(|i| ShardRun::new(i, Vec::new(), Duration::ZERO, State::Pending))
                        .collect(),
                },
                // Validation guarantees every dependency names a step; dropping
                // one silently would start a step before its dependency.
                deps: deps_by_name
                    .get(&s.name)
                    .map(|d| d.iter().map(|n| by_name[n.as_str()]).collect())
                    .unwrap_or_default(),
                labels: s.labels.clone(),
                ready_at: None,
                started: None,
                duration_ms: 0,
                listing: match &s.split {
                    None => Listing::Done,
                    Some(Split::Files(_)) => Listing::Files,
                    Some(Split::List(_)) => Listing::Needed,
                },
                split: None,
            })
            .collect();
        let mut run = Run {
            id,
            pipeline,
            pipeline_path,
            input_root,
            options,
            created: now,
            created_wall: SystemTime::now(),
            state: State::Pending,
            duration_ms: 0,
            steps,
            by_name,
            cancel_reason: None,
            events: EventLog::default(),
            last_progress: now,
            stall_notified: false,
            end_notified: false,
        };
        run.emit_run_state();
        run
    }

    fn emit_run_state(&mut self) {
        let change = StateChange {
            step: None,
            shard: None,
            state: self.state.clone(),
            runner: None,
            duration_ms: self.duration_ms,
            cache: Vec::new(),
        };
        self.events.push(EventKind::State(change));
    }

    fn emit_step_state(&mut self, step: usize) {
        let s = &self.steps[step];
        let change = StateChange {
            step: Some(s.name.clone()),
            shard: None,
            state: s.state.clone(),
            runner: None,
            duration_ms: s.duration_ms,
            cache: Vec::new(),
        };
        self.events.push(EventKind::State(change));
    }

    pub fn set_shard_state(&mut self, step: usize, shard: usize, state: State, now: Instant) {
        self.last_progress = now;
        let s = &mut self.steps[step].shards[shard];
        if s.state == state {
            return;
        }
        if state == State::Running {
            s.started = Some(now);
        }
        s.state = state;
        self.emit_shard_state(step, shard);
        self.refresh_step(step, now);
    }

    fn emit_shard_state(&mut self, step: usize, shard: usize) {
        let step_name = self.steps[step].name.clone();
        let s = &self.steps[step].shards[shard];
        let change = StateChange {
            step: Some(step_name),
            shard: Some(s.index),
            state: s.state.clone(),
            runner: s.runner.clone(),
            duration_ms: s.duration_ms,
            cache: s.cache.clone(),
        };
        self.events.push(EventKind::State(change));
    }

    /// A step-level state change that no shard drives (a listing lease
    /// starting), recorded as an event like every other.
    pub fn set_step_state(&mut self, step: usize, state: State, now: Instant) {
        self.last_progress = now;
        let st = &mut self.steps[step];
        if st.state == state {
            return;
        }
        if state == State::Running && st.started.is_none() {
            st.started = Some(now);
        }
        st.state = state;
        self.emit_step_state(step);
    }

    /// Whether any of a step's work has yet to start: a listing not yet
    /// leased, or a shard pending or waiting.
    pub fn has_unstarted(&self, step: usize) -> bool {
        let st = &self.steps[step];
        !st.state.is_terminal()
            && (st.listing == Listing::Needed
                || st.listing == Listing::Files
                || st
                    .shards
                    .iter()
                    .any(|sh| matches!(sh.state, State::Pending | State::Waiting)))
    }

    /// A listing lease that ended without items through no fault of the
    /// step (lost runner, coordinator restart): the step waits for another.
    pub fn list_again(&mut self, step: usize, why: &str, now: Instant) {
        self.system_log(step, 0, why);
        self.steps[step].listing = Listing::Needed;
        self.set_step_state(step, State::Waiting, now);
    }

    /// A step that may not start (a secret it needs expired or vanished):
    /// what has not run fails with `reason`; shards that already ended
    /// keep their state.
    pub fn fail_unstarted(&mut self, step: usize, reason: &str, now: Instant) {
        if !self.has_unstarted(step) {
            return;
        }
        let failed = State::failed(reason);
        self.system_log(step, 0, reason);
        // Not yet listed: no shard exists to fail on its own. (A listing
        // under way is started work: `has_unstarted` left it alone.)
        if self.steps[step].listing == Listing::Needed || self.steps[step].shards.is_empty() {
            self.steps[step].listing = Listing::Done;
            self.end_step_unrun(step, failed);
            return;
        }
        for shard in 0..self.steps[step].shards.len() {
            if matches!(
                self.steps[step].shards[shard].state,
                State::Pending | State::Waiting
            ) {
                self.set_shard_state(step, shard, failed.clone(), now);
            }
        }
    }

    /// Recomputes a step's state from its shards.
    fn refresh_step(&mut self, step: usize, now: Instant) {
        let st = &mut self.steps[step];
        if st.listing != Listing::Done {
            // No shards yet: nothing to combine (an empty set is not green).
            return;
        }
        let next = if let Some(done) = combine(st.shards.iter().map(|s| &s.state)) {
            done
        } else if st
            .shards
            .iter()
            .any(|s| s.state == State::Running || s.state.is_terminal())
        {
            State::Running
        } else {
            st.state.clone()
        };
        if next == State::Running && st.started.is_none() {
            st.started = Some(now);
        }
        if next.is_terminal() {
            st.duration_ms = st
                .started
                .map_or(0, |t| now.duration_since(t).as_millis() as u64);
        }
        if next != st.state {
            st.state = next;
            self.emit_step_state(step);
        }
    }

    /// A notice about the whole run (warnings, notification attempts).
    pub fn notice(&mut self, kind: crate::events::NoticeKind, text: String) {
        self.events.push(EventKind::Notice(crate::events::Notice {
            kind,
            text,
            at: SystemTime::now(),
        }));
    }

    pub fn notices(&self) -> impl Iterator<Item = &crate::events::Notice> {
        self.events.all().filter_map(|e| match &e.kind {
            EventKind::Notice(n) => Some(n),
            _ => None,
        })
    }

    /// Ends a run before any step starts (an expired or missing secret):
    /// the steps that needed it fail with the reason, the others are
    /// skipped because of it, and nothing is leased.
    pub fn fail_before_start(&mut self, needs: &BTreeMap<String, String>, now: Instant) {
        for step in 0..self.steps.len() {
            let state = match needs.get(&self.steps[step].name) {
                Some(reason) => State::failed(reason.clone()),
                None => State::Skipped {
                    reason: "the run failed before any step started".into(),
                },
            };
            self.steps[step].listing = Listing::Done;
            self.end_step_unrun(step, state);
        }
        self.refresh_run(now);
    }

    /// A line from buildfleet itself in a shard's log.
    pub fn system_log(&mut self, step: usize, shard: u32, text: &str) {
        self.events.push(EventKind::Log(LogEntry {
            step: self.steps[step].name.clone(),
            shard,
            stream: LogStream::System,
            data: format!("buildfleet: {text}\n").into_bytes(),
        }));
    }

    /// Makes a split step's shards from its plan; they can start at once if
    /// the step is ready.
    pub fn set_split(&mut self, step: usize, planned: Planned, now: Instant) {
        let st = &mut self.steps[step];
        let state = match st.state {
            State::Waiting | State::Running => State::Waiting,
            _ => State::Pending,
        };
        st.shards = planned
            .shards
            .into_iter()
            .zip(0..)
            .map(|((items, predicted), i)| ShardRun::new(i, items, predicted, state.clone()))
            .collect();
        st.listing = Listing::Done;
        let line = planned.info.describe(st.shards.len());
        st.split = Some(planned.info);
        self.system_log(step, 0, &line);
        // The new shards are state changes of the run like any other.
        for shard in 0..self.steps[step].shards.len() {
            self.emit_shard_state(step, shard);
        }
        self.refresh_step(step, now);
    }

    /// Sets a whole step (and all its shards) to a state, for steps that end
    /// before any shard ran: skipped, cancelled, unschedulable.
    pub fn end_step_unrun(&mut self, step: usize, state: State) {
        for shard in 0..self.steps[step].shards.len() {
            if !self.steps[step].shards[shard].state.is_terminal() {
                self.steps[step].shards[shard].state = state.clone();
                self.emit_shard_state(step, shard);
            }
        }
        self.steps[step].state = state;
        self.steps[step].duration_ms = 0;
        self.emit_step_state(step);
    }

    /// Moves pending steps to waiting (all deps green) or skipped (a dep ended
    /// non-green), until nothing changes. Returns true if anything moved.
    pub fn advance(&mut self, now: Instant) -> bool {
        let mut moved_any = false;
        loop {
            let mut moved = false;
            for i in 0..self.steps.len() {
                if self.steps[i].state != State::Pending {
                    continue;
                }
                let blocker = self.steps[i]
                    .deps
                    .iter()
                    .map(|&d| &self.steps[d])
                    .find(|d| d.state.is_terminal() && !d.state.is_green())
                    .map(|d| format!("needs `{}`, which {}", d.name, d.state.name()));
                if let Some(reason) = blocker {
                    self.end_step_unrun(i, State::Skipped { reason });
                    moved = true;
                } else if self.steps[i]
                    .deps
                    .iter()
                    .all(|&d| self.steps[d].state.is_green())
                {
                    let st = &mut self.steps[i];
                    st.state = State::Waiting;
                    st.ready_at = Some(now);
                    for sh in &mut st.shards {
                        sh.state = State::Waiting;
                    }
                    for shard in 0..self.steps[i].shards.len() {
                        self.emit_shard_state(i, shard);
                    }
                    self.emit_step_state(i);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
            moved_any = true;
        }
        self.refresh_run(now);
        moved_any
    }

    /// Ends the run once every step is terminal.
    pub fn refresh_run(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        let Some(all) = combine(self.steps.iter().map(|s| &s.state)) else {
            if self.state == State::Pending && self.steps.iter().any(|s| s.state == State::Running)
            {
                self.state = State::Running;
                self.emit_run_state();
            }
            return;
        };
        self.duration_ms = now.duration_since(self.created).as_millis() as u64;
        self.state = if let Some(reason) = &self.cancel_reason {
            State::Cancelled {
                reason: reason.clone(),
            }
        } else if all.is_green() {
            State::Succeeded
        } else {
            let bad: Vec<String> = self
                .steps
                .iter()
                .filter(|s| !s.state.is_green())
                .map(|s| format!("{} {}", s.name, s.state))
                .collect();
            State::failed(bad.join("; "))
        };
        self.emit_run_state();
        self.events.poke();
    }

    pub fn is_finished(&self) -> bool {
        self.state.is_terminal()
    }

    /// Waiting time allowed before a step with no matching runner fails.
    pub fn waited(&self, step: usize, now: Instant) -> Duration {
        self.steps[step]
            .ready_at
            .map_or(Duration::ZERO, |t| now.duration_since(t))
    }
}
