//! What a runner is told for one shard: the lease built from the run, the
//! step and its shard, with the decisions made for it here — whether it may
//! use the step-result cache (and if not, why), and whether a secret it
//! needs has expired since the run began.

use std::time::Instant;

use buildfleet_model::{Lease, LeaseKind};

use crate::run::Run;

/// Why a lease may not use the step-result cache, for the run's own
/// reasons first; `None` = the pipeline's decision stands.
fn run_cache_off(run: &Run, attempt: u32) -> Option<String> {
    if run.options().no_cache {
        return Some("`--no-cache`: the step always runs".into());
    }
    if let Some(rerun) = &run.options().rerun {
        return Some(format!(
            "a re-run of step `{}` of run {}: it must really run",
            rerun.step, rerun.of_run
        ));
    }
    // A stored pass of the same subset would hide that the test failed
    // again.
    (attempt > 1).then(|| format!("attempt {attempt} is a re-run: it must really run"))
}

/// Which lease of a step to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseFor {
    /// Shard `n` of the step.
    Shard(usize),
    /// The step's `split: { list }` command, before it has shards.
    Listing,
}

/// The lease for a shard of a step, or for its listing: the pipeline's
/// lease for the shard ([`crate::pipeline::Pipeline::shard_lease`]) with
/// what the run adds — ids, attempt, `BUILDFLEET_RUN_ID`, secret values,
/// run options.
pub(super) fn build(run: &Run, step: usize, target: LeaseFor, lease_id: String) -> Lease {
    let st = &run.steps()[step];
    let def = run
        .pipeline()
        .step(st.name())
        .expect("run steps come from the pipeline");
    let traced_shard = match target {
        LeaseFor::Shard(i) => Some(i as u32),
        LeaseFor::Listing => None,
    };
    let (shard, count, items, attempt) = match target {
        LeaseFor::Shard(shard) => {
            let (items, attempt) = st.shards().get(shard).map_or((Vec::new(), 1), |s| {
                (s.attempt_items().to_vec(), s.attempt())
            });
            (shard as u32, st.shards().len() as u32, items, attempt)
        }
        LeaseFor::Listing => (0, 1, Vec::new(), 1),
    };
    let project = &run.options().project;
    let context = &run.options().context;
    let mut lease =
        run.pipeline()
            .shard_lease(def, shard, count, items, run.input_root(), project, context);
    lease.lease_id = lease_id;
    lease.run_id = run.id().to_owned();
    lease.attempt = attempt;
    lease.action_cache_off = run_cache_off(run, attempt).or(lease.action_cache_off);
    lease.log_cap = Some(def.log_cap.unwrap_or(run.options().log_cap)).filter(|&cap| cap > 0);
    lease.run_vars = run.options().vars.keys().cloned().collect();
    lease.artifact_retention = Some(run.options().artifact_retention).filter(|d| !d.is_zero());
    lease.cache_scope = run.options().cache_scope.clone();
    lease.traceparent =
        buildfleet_trace::attempt_traceparent(run.id(), st.name(), traced_shard, attempt);
    // The declared names get the run's values; a missing one is caught
    // before the step may start (`expired_secret`, submission).
    lease.secrets = lease
        .secrets
        .keys()
        .filter_map(|n| run.options().secrets.get(n).map(|v| (n.clone(), v.clone())))
        .collect();
    // Only a step with reports can name the failed tests it would mute.
    if !def.reports.is_empty() {
        lease.quarantine = run.options().quarantine.iter().cloned().collect();
    }
    if let LeaseFor::Shard(_) = target {
        // A conflict stops the step before this is built (`assign`).
        lease.artifacts = run.received_artifacts(step).unwrap_or_default();
    }
    if target == LeaseFor::Listing {
        let mut env = run.pipeline().step_env(def);
        env.extend(context.env().map(|(k, v)| (k.to_owned(), v)));
        as_listing(&mut lease, def, env);
    }
    lease
        .env
        .insert(crate::pipeline::RUN_ID_VAR.into(), run.id().to_owned());
    lease
}

/// A listing reads the tree and acts on nothing: the list command, the
/// step's env without shard variables, its inputs and caches — and no
/// outputs, reports, verify, quarantine or secrets (its stdout becomes
/// items that reach the summary, stored runs and history: a secret in its
/// environment could be printed into all of them).
fn as_listing(
    lease: &mut Lease,
    def: &crate::pipeline::Step,
    mut env: std::collections::BTreeMap<String, String>,
) {
    if let Some(crate::pipeline::Split::List(command)) = &def.split {
        lease.command = command.clone();
    }
    lease.kind = LeaseKind::Listing;
    env.insert("BUILDFLEET_LISTING".into(), "1".into());
    lease.env = env;
    lease.outputs.clear();
    lease.reports.clear();
    lease.verify.clear();
    lease.quarantine.clear();
    lease.secrets.clear();
    lease.services.clear();
    lease.action_cache_off = Some("a listing lease always runs".into());
}

/// The reason a step may not start because a secret it needs has expired
/// since the run was submitted (or restored).
pub(super) fn expired_secret(run: &Run, step: usize, now: Instant) -> Option<String> {
    let def = run.pipeline().step(run.steps()[step].name())?;
    def.secrets.iter().find_map(|name| {
        let e = run.options().secret_expiry.get(name)?;
        (e.at <= now).then(|| {
            format!(
                "secret {name} expired at {} while the run was under way; the step did not start",
                e.wall
            )
        })
    })
}
