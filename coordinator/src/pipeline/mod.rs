//! The pipeline file (`buildfleet.yaml`): its parsed form and the parser.
//!
//! Parsing happens in three passes so that one run reports every problem it
//! can: `yaml` turns text into a tree that remembers positions, `parse`
//! checks each node's shape against the schema, and `validate` checks the
//! relations between steps (unique names, `needs`, cycles) once they exist.

mod caches;
pub mod condition;
mod conditions;
mod dag;
mod error;
mod fields;
mod lease;
mod matrix;
mod parse;
mod resources;
mod sharding;
mod step_fields;
mod suggest;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

pub use buildfleet_model::{CacheSpec, Resources};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use error::{PipelineError, PipelineErrors};

/// `--var NAME=…` for a variable the pipeline does not declare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`--var {name}`: the pipeline declares no variable `{name}` in its top-level `env` (it declares: {})", if declared.is_empty() { "none".to_owned() } else { declared.join(", ") })]
pub struct UndeclaredVar {
    pub name: String,
    pub declared: Vec<String>,
}

/// A whole pipeline file after validation: every invariant the schema
/// promises (unique step names, `needs` that resolve, no cycles) holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pipeline {
    pub version: u32,
    pub target_minutes: Option<u32>,
    /// `quarantine: FILE`: a file in the repository listing test ids whose
    /// failures are shown but do not fail their step.
    pub quarantine: Option<String>,
    /// Applies to every step; a step's own `env` wins on conflicts.
    pub env: BTreeMap<String, String>,
    /// Dependency caches by name, as declared in `caches:`.
    pub caches: BTreeMap<String, CacheSpec>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Unique across the whole pipeline, so `needs` can name steps without
    /// qualifying them by stage.
    pub name: String,
    /// Name of the stage the step belongs to.
    pub stage: String,
    /// Run later under `bash -euo pipefail -c`.
    pub run: String,
    /// How many parallel shards to split the step into; 1 when not given.
    pub shards: Shards,
    pub timeout: Option<Duration>,
    /// Numbers and bools are kept as written, so `1.10` stays `1.10`.
    pub env: BTreeMap<String, String>,
    /// Relative to the workspace and guaranteed not to escape it.
    pub outputs: Vec<String>,
    /// `None` when not given, which means "wait for the previous stage";
    /// `Some(vec![])` explicitly opts out of that barrier.
    pub needs: Option<Vec<String>>,
    /// Runner labels a runner must have to be given this step.
    pub labels: Vec<String>,
    /// Names of dependency caches (from `Pipeline::caches`) the step uses.
    pub caches: Vec<String>,
    /// Globs naming the inputs that count for the step's action digest;
    /// empty means the whole input tree.
    pub inputs: Vec<String>,
    /// `cache: false` / `cache: true`; unset, the step-result cache is on
    /// unless the step acts on the world (see [`Pipeline::result_cache_off`]).
    pub cache: Option<bool>,
    /// JUnit XML reports the step writes (relative paths), read after it
    /// exits for per-test outcomes.
    pub reports: Vec<String>,
    /// `split:`: the step's work items, each given to exactly one shard.
    pub split: Option<Split>,
    /// `split: { by: timings | count }`: balance by learned durations (the
    /// default) or by item count alone.
    pub split_by: SplitBy,
    /// `retries: { flaky: N }`: a shard whose tests failed re-runs the
    /// failed items up to N times; a test that then passes is flaky.
    pub flaky_retries: u32,
    /// `retries: { infra: N }` (default 2): how many times a shard whose
    /// runner was lost is leased again elsewhere.
    pub infra_retries: u32,
    /// Commands run after the step exits 0 and its outputs are stored (e.g.
    /// `docker manifest inspect` after a push); any failing fails the step.
    pub verify: Vec<buildfleet_model::Check>,
    /// Names of secrets from the coordinator's store that this step (and
    /// only this step) receives as environment variables.
    pub secrets: Vec<String>,
    /// `log_cap: SIZE`: output streamed live before the head/tail cut;
    /// `None` takes the coordinator's default.
    pub log_cap: Option<u64>,
    /// `resources:`: cgroup limits for each shard, where runners can.
    pub resources: Resources,
    /// `if:`: when the step runs; `None` means `success()`.
    pub condition: Option<condition::Condition>,
    /// `services:`: background processes its command runs against.
    pub services: Vec<buildfleet_model::Service>,
    /// `approval: { timeout }`: the step waits for someone to approve it,
    /// at most this long.
    pub approval: Option<Duration>,
    /// This step's values of its `matrix:` keys (empty for a step
    /// without a matrix); `matrix.KEY` in conditions reads them.
    pub matrix: BTreeMap<String, String>,
}

