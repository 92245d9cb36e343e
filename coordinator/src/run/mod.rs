//! One submitted pipeline run: its steps, their shards, and its event log.
//!
//! The run owns state transitions so every change is recorded as an event in
//! the same place it happens — no state can move without watchers seeing it.

mod approval;
mod artifacts;
mod clock;
mod projection;
mod shard;
mod status;
mod step;
mod transitions;
pub mod verdict;

use buildfleet_model::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use crate::events::{EventKind, EventLog, StateChange};
use crate::pipeline::{Pipeline, Split};
use buildfleet_model::state::State;

pub use crate::split::{Planned, SplitInfo};
pub use approval::{Approval, ApprovalError, Decision};
pub use artifacts::ArtifactConflict;
pub use projection::{Projection, ShardView};
pub use shard::ShardRun;
pub use step::StepRun;

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
    /// How long the run's artifacts are pinned in the cache (zero: not).
    #[serde(default)]
    pub artifact_retention: Duration,
    /// A flaky test fails its shard.
    pub fail_on_flaky: bool,
    /// Which commit, ref and event the run is for.
    pub context: buildfleet_model::RunContext,
    /// `--var NAME=VALUE` given at submission, applied to the pipeline's
    /// `env` (again after a restart, when the pipeline is parsed anew).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Set for `buildfleet rerun`: the run is one step of an earlier run.
    #[serde(default)]
    pub rerun: Option<Rerun>,
    /// The token name that submitted the run (`None` on a fleet without
    /// tokens): a client may watch, cancel and decide only its own runs.
    #[serde(default)]
    pub owner: Option<String>,
    /// The cache trust scope of the run's ref, decided at submission.
    #[serde(default)]
    pub cache_scope: buildfleet_model::CacheScope,
}

/// A re-run of one step of an earlier run, with that run's inputs,
/// context and the artifacts its dependencies made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rerun {
    pub of_run: String,
    pub step: String,
    /// What the step received in the earlier run.
    pub artifacts: Vec<buildfleet_model::StepArtifact>,
    /// Who asked.
    pub by: String,
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

/// Whose doing a lease's loss is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// The runner went away (crashed, cut off, silent): its shards use
    /// their infra retries, and a `runner-lost` notification goes out.
    RunnerLost,
    /// Nobody's fault: the coordinator is shutting down, or the runner
    /// handed the lease back on purpose. Leased again at no cost.
    NoFault,
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
pub struct Run {
    id: String,
    /// Rebuilt from `options.pipeline_yaml` when a run is restored.
    #[serde(skip)]
    pipeline: Pipeline,
    pipeline_path: String,
    input_root: Digest,
    options: RunOptions,
    #[serde(with = "clock")]
    created: Instant,
    created_wall: SystemTime,
    state: State,
    duration_ms: u64,
    steps: Vec<StepRun>,
    by_name: HashMap<String, usize>,
    cancel_reason: Option<String>,
    /// Stored event by event, beside the run.
    #[serde(skip)]
    events: EventLog,
    /// The last state change or log line, for stall detection.
    #[serde(with = "clock")]
    last_progress: Instant,
    stall_notified: bool,
    /// Whether `run-failed`/`run-recovered` was handed out for its end.
    end_notified: bool,
    /// Steps that began waiting for approval, not yet announced.
    #[serde(skip)]
    approvals_asked: Vec<String>,
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
                approval: None,
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
            approvals_asked: Vec::new(),
        };
        run.emit_run_state();
        let context = run.options.context.clone();
        run.events.push(EventKind::Context(context));
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
}

/// Read access: a run changes only through its transitions
/// (`transitions.rs`), each of which appends its event.
impl Run {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
    pub fn pipeline_path(&self) -> &str {
        &self.pipeline_path
    }
    pub fn input_root(&self) -> Digest {
        self.input_root
    }
    /// Who submitted the run, when the fleet checks tokens.
    pub fn owner(&self) -> Option<&str> {
        self.options.owner.as_deref()
    }

    pub fn options(&self) -> &RunOptions {
        &self.options
    }
    pub fn created(&self) -> Instant {
        self.created
    }
    pub fn created_wall(&self) -> SystemTime {
        self.created_wall
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn duration_ms(&self) -> u64 {
        self.duration_ms
    }
    pub fn steps(&self) -> &[StepRun] {
        &self.steps
    }
    /// A step's index by name.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }
    pub fn cancel_reason(&self) -> Option<&str> {
        self.cancel_reason.as_deref()
    }
    pub fn events(&self) -> &EventLog {
        &self.events
    }
    pub fn last_progress(&self) -> Instant {
        self.last_progress
    }
    pub fn stall_notified(&self) -> bool {
        self.stall_notified
    }
    pub fn end_notified(&self) -> bool {
        self.end_notified
    }
    pub fn is_finished(&self) -> bool {
        self.state.is_terminal()
    }

    /// The step's condition asks it to run even in a cancelled run.
    pub fn runs_when_cancelled(&self, step: usize) -> bool {
        self.pipeline
            .step(&self.steps[step].name)
            .and_then(|s| s.condition.as_ref())
            .is_some_and(|c| c.runs_when_cancelled())
    }

    /// Waiting time allowed before a step with no matching runner fails.
    pub fn waited(&self, step: usize, now: Instant) -> Duration {
        self.steps[step]
            .ready_at
            .map_or(Duration::ZERO, |t| now.duration_since(t))
    }
}
