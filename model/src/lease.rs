//! What a runner is told to do for one shard, and what it reports back.
//! The coordinator builds a [`Lease`] from a run, the runner executes it,
//! and the [`ShardReport`] it returns is judged by the coordinator: both
//! sides speak these types, and only the wire adapters see the protobuf
//! forms.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::{CacheReport, CacheSpec};
use crate::digest::Digest;
use crate::state::State;
use crate::test_result::TestResult;

/// What the lease asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseKind {
    /// Run the step's command for one shard.
    Shard,
    /// Run a `split: { list: CMD }` command and return its stdout lines as
    /// the step's items: no outputs, no caches, no saves, nothing muted.
    Listing,
}

/// `resources:` limits for a shard's cgroup (`None` = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// The memory limit in bytes.
    pub memory_bytes: Option<u64>,
    /// Thousandths of a CPU (`cpus: 1.5` is 1500).
    pub cpu_millis: Option<u32>,
}

/// One shard's instructions.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Unique per attempt: a result counts only from the current holder.
    pub lease_id: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The step's name.
    pub step: String,
    /// This shard's index (0-based) and the step's shard count.
    pub shard_index: u32,
    /// How many shards the step has.
    pub shard_count: u32,
    /// A shard of the step or a listing of its items.
    pub kind: LeaseKind,
    /// Executed as `bash -euo pipefail -c <command>`.
    pub command: String,
    /// The step's environment, `BUILDFLEET_*` variables included; never
    /// secrets.
    pub env: BTreeMap<String, String>,
    /// The submitted working tree.
    pub input_root: Digest,
    /// `None` = no time limit.
    pub timeout: Option<Duration>,
    /// Paths the step must leave behind (checked and stored after exit 0).
    pub outputs: Vec<String>,
    /// Dependency caches restored before and saved after the command.
    pub caches: Vec<CacheSpec>,
    /// Why the runner neither reuses nor stores a step result for this
    /// lease (`--no-cache`, `cache: false`, secrets, a re-run); `None` =
    /// it may.
    pub action_cache_off: Option<String>,
    /// Globs naming the inputs that count for the action digest; empty = all.
    pub inputs: Vec<String>,
    /// The project, part of history and cache keys.
    pub project: String,
    /// JUnit XML files the step writes, read after it exits.
    pub reports: Vec<String>,
    /// This shard's `split:` items (also in `BUILDFLEET_SHARD_ITEMS`).
    pub items: Vec<String>,
    /// Which attempt of the shard this is (1 = first).
    pub attempt: u32,
    /// Checks of the world run after the step (and after a cache hit).
    pub verify: Vec<Check>,
    /// Only the secrets this step declared, by name: for its environment
    /// only, never part of `env`, a digest or a stored record.
    pub secrets: BTreeMap<String, String>,
    /// Bytes of output streamed live before the head/tail cut (`None` =
    /// no cap).
    pub log_cap: Option<u64>,
    /// The quarantine file's test ids, for an exit they may mute.
    pub quarantine: Vec<String>,
    /// The shard's cgroup limits.
    pub resources: Resources,
    /// The outputs of the steps it depends on, placed at their paths in
    /// the working directory before the command runs; part of its inputs.
    pub artifacts: Vec<crate::StepArtifact>,
    /// Background processes it runs against, started in order.
    pub services: Vec<Service>,
    /// Names of `env` variables whose values were given for this run
    /// (`--var`): like the run context, part of the action digest only
    /// for a step that names them.
    pub run_vars: Vec<String>,
    /// How long the shard's outputs are pinned in the cache once stored
    /// (`None`: not pinned).
    pub artifact_retention: Option<Duration>,
    /// Where its action results and dependency caches are read and
    /// written, decided by the run's ref.
    pub cache_scope: crate::CacheScope,
    /// The W3C `traceparent` of this attempt's span (empty: untraced).
    pub traceparent: String,
}

impl Lease {
    /// True for a listing lease.
    pub fn is_listing(&self) -> bool {
        self.kind == LeaseKind::Listing
    }
}

/// One `verify:` check: a command that must pass, tried again up to
/// `retries` times `interval` apart — a health check gives a new version a
/// moment to come up, and still fails the step if it never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Run like the step (`bash -euo pipefail -c`), in its directory.
    pub command: String,
    /// Further attempts after the first fails (0 = one attempt).
    pub retries: u32,
    /// The wait before each further attempt.
    pub interval: Duration,
}

impl Check {
    /// A check tried once.
    pub fn once(command: impl Into<String>) -> Check {
        Check {
            command: command.into(),
            retries: 0,
            interval: Duration::ZERO,
        }
    }
}

/// A background process a step runs against (`services:`), e.g. a database
/// server: started in the shard's directory before the command, given a
/// port, waited for until ready, stopped after the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Its name in the pipeline; `BUILDFLEET_SERVICE_<NAME>_PORT` holds
    /// its port.
    pub name: String,
    /// Run like the step (`bash -euo pipefail -c`).
    pub command: String,
    /// Polled until it exits 0; `None` = ready once its port accepts a
    /// connection.
    pub ready: Option<String>,
    /// How long it may take to become ready.
    pub ready_timeout: Duration,
}

impl Service {
    /// The variable holding its port: `BUILDFLEET_SERVICE_DB_PORT`.
    pub fn port_var(&self) -> String {
        format!(
            "BUILDFLEET_SERVICE_{}_PORT",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// For a non-zero exit whose failed tests are all quarantined: whether the
/// rest of the step's contract (outputs present and confirmed, `verify:`
/// passing) held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutedCheck {
    /// Everything else held: the exit may be muted.
    Met,
    /// What still failed; the step fails.
    Unmet(String),
}

/// What a runner reports when a shard ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardReport {
    /// How it ended, with the evidence.
    pub state: State,
    /// Wall time on the runner.
    pub duration_ms: u64,
    /// Sequence number of the last log chunk sent, to detect lost chunks.
    pub last_log_seq: u64,
    /// What each cache did.
    pub cache: Vec<CacheReport>,
    /// Per-test outcomes from the step's reports.
    pub tests: Vec<TestResult>,
    /// What a listing lease's command printed.
    pub items: Vec<String>,
    /// The attempt's whole log in the cache.
    pub full_log: Option<Digest>,
    /// Bytes the cap left out of the streamed log.
    pub log_dropped: u64,
    /// Set when the runner checked the rest of the contract for an exit
    /// the quarantine may mute.
    pub muted: Option<MutedCheck>,
    /// The declared outputs as the cache holds them (after the upload, or
    /// from a reused result), for the steps that depend on this one.
    pub outputs: Vec<crate::Artifact>,
}

impl ShardReport {
    /// A report with no log and no cache activity (tests, synthetic ends).
    pub fn of(state: State, duration_ms: u64) -> ShardReport {
        ShardReport {
            state,
            duration_ms,
            last_log_seq: 0,
            cache: Vec::new(),
            tests: Vec::new(),
            items: Vec::new(),
            full_log: None,
            log_dropped: 0,
            muted: None,
            outputs: Vec::new(),
        }
    }
}
