//! The step-result cache, before anything is materialised: whether this
//! lease may reuse an earlier result, and if it does, replaying its log.

use buildfleet_cache::StepResult;
use buildfleet_model::{CacheOutcome, CacheReport, Lease};

use super::log::LogSender;
use super::{note, ShardContext};
use crate::caching::action::{self, ActionKey, ActionSpec, Found};
use crate::caching::platform;

/// What the step-result cache decided.
pub enum Prepared {
    /// An earlier result of this exact action was replayed. Its `verify:`
    /// checks still have to pass: they test the world, not the process.
    Cached(Box<StepResult>),
    /// Run the step; store its result under this action if it succeeds.
    Run(Option<Box<(ActionSpec, ActionKey)>>),
}

pub async fn step_cache(
    ctx: &ShardContext,
    lease: &Lease,
    log: &mut LogSender,
    reports: &mut Vec<CacheReport>,
) -> Prepared {
    if let Some(why) = &lease.action_cache_off {
        // The coordinator says why: `cache: false`, `--no-cache`, secrets,
        // the run id, a re-run.
        let report = CacheReport::step(CacheOutcome::Disabled, String::new(), why.clone());
        note(log, reports, report).await;
        return Prepared::Run(None);
    }
    let spec = ActionSpec::for_shard(lease, platform());
    match action::find(&ctx.cas, &spec).await {
        Found::Hit(key, result) => {
            let action_id = key.digest.to_string();
            match super::cached::replay(&ctx.cas, &key, &result, log).await {
                Ok(()) => {
                    let report = CacheReport::step(
                        CacheOutcome::Hit,
                        action_id,
                        result.provenance.describe(),
                    );
                    note(log, reports, report).await;
                    Prepared::Cached(result)
                }
                Err(e) => {
                    let r = CacheReport::step(
                        CacheOutcome::Miss,
                        action_id,
                        format!("the stored result could not be replayed ({e}); running the step"),
                    );
                    note(log, reports, r).await;
                    Prepared::Run(Some(Box::new((spec, *key))))
                }
            }
        }
        Found::Miss(key, why) => {
            let action_id = key.as_ref().map(|k| k.digest.to_string());
            let report = CacheReport::step(CacheOutcome::Miss, action_id.unwrap_or_default(), why);
            note(log, reports, report).await;
            Prepared::Run(key.map(|k| Box::new((spec, *k))))
        }
    }
}
