//! After the command: the step's other promises — declared outputs
//! present and confirmed by the cache, `verify:` passing — then what is
//! saved for later runs. The same promises hold for an exit the quarantine
//! may mute and, for `verify:`, for a result reused from the step cache.

use std::path::{Component, Path};

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
) -> State {
    let uploaded = match contract(ctx, lease, base, cancel, log).await {
        Ok(u) => u,
        Err(broken) => {
            return State::Failed(Failure {
                exit_code: Some(0),
                signal: None,
                reason: broken.to_string(),
            });
        }
    };
    for keyed in &ws.to_save {
        let r = dependency::save(&ctx.cas, ctx.local.as_ref(), keyed, &base.cwd).await;
        note(log, reports, r).await;
    }
    if let Some((spec, key)) = action {
        let r = super::cached::store(&ctx.cas, spec, key, &uploaded, log).await;
        note(log, reports, r).await;
    }
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

/// Why a cached result's outputs could not be put back for its checks.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("stored output path `{0}` is not inside the working directory")]
    Outside(String),
    #[error("output {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: Box<buildfleet_cache::CacheError>,
    },
    #[error("output {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A stored path must stay inside the working directory, whatever the
/// cache holds.
fn inside(dir: &Path, rel: &str) -> Result<std::path::PathBuf, RestoreError> {
    let p = Path::new(rel);
    if p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(dir.join(p))
    } else {
        Err(RestoreError::Outside(rel.to_owned()))
    }
}

async fn restore_outputs(
    ctx: &ShardContext,
    dir: &Path,
    result: &StepResult,
) -> Result<(), RestoreError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &str| {
        let path = path.to_owned();
        move |source| RestoreError::Io { path, source }
    };
    for f in &result.output_files {
        let path = inside(dir, &f.path)?;
        let bytes = ctx
            .cas
            .read_blob(&f.digest)
            .await
            .map_err(|source| RestoreError::Cache {
                path: f.path.clone(),
                source: Box::new(source),
            })?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io(&f.path))?;
        }
        // An input of the same name may be a read-only hard link.
        let _ = tokio::fs::remove_file(&path).await;
        tokio::fs::write(&path, &bytes).await.map_err(io(&f.path))?;
        let mode = if f.executable { 0o755 } else { 0o644 };
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .await
            .map_err(io(&f.path))?;
    }
    for d in &result.output_directories {
        let path = inside(dir, &d.path)?;
        ctx.cas
            .materialise_with(&d.root, &path, ctx.local.as_ref())
            .await
            .map_err(|source| RestoreError::Cache {
                path: d.path.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_cannot_leave_the_working_directory() {
        let dir = Path::new("/work/x");
        assert_eq!(
            inside(dir, "dist/app").unwrap(),
            Path::new("/work/x/dist/app")
        );
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            assert!(inside(dir, bad).is_err(), "{bad}");
        }
    }
}
