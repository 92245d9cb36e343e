//! A lease's working directory: the inputs materialised, dependency caches
//! restored, and the environment the step (and its checks) run with.

use std::path::{Path, PathBuf};

use buildfleet_model::{CacheReport, Lease};

use super::log::LogSender;
use super::{note, ShardContext, ShardError};
use crate::caching::dependency::{self, Keyed};
use crate::caching::platform;
use crate::step_users::Identity;

/// What the step runs with.
pub struct Workspace {
    pub env: Vec<(String, String)>,
    /// Dependency caches whose exact key missed: saved if the step succeeds.
    pub to_save: Vec<Keyed>,
    /// The split items, one per line, beside (not inside) the directory.
    pub items_file: Option<PathBuf>,
}

impl Workspace {
    /// Removes what was written beside the working directory.
    pub async fn tidy(&self) {
        if let Some(f) = &self.items_file {
            if let Err(e) = tokio::fs::remove_file(f).await {
                tracing::warn!(file = %f.display(), error = %e, "item list not removed");
            }
        }
    }
}

/// Materialises the lease's input root into `dir`, restores the lease's dependency caches
/// and builds the environment: the lease's variables, its secrets (only
/// ever in the process, never in a record), one `BUILDFLEET_CACHE_<NAME>`
/// per cache and the item list. With a step user, the directory is handed
/// to it last, and the environment says who it is (the lease's variables
/// win).
pub async fn prepare(
    ctx: &ShardContext,
    lease: &Lease,
    dir: &Path,
    user: Option<&Identity>,
    log: &mut LogSender,
    reports: &mut Vec<CacheReport>,
) -> Result<Workspace, ShardError> {
    let root = lease.input_root;
    let materialised = ctx.cas.materialise_with(&root, dir, ctx.local.as_ref());
    let stats = buildfleet_trace::phase("materialise", materialised)
        .await
        .map_err(|source| ShardError::Materialise { root, source })?;
    tracing::debug!(?stats, "inputs materialised");
    if stats.changed_in_local_cache > 0 {
        let first = stats.first_changed.clone().unwrap_or_default();
        log.system(format!(
            "{} input file(s) (first: {}) had changed in the runner's local cache since they were stored — an earlier step wrote to a linked input — and were fetched again from the cache",
            stats.changed_in_local_cache,
            first.display()
        ))
        .await;
    }
    if stats.copied_files > 0 {
        log.system(format!(
            "{} input file(s) copied instead of hard-linked from the runner's cache (another filesystem?)",
            stats.copied_files
        ))
        .await;
    }
    for received in &lease.artifacts {
        let a = &received.artifact;
        let placed =
            buildfleet_trace::phase("materialise artifact", super::place::place(ctx, dir, a))
                .await
                .map_err(|source| ShardError::Artifact {
                    step: received.step.clone(),
                    source,
                })?;
        let mut line = format!(
            "artifact {} ({} {}) from `{}`",
            a.path,
            a.kind.name(),
            a.digest,
            received.step
        );
        if placed.copied > 0 {
            line.push_str(&format!(
                "; {} file(s) copied instead of hard-linked (no local cache, or another filesystem)",
                placed.copied
            ));
        }
        if placed.changed > 0 {
            line.push_str(&format!(
                "; {} file(s) of it had changed in the runner's local cache since they were stored (an earlier step wrote to them) and were fetched again",
                placed.changed
            ));
        }
        if placed.replaced_input {
            line.push_str("; it replaces what the inputs had at that path");
        }
        log.system(line).await;
    }
    let mut env: Vec<(String, String)> = lease
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(lease.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut to_save = Vec::new();
    for spec in &lease.caches {
        let keyed = dependency::key(spec, dir, &platform(), &lease.project)
            .map_err(ShardError::CacheKey)?;
        let restoring = dependency::restore(&ctx.cas, ctx.local.as_ref(), &keyed, dir);
        let (report, restored) = buildfleet_trace::phase("dependency restore", restoring).await;
        note(log, reports, report).await;
        env.push((
            dependency::env_name(&spec.name),
            restored.env_value().to_owned(),
        ));
        if restored != dependency::Restored::Exact {
            to_save.push(keyed);
        }
    }
    let mut items_file = None;
    if !lease.items.is_empty() {
        let file = ctx.work_root.join(format!("{}.items", lease.lease_id));
        let mut text = lease.items.join("\n");
        text.push('\n');
        tokio::fs::write(&file, text)
            .await
            .map_err(|source| ShardError::ItemList {
                path: file.clone(),
                source,
            })?;
        env.push((
            "BUILDFLEET_SHARD_ITEMS_FILE".to_owned(),
            file.display().to_string(),
        ));
        log.system(format!(
            "split: {} item(s) in this shard",
            lease.items.len()
        ))
        .await;
        items_file = Some(file);
    }
    if let Some(user) = user {
        let who = super::handover::hand_over(dir, user)
            .await
            .map_err(|source| ShardError::HandOver {
                path: dir.to_owned(),
                uid: user.uid,
                source,
            })?;
        env.splice(0..0, who);
    }
    Ok(Workspace {
        env,
        to_save,
        items_file,
    })
}
