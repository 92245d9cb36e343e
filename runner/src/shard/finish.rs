//! After the command: the step's other promises — declared outputs
//! present and confirmed by the cache, `verify:` passing — then what is
//! saved for later runs. The same promises hold for an exit the quarantine
//! may mute and, for `verify:`, for a result reused from the step cache.

use std::path::Path;

use buildfleet_cache::StepResult;
use buildfleet_model::{CacheReport, Failure, Lease, State};
use tokio::sync::watch;

use super::log::LogSender;
use super::{note, ShardContext};
use crate::caching::action::{ActionKey, ActionSpec};
use crate::caching::dependency;
use crate::exec::ExecSpec;
use crate::outputs::{OutputError, Uploaded};
use crate::shard::workspace::Workspace;
use crate::verify::NoLongerHolds;

/// A promise of the step that did not hold: the reason it fails.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyFailed),
}

/// Outputs collected and confirmed, then every `verify:` check.
pub async fn contract(
    ctx: &ShardContext,
    lease: &Lease,
    base: &ExecSpec,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Result<Vec<Uploaded>, Broken> {
    let uploaded = match crate::outputs::collect(&ctx.cas, &base.cwd, &lease.outputs).await {
        Ok(u) => u,
        Err(e) => {
            log.system(e.to_string()).await;
            return Err(e.into());
        }
    };
    for u in &uploaded {
        log.system(format!(
            "output {} ({}) stored as {} (confirmed by the cache)",
            u.path,
            u.kind.name(),
            u.digest
        ))
        .await;
    }
    crate::verify::run(&lease.verify, base, cancel, log).await?;
    Ok(uploaded)
}

/// Exit 0: the contract, then dependency caches and the step result saved.
#[allow(clippy::too_many_arguments)]
pub async fn success(
    ctx: &ShardContext,
    lease: &Lease,
    base: &ExecSpec,
    ws: &Workspace,
    action: Option<&(ActionSpec, ActionKey)>,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
    reports: &mut Vec<CacheReport>,
    outputs: &mut Vec<buildfleet_model::Artifact>,
) -> State {
    let checked = buildfleet_trace::phase("upload", contract(ctx, lease, base, cancel, log)).await;
    let uploaded = match checked {
        Ok(u) => {
            outputs.extend(u.iter().map(Uploaded::artifact));
            super::keep::pin(ctx, lease, outputs, log).await;
            u
        }
        Err(broken) => {
            return State::Failed(Failure {
                exit_code: Some(0),
                signal: None,
                reason: broken.to_string(),
            });
        }
    };
    let saving = async {
        for keyed in &ws.to_save {
            let r = dependency::save(&ctx.cas, ctx.local.as_ref(), keyed, &base.cwd).await;
            note(log, reports, r).await;
        }
        if let Some((spec, key)) = action {
            let r = super::cached::store(&ctx.cas, spec, key, &uploaded, log).await;
            note(log, reports, r).await;
        }
    };
    buildfleet_trace::phase("save", saving).await;
    State::Succeeded
}

/// A reused result whose step declares `verify:`: the checks run against
/// the world now, in the inputs with the cached outputs and dependency
/// caches restored. A check that fails means the result no longer holds.
pub async fn verify_hit(
    ctx: &ShardContext,
    lease: &Lease,
    result: &StepResult,
    base: &ExecSpec,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> State {
    if let Err(e) = restore_outputs(ctx, &base.cwd, result).await {
        let reason = NoLongerHolds::OutputsGone(e).to_string();
        log.system(reason.clone()).await;
        return State::failed(reason);
    }
    log.system(
        "cached: the result is reused, but `verify:` checks the world, so it runs now".to_owned(),
    )
    .await;
    match crate::verify::run(&lease.verify, base, cancel, log).await {
        Ok(()) => State::Cached,
        Err(failed) => State::failed(NoLongerHolds::Check(failed).to_string()),
    }
}

/// Puts a reused result's outputs back for its checks.
async fn restore_outputs(
    ctx: &ShardContext,
    dir: &Path,
    result: &StepResult,
) -> Result<(), super::place::PlaceError> {
    for a in crate::outputs::artifacts_of(result) {
        super::place::place(ctx, dir, &a).await?;
    }
    Ok(())
}
