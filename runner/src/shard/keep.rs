//! Keeps a shard's artifacts: pins its declared outputs in the cache for
//! the run's retention, so a deploy can be re-done (`buildfleet rerun`)
//! after later builds have pushed them out of an LRU cache. A pin that
//! fails is said in the log — the step's result stands, but nobody is
//! left believing the artifact is kept.

use std::time::SystemTime;

use buildfleet_model::{Artifact, ArtifactKind, Lease};

use super::log::LogSender;
use super::ShardContext;

pub async fn pin(ctx: &ShardContext, lease: &Lease, artifacts: &[Artifact], log: &mut LogSender) {
    let Some(retention) = lease.artifact_retention else {
        return;
    };
    if artifacts.is_empty() {
        return;
    }
    let until = SystemTime::now() + retention;
    let (dirs, files): (Vec<&Artifact>, Vec<&Artifact>) = artifacts
        .iter()
        .partition(|a| a.kind == ArtifactKind::Directory);
    let digests = |list: Vec<&Artifact>| list.iter().map(|a| a.digest).collect::<Vec<_>>();
    let when = humantime::format_rfc3339_seconds(until);
    let (files, dirs) = (digests(files), digests(dirs));
    let pinning = ctx.cas.pin(&files, &dirs, until);
    let line = match buildfleet_trace::phase("pin artifacts", pinning).await {
        Ok((_, 0)) => format!("artifacts pinned in the cache until {when}"),
        Ok((_, missing)) => format!(
            "WARNING: {missing} artifact blob(s) were not in the cache to pin until {when}; a re-run may not find them"
        ),
        Err(e) => format!(
            "WARNING: artifacts not pinned in the cache ({e}); they may be evicted before {when}"
        ),
    };
    log.system(line).await;
}