/// The variable whose value differs on every run by design.
pub const RUN_ID_VAR: &str = "BUILDFLEET_RUN_ID";

/// `shards:` on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    Fixed(u32),
    /// `shards: auto`: as many as the step's share of `target_minutes`
    /// needs by history, at most `max` (`max_shards`).
    Auto {
        max: u32,
    },
}

impl Shards {
    /// The count when fixed, the upper bound when automatic.
    pub fn max(self) -> u32 {
        match self {
            Shards::Fixed(n) | Shards::Auto { max: n } => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitBy {
    #[default]
    Timings,
    Count,
}

/// Where a split step's items come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    /// Files of the submitted tree matching a glob (`.gitignore` applied).
    Files(String),
    /// The non-empty lines a command prints, run by a runner on the
    /// step's inputs and caches before the shards are made.
    List(String),
}

/// Parses and validates a pipeline; `file_name` is only used in errors.
pub fn parse(file_name: &str, text: &str) -> Result<Pipeline, PipelineErrors> {
    let mut errors = error::Collector::new(file_name);
    let root = match yaml::load(text) {
        Ok(Some(root)) if !root.is_null() => root,
        Ok(_) => {
            errors.error_with_hint(
                yaml::Pos::START,
                "the pipeline file is empty",
                "a pipeline needs at least `version: 1` and a non-empty `stages` list",
            );
            return Err(errors.finish());
        }
        Err(e) => {
            match e.hint {
                Some(hint) => errors.error_with_hint(e.pos, e.message, hint),
                None => errors.error(e.pos, e.message),
            }
            return Err(errors.finish());
        }
    };
    let (pipeline, positions) = parse::pipeline(&root, &mut errors);
    validate::pipeline(&pipeline, &positions, &mut errors);
    if errors.is_empty() {
        Ok(pipeline)
    } else {
        Err(errors.finish())
    }
}

/// Reads and parses a pipeline file; a read failure is reported as an error
/// for the file as a whole (line and column 0).
pub fn parse_file(path: &Path) -> Result<Pipeline, PipelineErrors> {
    let file_name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file_name, &text),
        Err(e) => Err(PipelineErrors(vec![PipelineError {
            file: file_name,
            line: 0,
            column: 0,
            message: format!("cannot read the pipeline file: {e}"),
            hint: None,
        }])),
    }
}

impl Pipeline {
    /// Why a shard of `step` may not be served from (or stored in) the
    /// step-result cache; `None` when it may — one rule for the
    /// coordinator and `buildfleet cache explain`.
    ///
    /// A step that receives secrets acts on the outside world (a push, a
    /// deploy): replaying its log would report green for a side effect that
    /// did not happen, so it always runs unless it says `cache: true`. So
    /// does a step whose command, checks or environment use the run id,
    /// which the action digest leaves out because it differs on every run.
    pub fn result_cache_off(&self, step: &Step) -> Option<String> {
        let uses_run_id = std::iter::once(&step.run)
            .chain(step.verify.iter().map(|c| &c.command))
            .chain(step.env.values())
            .chain(self.env.values())
            .any(|text| text.contains(RUN_ID_VAR));
        match step.cache {
            Some(true) => None,
            Some(false) => Some("`cache: false`: the step always runs".into()),
            None if !step.secrets.is_empty() => Some(format!(
                "the step receives secrets ({}), so it acts on the outside world: it always runs (`cache: true` allows reuse)",
                step.secrets.join(", ")
            )),
            None if uses_run_id => Some(format!(
                "the step uses {RUN_ID_VAR}, which is different on every run: it always runs (`cache: true` allows reuse)"
            )),
            None => None,
        }
    }

