//! One shard of a step: where it is, who runs it, what it reported.

use std::time::{Duration, Instant};

use buildfleet_model::{CacheReport, Digest, State, TestResult};

use super::clock;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ShardRun {
    pub(super) index: u32,
    pub(super) state: State,
    pub(super) runner: Option<String>,
    pub(super) lease: Option<String>,
    pub(super) attempt: u32,
    #[serde(with = "clock::option")]
    pub(super) started: Option<Instant>,
    pub(super) duration_ms: u64,
    pub(super) cache: Vec<CacheReport>,
    pub(super) tests: Vec<TestResult>,
    /// This shard's share of a split step's items (recorded once, when
    /// the step is planned, so any re-run stays within exactly these).
    pub(super) items: Vec<String>,
    /// The items the current attempt runs: all of `items` at first, the
    /// failed ones on a flaky re-run.
    pub(super) attempt_items: Vec<String>,
    /// Predicted from history (zero without).
    pub(super) predicted: Duration,
    /// The last attempt's whole log in the cache, and what its cap dropped.
    pub(super) full_log: Option<Digest>,
    pub(super) log_dropped: u64,
    /// Flaky re-runs used (`retries: { flaky }`).
    pub(super) flaky_reruns: u32,
    /// Re-leases after a lost runner (`retries: { infra }`).
    pub(super) infra_retries: u32,
    /// The non-zero exit code the quarantine muted (the shard is green
    /// only because every failed test is quarantined).
    pub(super) muted_exit: Option<i32>,
    /// The last attempt's declared outputs in the cache, for dependants.
    #[serde(default)]
    pub(super) outputs: Vec<buildfleet_model::Artifact>,
}

impl ShardRun {
    pub(super) fn new(
        index: u32,
        items: Vec<String>,
        predicted: Duration,
        state: State,
    ) -> ShardRun {
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
            outputs: Vec::new(),
        }
    }
}

/// Read access: a shard changes only through [`Run`]'s transitions.
impl ShardRun {
    pub fn index(&self) -> u32 {
        self.index
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn runner(&self) -> Option<&str> {
        self.runner.as_deref()
    }
    pub fn lease(&self) -> Option<&str> {
        self.lease.as_deref()
    }
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    pub fn started(&self) -> Option<Instant> {
        self.started
    }
    pub fn duration_ms(&self) -> u64 {
        self.duration_ms
    }
    pub fn cache(&self) -> &[CacheReport] {
        &self.cache
    }
    pub fn tests(&self) -> &[TestResult] {
        &self.tests
    }
    pub fn items(&self) -> &[String] {
        &self.items
    }
    pub fn attempt_items(&self) -> &[String] {
        &self.attempt_items
    }
    pub fn predicted(&self) -> Duration {
        self.predicted
    }
    pub fn full_log(&self) -> Option<Digest> {
        self.full_log
    }
    pub fn log_dropped(&self) -> u64 {
        self.log_dropped
    }
    pub fn flaky_reruns(&self) -> u32 {
        self.flaky_reruns
    }
    pub fn infra_retries(&self) -> u32 {
        self.infra_retries
    }
    pub fn muted_exit(&self) -> Option<i32> {
        self.muted_exit
    }
}
