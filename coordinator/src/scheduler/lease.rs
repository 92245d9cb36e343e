//! What a runner is told for one shard: the lease built from the run, the
//! step and its shard, with the decisions made for it here — whether it may
//! use the step-result cache (and if not, why), and whether a secret it
//! needs has expired since the run began.

use std::time::Instant;

use buildfleet_model::{Lease, LeaseKind};

use crate::run::Run;

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

/// Which lease of a step to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseFor {
    /// Shard `n` of the step.
    Shard(usize),
    /// The step's `split: { list }` command, before it has shards.
    Listing,
}

/// The lease for a shard of a step, or for its listing. A listing reads
/// the tree and acts on nothing: it gets the list command, the step's env
/// without shard variables, its inputs and caches — and no outputs,
/// reports, verify, quarantine or secrets (its stdout becomes items that
/// reach the summary, stored runs and history: a secret in its
/// environment could be printed into all of them).
pub(super) fn build(run: &Run, step: usize, target: LeaseFor, lease_id: String) -> Lease {
    let st = &run.steps[step];
    let def = run
        .pipeline
        .step(&st.name)
        .expect("run steps come from the pipeline");
    let listing_command = match &def.split {
        Some(crate::pipeline::Split::List(command)) => command.clone(),
        _ => def.run.clone(),
    };
    let (kind, command, mut env, shard_index, shard_count, items, attempt) = match target {
        LeaseFor::Shard(shard) => {
            let (items, attempt) = st
                .shards
                .get(shard)
                .map_or((Vec::new(), 1), |s| (s.attempt_items.clone(), s.attempt));
            let count = st.shards.len() as u32;
            let env = run.pipeline.shard_env(def, shard as u32, count, &items);
            let command = def.run.clone();
            (
                LeaseKind::Shard,
                command,
                env,
                shard as u32,
                count,
                items,
                attempt,
            )
        }
        LeaseFor::Listing => {
            let mut env = run.pipeline.step_env(def);
            env.insert("BUILDFLEET_LISTING".into(), "1".into());
            (
                LeaseKind::Listing,
                listing_command,
                env,
                0,
                1,
                Vec::new(),
                1,
            )
        }
    };
    env.insert(crate::pipeline::RUN_ID_VAR.into(), run.id.clone());
    let acts = kind == LeaseKind::Shard;
    let when_acting = |v: &Vec<String>| if acts { v.clone() } else { Vec::new() };
    Lease {
        lease_id,
        run_id: run.id.clone(),
        step: st.name.clone(),
        shard_index,
        shard_count,
        kind,
        command,
        env,
        input_root: run.input_root,
        timeout: def.timeout,
        outputs: when_acting(&def.outputs),
        // Validation guarantees every name resolves.
        caches: def
            .caches
            .iter()
            .filter_map(|name| run.pipeline.caches.get(name).cloned())
            .collect(),
        action_cache_off: match kind {
            LeaseKind::Shard => action_cache_off(run, def, attempt),
            LeaseKind::Listing => Some("a listing lease always runs".into()),
        },
        inputs: def.inputs.clone(),
        project: run.options.project.clone(),
        reports: when_acting(&def.reports),
        items,
        attempt,
        verify: when_acting(&def.verify),
        secrets: match kind {
            LeaseKind::Shard => def
                .secrets
                .iter()
                .filter_map(|n| run.options.secrets.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
            LeaseKind::Listing => Default::default(),
        },
        log_cap: Some(def.log_cap.unwrap_or(run.options.log_cap)).filter(|&cap| cap > 0),
        // Only a step with reports can name the failed tests it would mute.
        quarantine: match acts && !def.reports.is_empty() {
            true => run.options.quarantine.iter().cloned().collect(),
            false => Vec::new(),
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
