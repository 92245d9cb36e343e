//! The step-result cache, before anything is materialised: whether this
//! lease may reuse an earlier result, and if it does, replaying its log.

use buildfleet_cache::{Digest, StepResult};
use buildfleet_proto::v1 as pb;

use super::log::LogSender;
use super::{note, ShardContext};
use crate::caching::action::{self, ActionKey, ActionSpec, STEP_CACHE};
use crate::caching::{platform, Outcome, Report};

/// What the step-result cache decided.
pub enum Prepared {
    /// An earlier result of this exact action was replayed. Its `verify:`
    /// checks still have to pass: they test the world, not the process.
    Cached(Box<StepResult>),
    /// Run the step; store its result under this action if it succeeds.
    Run(Option<Box<(ActionSpec, ActionKey)>>),
}

fn step_report(outcome: Outcome, key: String, detail: String) -> Report {
    Report {
        cache: STEP_CACHE.to_owned(),
        outcome,
        key,
        detail,
    }
}

/// The action this lease would be cached under.
fn spec(lease: &pb::Lease, root: Digest) -> ActionSpec {
    ActionSpec {
        project: lease.project.clone(),
        step: lease.step.clone(),
        command: lease.command.clone(),
        env: lease
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        input_root: root,
        input_globs: lease.inputs.clone(),
        shard_index: lease.shard_index,
        shard_count: lease.shard_count,
        outputs: lease.outputs.clone(),
        platform: platform(),
        verify: lease.verify.clone(),
        secret_names: lease
            .secrets
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}

pub async fn step_cache(
    ctx: &ShardContext,
    lease: &pb::Lease,
    root: Digest,
    log: &mut LogSender,
    reports: &mut Vec<Report>,
) -> Prepared {
    if !lease.use_action_cache {
        // The coordinator says why (`cache: false`, `--no-cache`, secrets,
        // a re-run); an older one does not, so there is a fallback.
        let why = if lease.action_cache_off.is_empty() {
            "`--no-cache` or `cache: false`: the step always runs".to_owned()
        } else {
            lease.action_cache_off.clone()
        };
        note(
            log,
            reports,
            step_report(Outcome::Disabled, String::new(), why),
        )
        .await;
        return Prepared::Run(None);
    }
    let spec = spec(lease, root);
    let key = match action::compute(&ctx.cas, &spec).await {
        Ok(key) => key,
        Err(e) => {
            let r = step_report(
                Outcome::Miss,
                String::new(),
                format!("no action digest, so no reuse and no save: {e}"),
            );
            note(log, reports, r).await;
            return Prepared::Run(None);
        }
    };
    let action_id = key.digest.to_string();
    match action::lookup(&ctx.cas, &key).await {
        Ok(Some(result)) => match super::cached::replay(&ctx.cas, &key, &result, log).await {
            Ok(()) => {
                note(
                    log,
                    reports,
                    step_report(Outcome::Hit, action_id, String::new()),
                )
                .await;
                return Prepared::Cached(Box::new(result));
            }
            Err(e) => {
                let r = step_report(
                    Outcome::Miss,
                    action_id,
                    format!("the stored result could not be replayed ({e}); running the step"),
                );
                note(log, reports, r).await;
            }
        },
        Ok(None) => {
            let why = match action::previous(&ctx.cas, &spec).await {
                Ok(Some(old)) => {
                    crate::caching::explain::action_miss(&ctx.cas, &old, &key.record).await
                }
                Ok(None) => format!(
                    "no earlier result for step `{}` shard {}/{} on {}",
                    spec.step, spec.shard_index, spec.shard_count, spec.platform
                ),
                Err(e) => format!("no explanation: {e}"),
            };
            note(log, reports, step_report(Outcome::Miss, action_id, why)).await;
        }
        Err(e) => {
            note(log, reports, step_report(Outcome::Miss, action_id, e)).await;
        }
    }
    Prepared::Run(Some(Box::new((spec, key))))
}
