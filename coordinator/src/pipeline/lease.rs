//! A shard's lease as far as the pipeline alone decides it. The scheduler
//! adds what only a run knows (ids, attempt, secret values, run options);
//! `buildfleet cache explain` uses it as is. One construction, so the
//! action digest explain computes is the one a runner computes.

use buildfleet_model::{Digest, Lease, LeaseKind, RunContext};

use super::{Pipeline, Step};

/// An output path with the shard's index in it, so the shards of one step
/// can each leave their own (`coverage-${BUILDFLEET_SHARD_INDEX}.xml`)
/// instead of all claiming one path that their dependants could not tell
/// apart.
pub fn shard_output(path: &str, shard: u32) -> String {
    let index = shard.to_string();
    path.replace("${BUILDFLEET_SHARD_INDEX}", &index)
        .replace("$BUILDFLEET_SHARD_INDEX", &index)
}

impl Pipeline {
    /// Shard `shard` of `shard_count` of `step`, with its `split:` items,
    /// for a run in `context` (its variables are in the step's env).
    /// Secrets are named with empty values: which secrets a step receives
    /// is part of its action; their values never are, and only a run has
    /// them.
    #[allow(clippy::too_many_arguments)]
    pub fn shard_lease(
        &self,
        step: &Step,
        shard: u32,
        shard_count: u32,
        items: Vec<String>,
        input_root: Digest,
        project: &str,
        context: &RunContext,
    ) -> Lease {
        let mut env = self.shard_env(step, shard, shard_count, &items);
        env.extend(context.env().map(|(k, v)| (k.to_owned(), v)));
        Lease {
            lease_id: String::new(),
            run_id: String::new(),
            step: step.name.clone(),
            shard_index: shard,
            shard_count,
            kind: LeaseKind::Shard,
            command: step.run.clone(),
            env,
            input_root,
            timeout: step.timeout,
            outputs: step
                .outputs
                .iter()
                .map(|o| shard_output(o, shard))
                .collect(),
            // Validation guarantees every name resolves.
            caches: step
                .caches
                .iter()
                .filter_map(|name| self.caches.get(name).cloned())
                .collect(),
            action_cache_off: self.result_cache_off(step),
            inputs: step.inputs.clone(),
            project: project.to_owned(),
            reports: step.reports.clone(),
            items,
            attempt: 1,
            verify: step.verify.clone(),
            secrets: step
                .secrets
                .iter()
                .map(|name| (name.clone(), String::new()))
                .collect(),
            log_cap: step.log_cap.filter(|&cap| cap > 0),
            quarantine: Vec::new(),
            resources: step.resources,
            // Only a run knows what its dependencies produced.
            artifacts: Vec::new(),
            services: step.services.clone(),
            run_vars: Vec::new(),
            artifact_retention: None,
            cache_scope: Default::default(),
            traceparent: String::new(),
        }
    }
}
