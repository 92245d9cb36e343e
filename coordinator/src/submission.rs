//! Taking a pipeline run in: what a submission must hold before it becomes
//! a run, and the secrets it needs, read outside the scheduler's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

pub use buildfleet_model::Submission;

use crate::error::CoordinatorError;
use crate::hub::Hub;
use crate::pipeline::{self, Pipeline, Split};
use crate::run::{Expiry, RunOptions};
use crate::scheduler::Submitted;

impl Hub {
    /// Checks a submission, reads the secrets it needs and starts the run.
    /// A run that needs an unusable secret still becomes a run, failed
    /// before any step, so the failure is seen where runs are watched.
    /// Submits a run nobody owns (a fleet without tokens; tests).
    pub fn submit(&self, sub: Submission) -> Result<Submitted, CoordinatorError> {
        self.submit_as(sub, None)
    }

    /// Submits a run owned by the token named `owner`. An idempotency key
    /// is the owner's own: another caller's same key makes another run,
    /// rather than handing over the first caller's run id.
    pub fn submit_as(
        &self,
        sub: Submission,
        owner: Option<&str>,
    ) -> Result<Submitted, CoordinatorError> {
        if self.is_closing() {
            return Err(CoordinatorError::ShuttingDown {
                retry: "submit again (with the same idempotency key) when it is back".into(),
            });
        }
        let path = match sub.pipeline_path.as_str() {
            "" => "buildfleet.yaml".to_owned(),
            p => p.to_owned(),
        };
        let pipeline = pipeline::parse(&path, &sub.pipeline_yaml)?.with_vars(&sub.vars)?;
        check_file_splits(&pipeline, &sub.split_items)?;
        let root = sub.input_root;
        let mut options = self.run_options(&pipeline, sub);
        options.owner = owner.map(str::to_owned);
        let key = match (owner, &options.idempotency_key) {
            (Some(owner), Some(key)) => Some(format!("{owner}/{key}")),
            (_, key) => key.clone(),
        };
        let submitted = self.with(|s| s.submit(pipeline, path, root, options, key, Instant::now()));
        self.dispatch();
        Ok(submitted)
    }

    pub(crate) fn run_options(&self, pipeline: &Pipeline, sub: Submission) -> RunOptions {
        let needed: BTreeSet<String> = pipeline
            .steps()
            .flat_map(|s| s.secrets.iter().cloned())
            .collect();
        let resolved = self.config.secrets.resolve(&needed, SystemTime::now());
        let cache_scope = self.config.cache_scope(&sub.context.git_ref);
        let secret_problems = pipeline
            .steps()
            .filter_map(|s| {
                let why: Vec<&str> = s
                    .secrets
                    .iter()
                    .filter_map(|n| resolved.unusable.get(n).map(String::as_str))
                    .collect();
                (!why.is_empty()).then(|| (s.name.clone(), why.join("; ")))
            })
            .collect();
        let now = Instant::now();
        RunOptions {
            no_cache: sub.no_cache,
            project: sub.project,
            split_items: sub.split_items,
            quarantine: sub
                .quarantine
                .into_iter()
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty())
                .collect(),
            fail_on_flaky: sub.fail_on_flaky,
            secret_expiry: resolved
                .expires
                .iter()
                .map(|(name, at)| (name.clone(), Expiry::of(*at, now)))
                .collect(),
            secrets: resolved.values,
            secret_problems,
            warnings: resolved.expiring,
            log_cap: self.config.log_cap,
            artifact_retention: self.config.artifact_retention,
            pipeline_yaml: sub.pipeline_yaml,
            idempotency_key: sub.idempotency_key,
            context: sub.context,
            vars: sub.vars,
            rerun: None,
            owner: None,
            cache_scope,
        }
    }
}

/// A `split: { files }` step needs files: a glob matching nothing in the
/// submitted tree would give it no shards, and it would pass having run
/// nothing.
fn check_file_splits(
    pipeline: &Pipeline,
    items: &BTreeMap<String, Vec<String>>,
) -> Result<(), CoordinatorError> {
    for step in pipeline.steps() {
        if let Some(Split::Files(glob)) = &step.split {
            if items.get(&step.name).is_none_or(|i| i.is_empty()) {
                return Err(CoordinatorError::BadRequest(format!(
                    "step `{}` splits by files, but `{glob}` matches no files in the submitted inputs",
                    step.name
                )));
            }
        }
    }
    Ok(())
}
