//! One step of a run: its shards and how far it got.

use std::time::Instant;

use buildfleet_model::State;

use super::{clock, Listing, ShardRun, SplitInfo};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StepRun {
    pub(super) name: String,
    pub(super) stage: String,
    pub(super) state: State,
    pub(super) shards: Vec<ShardRun>,
    /// Indexes of the steps this one waits for.
    pub(super) deps: Vec<usize>,
    pub(super) labels: Vec<String>,
    /// When the step became ready; bounds how long it may wait for a runner
    /// with matching labels.
    #[serde(with = "clock::option")]
    pub(super) ready_at: Option<Instant>,
    #[serde(with = "clock::option")]
    pub(super) started: Option<Instant>,
    pub(super) duration_ms: u64,
    pub(super) listing: Listing,
    /// How a split step's items were divided, once they were.
    pub(super) split: Option<SplitInfo>,
    /// Its approval gate, once its turn came (`approval:` steps only).
    #[serde(default)]
    pub(super) approval: Option<super::Approval>,
}

/// Read access: a step changes only through [`super::Run`]'s transitions.
impl StepRun {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn stage(&self) -> &str {
        &self.stage
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn shards(&self) -> &[ShardRun] {
        &self.shards
    }
    pub fn deps(&self) -> &[usize] {
        &self.deps
    }
    pub fn labels(&self) -> &[String] {
        &self.labels
    }
    pub fn ready_at(&self) -> Option<Instant> {
        self.ready_at
    }
    pub fn started(&self) -> Option<Instant> {
        self.started
    }
    pub fn duration_ms(&self) -> u64 {
        self.duration_ms
    }
    pub fn listing(&self) -> &Listing {
        &self.listing
    }
    pub fn split(&self) -> Option<&SplitInfo> {
        self.split.as_ref()
    }
    pub fn approval(&self) -> Option<&super::Approval> {
        self.approval.as_ref()
    }
}
