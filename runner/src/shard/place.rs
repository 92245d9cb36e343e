//! Puts artifacts — outputs of earlier steps, or a reused result's own
//! outputs for its checks — at their paths in a working directory. Files
//! come from the runner's local CAS by hard link, directories through the
//! same materialisation as the inputs, so a warm runner copies nothing.
//! Whatever the input tree had at a path is replaced, and said.

use std::path::{Path, PathBuf};

use buildfleet_cache::{FileMode, Placement, Probe};
use buildfleet_model::{Artifact, ArtifactKind};

use super::ShardContext;

/// Why an artifact could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error("artifact: {0}")]
    Outside(#[from] crate::confine::ConfineError),
    #[error("artifact {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: Box<buildfleet_cache::CacheError>,
    },
    #[error("artifact {path}: {source}")]
    Local {
        path: String,
        #[source]
        source: Box<buildfleet_cache::LocalCasError>,
    },
    #[error("artifact {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What placing one artifact did, for the shard's log.
pub struct Placed {
    /// It replaced something the input tree had at its path.
    pub replaced_input: bool,
    /// Files copied rather than hard-linked (another filesystem, no local
    /// cache).
    pub copied: u64,
    /// Files whose local cache entry had changed since it was stored (an
    /// earlier step wrote to it): dropped, and fetched again.
    pub changed: u64,
}

/// A stored path must stay inside the working directory, whatever the
/// cache or a runner reported, and so must every link on its way there (an
/// input tree may hold `vendor -> /etc`).
pub fn inside(dir: &Path, rel: &str) -> Result<PathBuf, PlaceError> {
    Ok(crate::confine::within(
        dir,
        rel,
        crate::confine::Last::Replace,
    )?)
}

/// Places one artifact at its path under `dir`.
pub async fn place(ctx: &ShardContext, dir: &Path, a: &Artifact) -> Result<Placed, PlaceError> {
    let path = inside(dir, &a.path)?;
    let io = |source| PlaceError::Io {
        path: a.path.clone(),
        source,
    };
    let replaced_input = match tokio::fs::symlink_metadata(&path).await {
        Ok(meta) if meta.is_dir() => {
            tokio::fs::remove_dir_all(&path).await.map_err(io)?;
            true
        }
        Ok(_) => {
            tokio::fs::remove_file(&path).await.map_err(io)?;
            true
        }
        Err(_) => false,
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let cache = |source| PlaceError::Cache {
        path: a.path.clone(),
        source: Box::new(source),
    };
    let mut changed = 0;
    let copied = match a.kind {
        ArtifactKind::Directory => {
            let stats = ctx
                .cas
                .materialise_with(&a.digest, &path, ctx.local.as_ref())
                .await
                .map_err(cache)?;
            changed = stats.changed_in_local_cache;
            stats.copied_files
        }
        ArtifactKind::File { executable } => {
            let mode = FileMode::of(executable);
            match ctx.local.as_ref() {
                Some(local) => {
                    let probe = local.probe(&a.digest, mode);
                    changed = u64::from(probe == Probe::Changed);
                    if probe != Probe::Intact {
                        let bytes = ctx.cas.read_blob(&a.digest).await.map_err(cache)?;
                        local
                            .insert_bytes(&a.digest, &bytes, mode)
                            .map_err(|source| PlaceError::Local {
                                path: a.path.clone(),
                                source: Box::new(source),
                            })?;
                    }
                    let placed = local.link_into(&a.digest, mode, &path).map_err(|source| {
                        PlaceError::Local {
                            path: a.path.clone(),
                            source: Box::new(source),
                        }
                    })?;
                    u64::from(placed == Placement::Copied)
                }
                None => {
                    let bytes = ctx.cas.read_blob(&a.digest).await.map_err(cache)?;
                    write_file(&path, &bytes, executable).await.map_err(io)?;
                    1
                }
            }
        }
    };
    Ok(Placed {
        replaced_input,
        copied,
        changed,
    })
}

async fn write_file(path: &Path, bytes: &[u8], executable: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::write(path, bytes).await?;
    let mode = if executable { 0o755 } else { 0o644 };
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_paths_cannot_leave_the_working_directory() {
        let work = tempfile::tempdir().unwrap();
        let dir = &std::fs::canonicalize(work.path()).unwrap();
        assert_eq!(inside(dir, "dist/a").unwrap(), dir.join("dist/a"));
        std::os::unix::fs::symlink("/etc", dir.join("vendor")).unwrap();
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "vendor/x"] {
            assert!(inside(dir, bad).is_err(), "{bad}");
        }
    }
}