    /// The pipeline with the run's `--var` values for variables it
    /// declares in its top-level `env`; an undeclared name is refused, so
    /// a misspelt variable is an error, not a value that silently never
    /// arrives.
    pub fn with_vars(mut self, vars: &BTreeMap<String, String>) -> Result<Pipeline, UndeclaredVar> {
        for (name, value) in vars {
            match self.env.get_mut(name) {
                Some(slot) => *slot = value.clone(),
                None => {
                    return Err(UndeclaredVar {
                        name: name.clone(),
                        declared: self.env.keys().cloned().collect(),
                    })
                }
            }
        }
        Ok(self)
    }

    /// The pipeline of a re-run of one step: that step alone, in its
    /// stage, with nothing to wait for and no condition (re-running it is
    /// the decision); its approval gate, if any, still holds.
    pub fn only(&self, name: &str) -> Option<Pipeline> {
        let step = self.step(name)?;
        let mut alone = step.clone();
        alone.needs = Some(Vec::new());
        alone.condition = None;
        Some(Pipeline {
            stages: vec![Stage {
                name: step.stage.clone(),
                steps: vec![alone],
            }],
            ..self.clone()
        })
    }

    /// Each step's direct dependencies: its `needs` if given, else every step
    /// of the previous stage (the stage barrier). Every step has an entry;
    /// each list is in declaration order.
    pub fn dependencies(&self) -> BTreeMap<String, Vec<String>> {
        dag::dependencies(self)
    }

    /// All steps, in declaration order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.stages.iter().flat_map(|stage| stage.steps.iter())
    }

    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps().find(|step| step.name == name)
    }

    /// Each stage's share of `target_minutes`: stages run one after the
    /// other, so a stage gets an equal part and its shards should fit it.
    pub fn stage_budget(&self) -> Option<Duration> {
        let stages = self.stages.len().max(1) as u32;
        self.target_minutes
            .map(|m| Duration::from_secs(u64::from(m) * 60) / stages)
    }

    /// A step's environment before it has shards (a listing lease): the
    /// pipeline's env, the step's own (winning on conflicts) and
    /// `BUILDFLEET_STEP`.
    pub fn step_env(&self, step: &Step) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        env.extend(step.env.clone());
        env.insert("BUILDFLEET_STEP".into(), step.name.clone());
        env
    }

    /// The environment a shard of `step` runs with, apart from the per-run
    /// `BUILDFLEET_RUN_ID`: the pipeline's env, the step's own (winning on
    /// conflicts), and the step/shard variables. One definition, because
    /// action digests computed by `cache explain` must match the runners'.
    pub fn shard_env(
        &self,
        step: &Step,
        shard: u32,
        shard_count: u32,
        items: &[String],
    ) -> BTreeMap<String, String> {
        let mut env = self.step_env(step);
        env.insert("BUILDFLEET_SHARD_INDEX".into(), shard.to_string());
        env.insert("BUILDFLEET_SHARD_COUNT".into(), shard_count.to_string());
        if let Some(split) = &step.split {
            let words = crate::split::shell_words(items);
            // A file split also answers to the name its sketch in the
            // brief uses, so `$BUILDFLEET_SHARD_FILES` is never silently
            // empty (which a test runner would read as "run everything").
            if matches!(split, Split::Files(_)) {
                env.insert("BUILDFLEET_SHARD_FILES".into(), words.clone());
            }
            env.insert("BUILDFLEET_SHARD_ITEMS".into(), words);
        }
        env
    }
}
