//! `buildfleet artifacts RUN [STEP] --out DIR`: downloads a run's
//! artifacts — every green shard's declared outputs, as the cache
//! confirmed them — to `DIR/STEP/PATH` (`DIR/STEP/SHARD/PATH` for a step
//! with several shards). Every blob is verified against its digest on the
//! way; a digest the cache no longer holds is an error naming it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use buildfleet_cache::CasClient;
use buildfleet_model::{ArtifactKind, RunStatus};

use crate::cli::ArtifactsArgs;

pub async fn download(args: ArtifactsArgs, trust: &buildfleet_trust::ClientTrust) -> Result<i32> {
    let mut coordinator = crate::wire::Coordinator::connect(&args.coordinator, trust).await?;
    let status = coordinator
        .get(&args.run)
        .await
        .with_context(|| format!("looking up run {}", args.run))?;
    if let Some(step) = &args.step {
        if !status.steps.iter().any(|s| &s.name == step) {
            let names: Vec<&str> = status.steps.iter().map(|s| s.name.as_str()).collect();
            eprintln!(
                "error: run {} has no step `{step}` (steps: {})",
                args.run,
                names.join(", ")
            );
            return Ok(crate::exit::USAGE);
        }
    }
    let cas = CasClient::connect_with(&args.cache, trust).await?;
    let count = fetch(&cas, &status, args.step.as_deref(), &args.out).await?;
    if count == 0 {
        eprintln!(
            "run {} has no artifacts{} (no green shard declared `outputs:`)",
            args.run,
            args.step
                .as_deref()
                .map(|s| format!(" from step `{s}`"))
                .unwrap_or_default()
        );
        return Ok(crate::exit::FAILED);
    }
    Ok(crate::exit::GREEN)
}

/// Writes the artifacts of `status` (of one step, if given) under `out`;
/// returns how many.
pub async fn fetch(
    cas: &CasClient,
    status: &RunStatus,
    step: Option<&str>,
    out: &Path,
) -> Result<usize> {
    let mut count = 0;
    for st in status
        .steps
        .iter()
        .filter(|s| step.is_none_or(|n| n == s.name))
    {
        let several = st.shards.len() > 1;
        for sh in st.shards.iter().filter(|sh| sh.state.is_green()) {
            for a in &sh.outputs {
                let mut dest = out.join(&st.name);
                if several {
                    dest.push(sh.index.to_string());
                }
                let dest = dest.join(&a.path);
                if !dest.starts_with(out) || a.path.split('/').any(|c| c == "..") {
                    bail!(
                        "artifact path `{}` of `{}` leaves {}",
                        a.path,
                        st.name,
                        out.display()
                    );
                }
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                match a.kind {
                    ArtifactKind::Directory => {
                        cas.materialise(&a.digest, &dest).await.with_context(|| {
                            format!("downloading directory {} ({})", a.path, a.digest)
                        })?;
                    }
                    ArtifactKind::File { executable } => {
                        use std::os::unix::fs::PermissionsExt;
                        let bytes = cas
                            .read_blob(&a.digest)
                            .await
                            .with_context(|| format!("downloading {} ({})", a.path, a.digest))?;
                        std::fs::write(&dest, &bytes)
                            .with_context(|| format!("writing {}", dest.display()))?;
                        let mode = if executable { 0o755 } else { 0o644 };
                        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
                    }
                }
                println!(
                    "{} ({} {}) from `{}`",
                    dest.display(),
                    a.kind.name(),
                    a.digest,
                    st.name
                );
                count += 1;
            }
        }
    }
    Ok(count)
}
