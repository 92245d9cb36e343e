//! A run as one snapshot: what `Get` returns and what the summary, the
//! merged JUnit report and the dashboard show.

use crate::cache::CacheReport;
use crate::context::RunContext;
use crate::digest::Digest;
use crate::event::Notice;
use crate::state::State;
use crate::test_result::TestResult;

/// A run, its steps and their shards.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStatus {
    /// The run's id.
    pub run_id: String,
    /// The run's state.
    pub state: State,
    /// Every step, in declaration order.
    pub steps: Vec<StepStatus>,
    /// When it was submitted, in Unix milliseconds.
    pub created_unix_ms: u64,
    /// How long it took (so far).
    pub duration_ms: u64,
    /// The pipeline file it runs.
    pub pipeline_path: String,
    /// Every notice of the run, in order.
    pub notices: Vec<Notice>,
    /// Which commit, ref and event the run is for.
    pub context: RunContext,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStatus {
    /// The step's name.
    pub name: String,
    /// Its stage.
    pub stage: String,
    /// Its state.
    pub state: State,
    /// Its shards (none yet for a split step being listed).
    pub shards: Vec<ShardStatus>,
    /// How a split step's items were divided.
    pub split: Option<SplitStatus>,
}

/// One shard of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardStatus {
    /// Its index in the step.
    pub index: u32,
    /// Its state.
    pub state: State,
    /// The runner it is (or was last) on.
    pub runner: Option<String>,
    /// Time spent over all attempts.
    pub duration_ms: u64,
    /// Attempts made (1 = first).
    pub attempt: u32,
    /// What its caches did.
    pub cache: Vec<CacheReport>,
    /// Per-test outcomes, merged over attempts.
    pub tests: Vec<TestResult>,
    /// How many `split:` items it runs (this attempt's).
    pub items: u32,
    /// Its predicted duration from history (0 = none).
    pub predicted_ms: u64,
    /// The last attempt's whole log in the cache.
    pub full_log: Option<Digest>,
    /// Bytes the log cap left out of the streamed log.
    pub log_dropped_bytes: u64,
    /// The non-zero exit the quarantine muted.
    pub muted_exit_code: Option<i32>,
    /// The declared outputs of its last attempt, in the cache.
    pub outputs: Vec<crate::Artifact>,
}

impl ShardStatus {
    /// Shard `index` in `state`, first attempt, with nothing else known
    /// yet: the start every reader's own fields are set on.
    pub fn new(index: u32, state: State) -> ShardStatus {
        ShardStatus {
            index,
            state,
            runner: None,
            duration_ms: 0,
            attempt: 1,
            cache: Vec::new(),
            tests: Vec::new(),
            items: 0,
            predicted_ms: 0,
            full_log: None,
            log_dropped_bytes: 0,
            muted_exit_code: None,
            outputs: Vec::new(),
        }
    }
}

/// How a split step's items were divided.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitStatus {
    /// `files` or `list`.
    pub source: String,
    /// How many items.
    pub items: u32,
    /// Items with no duration history, predicted at `estimate_ms`.
    pub without_history: u32,
    /// The estimate for an item without history.
    pub estimate_ms: u64,
    /// Predicted wall time of the step's shards (the busiest one's).
    pub predicted_ms: u64,
    /// Why this many shards.
    pub shard_choice: String,
    /// Items given more than once; each runs once.
    pub duplicates: Vec<String>,
}
