//! `buildfleet rerun RUN STEP`: one step of an earlier run again, as a new
//! run with that run's pipeline, inputs, context and the artifacts its
//! dependencies made — redeploying a known-good version is one command.
//! The re-run always really runs (never a step-result cache hit), its
//! secrets are read now (a secret that has since expired stops it, as at
//! any submission), and its approval gate, if the step has one, holds.

use std::time::Instant;

use crate::error::CoordinatorError;
use crate::events::NoticeKind;
use crate::hub::Hub;
use crate::pipeline;
use crate::run::Rerun;
use crate::scheduler::Submitted;
use buildfleet_model::Submission;

impl Hub {
    /// Starts the re-run of `step` of `run_id`, asked by `by`; the new run
    /// is `owner`'s (the token that asked).
    pub fn rerun(
        &self,
        run_id: &str,
        step: &str,
        by: &str,
        owner: Option<&str>,
    ) -> Result<Submitted, CoordinatorError> {
        if self.is_closing() {
            return Err(CoordinatorError::ShuttingDown {
                retry: "ask for the re-run again when it is back".into(),
            });
        }
        let (old, path, root, artifacts) = self.read(|s| {
            let run = s.run(run_id)?;
            let index = run
                .step_index(step)
                .ok_or_else(|| CoordinatorError::UnknownStep {
                    run: run_id.to_owned(),
                    step: step.to_owned(),
                })?;
            let artifacts = run
                .received_artifacts(index)
                .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
            Ok::<_, CoordinatorError>((
                run.options().clone(),
                run.pipeline_path().to_owned(),
                run.input_root(),
                artifacts,
            ))
        })?;
        let full = pipeline::parse(&path, &old.pipeline_yaml)?.with_vars(&old.vars)?;
        let pipeline = full
            .only(step)
            .ok_or_else(|| CoordinatorError::UnknownStep {
                run: run_id.to_owned(),
                step: step.to_owned(),
            })?;
        let sub = Submission {
            pipeline_path: path.clone(),
            pipeline_yaml: old.pipeline_yaml.clone(),
            input_root: root,
            idempotency_key: None,
            split_items: old.split_items.clone(),
            no_cache: false,
            project: old.project.clone(),
            quarantine: old.quarantine.iter().cloned().collect(),
            fail_on_flaky: old.fail_on_flaky,
            context: old.context.clone(),
            vars: old.vars.clone(),
        };
        let mut options = self.run_options(&pipeline, sub);
        options.owner = owner.map(str::to_owned);
        let received = artifacts.len();
        options.rerun = Some(Rerun {
            of_run: run_id.to_owned(),
            step: step.to_owned(),
            artifacts,
            by: by.to_owned(),
        });
        let by = if by.is_empty() { "someone unnamed" } else { by };
        let text = format!(
            "re-run of step {step} of run {run_id}, asked by {by}, with its inputs, context and {received} artifact(s)"
        );
        let submitted = self.with(|s| {
            let submitted = s.submit(pipeline, path, root, options, None, Instant::now());
            s.record_notice(&submitted.run_id, NoticeKind::Info, text);
            submitted
        });
        self.dispatch();
        Ok(submitted)
    }
}
