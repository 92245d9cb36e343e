//! A run as a client submits it, before the coordinator checks it.

use std::collections::BTreeMap;

use crate::context::RunContext;
use crate::digest::Digest;

/// A submitted pipeline run.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// Where the pipeline file is, for messages (empty = `buildfleet.yaml`).
    pub pipeline_path: String,
    /// The pipeline file's text.
    pub pipeline_yaml: String,
    /// The uploaded working tree.
    pub input_root: Digest,
    /// Submitting twice with the same key gives the same run.
    pub idempotency_key: Option<String>,
    /// The items of `split: { files }` steps, by step name.
    pub split_items: BTreeMap<String, Vec<String>>,
    /// Run every step even if an identical earlier result exists.
    pub no_cache: bool,
    /// Names the project in history and cache keys.
    pub project: String,
    /// Test ids from the quarantine file.
    pub quarantine: Vec<String>,
    /// A flaky test fails its shard.
    pub fail_on_flaky: bool,
    /// Which commit, ref and event the run is for.
    pub context: RunContext,
    /// `--var NAME=VALUE`: values for variables the pipeline declares in
    /// its top-level `env` (an undeclared one is refused).
    pub vars: BTreeMap<String, String>,
}
