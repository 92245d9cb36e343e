//! What a runner is told for one shard: the lease built from the run, the
//! step and its shard, with the decisions made for it here — whether it may
//! use the step-result cache (and if not, why), and whether a secret it
//! needs has expired since the run began.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::pipeline::CacheDef;
use crate::run::{InputRoot, Run};

/// What a runner is told to do.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseSpec {
    pub lease_id: String,
    pub run_id: String,
    pub step: String,
    pub shard_index: u32,
    pub shard_count: u32,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub input_root: InputRoot,
    pub timeout: Option<Duration>,
    pub outputs: Vec<String>,
    pub caches: Vec<CacheDef>,
    /// Why the runner neither reuses nor stores a step result for this
    /// lease (`--no-cache`, `cache: false`, secrets, a re-run); `None` = it may.
    pub action_cache_off: Option<String>,
    pub inputs: Vec<String>,
    pub project: String,
    pub reports: Vec<String>,
    pub items: Vec<String>,
    /// A listing lease: run the list command and return its lines.
    pub list_items: bool,
    pub attempt: u32,
    pub verify: Vec<String>,
    /// Only the secrets this step declared.
    pub secrets: BTreeMap<String, String>,
    pub log_cap: u64,
    /// The quarantine file's test ids: the runner checks outputs and verify
    /// for an exit they may mute.
    pub quarantine: Vec<String>,
    pub resources: crate::pipeline::Resources,
}

/// Why a lease may not use the step-result cache; `None` = it may.
fn action_cache_off(run: &Run, def: &crate::pipeline::Step, attempt: u32) -> Option<String> {
    if run.options.no_cache {
        return Some("`--no-cache`: the step always runs".into());
    }
    if attempt > 1 {
        // A stored pass of the same subset would hide that the test
        // failed again.
        return Some(format!("attempt {attempt} is a re-run: it must really run"));
    }
    run.pipeline.result_cache_off(def)
}

pub(super) fn lease_spec(run: &Run, step: usize, shard: usize, lease_id: String) -> LeaseSpec {
    let st = &run.steps[step];
    let def = run
        .pipeline
        .step(&st.name)
        .expect("run steps come from the pipeline");
    let (items, attempt) = st
        .shards
        .get(shard)
        .map_or((Vec::new(), 1), |s| (s.attempt_items.clone(), s.attempt));
    let mut env = run
        .pipeline
        .shard_env(def, shard as u32, st.shards.len() as u32, &items);
    env.insert(crate::pipeline::RUN_ID_VAR.into(), run.id.clone());
    LeaseSpec {
        lease_id,
        run_id: run.id.clone(),
        step: st.name.clone(),
        shard_index: shard as u32,
        shard_count: st.shards.len() as u32,
        command: def.run.clone(),
        env,
        input_root: run.input_root.clone(),
        timeout: def.timeout,
        outputs: def.outputs.clone(),
        // Validation guarantees every name resolves.
        caches: def
            .caches
            .iter()
            .filter_map(|name| run.pipeline.caches.get(name).cloned())
            .collect(),
        action_cache_off: action_cache_off(run, def, attempt),
        inputs: def.inputs.clone(),
        project: run.options.project.clone(),
        reports: def.reports.clone(),
        items,
        list_items: false,
        attempt,
        verify: def.verify.clone(),
        secrets: def
            .secrets
            .iter()
            .filter_map(|n| run.options.secrets.get(n).map(|v| (n.clone(), v.clone())))
            .collect(),
        log_cap: def.log_cap.unwrap_or(run.options.log_cap),
        // Only a step with reports can name the failed tests it would mute.
        quarantine: match def.reports.is_empty() {
            true => Vec::new(),
            false => run.options.quarantine.iter().cloned().collect(),
        },
        resources: def.resources,
    }
}

/// The reason a step may not start because a secret it needs has expired
/// since the run was submitted (or restored).
pub(super) fn expired_secret(run: &Run, step: usize, now: Instant) -> Option<String> {
    let def = run.pipeline.step(&run.steps[step].name)?;
    def.secrets.iter().find_map(|name| {
        let e = run.options.secret_expiry.get(name)?;
        (e.at <= now).then(|| {
            format!(
                "secret {name} expired at {} while the run was under way; the step did not start",
                e.wall
            )
        })
    })
}
