//! Declared outputs: a step that ends without producing what it promised
//! has not succeeded (a `docker push` that exited 0 and uploaded nothing).
//! Each output must exist; each is uploaded to the cache and its digest logged.

use std::path::Path;

use buildfleet_cache::{CasClient, Digest};

/// One uploaded output, for the shard's log and the action cache.
pub struct Uploaded {
    pub path: String,
    /// The file's digest, or the directory's root `Directory` digest.
    pub digest: Digest,
    pub kind: OutputKind,
}

pub enum OutputKind {
    File {
        executable: bool,
    },
    /// `tree` is the digest of the REAPI `Tree` message for the directory.
    Directory {
        tree: Digest,
    },
}

impl Uploaded {
    /// The output as dependent steps receive it.
    pub fn artifact(&self) -> buildfleet_model::Artifact {
        buildfleet_model::Artifact {
            path: self.path.clone(),
            digest: self.digest,
            kind: match self.kind {
                OutputKind::File { executable } => {
                    buildfleet_model::ArtifactKind::File { executable }
                }
                OutputKind::Directory { .. } => buildfleet_model::ArtifactKind::Directory,
            },
        }
    }
}

/// The outputs a reused result vouches for, as dependent steps receive them.
pub fn artifacts_of(result: &buildfleet_cache::StepResult) -> Vec<buildfleet_model::Artifact> {
    let files = result
        .output_files
        .iter()
        .map(|f| buildfleet_model::Artifact {
            path: f.path.clone(),
            digest: f.digest,
            kind: buildfleet_model::ArtifactKind::File {
                executable: f.executable,
            },
        });
    let dirs = result
        .output_directories
        .iter()
        .map(|d| buildfleet_model::Artifact {
            path: d.path.clone(),
            digest: d.root,
            kind: buildfleet_model::ArtifactKind::Directory,
        });
    files.chain(dirs).collect()
}

impl OutputKind {
    pub fn name(&self) -> &'static str {
        match self {
            OutputKind::File { .. } => "file",
            OutputKind::Directory { .. } => "directory",
        }
    }
}

/// The failure class of a declared output that is not there.
pub const MISSING_OUTPUT: &str = "missing-output";

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{MISSING_OUTPUT}: declared output `{0}` does not exist when the step ended")]
    Missing(String),
    #[error("output `{path}` could not be uploaded: {reason}")]
    Upload { path: String, reason: String },
    #[error("output `{path}`: the cache does not hold {digest} after the upload; the stored output differs from this one or was lost")]
    NotStored { path: String, digest: Digest },
    /// The output is (or passes through) a link out of the work directory:
    /// the runner would upload what the step's own user may not read.
    #[error("output {0}")]
    Confined(#[from] crate::confine::ConfineError),
}

/// Checks every declared output exists (all are checked before any upload,
/// so the error names every missing one), then uploads them.
pub async fn collect(
    cas: &CasClient,
    workdir: &Path,
    outputs: &[String],
) -> Result<Vec<Uploaded>, OutputError> {
    let missing: Vec<&str> = outputs
        .iter()
        .filter(|o| std::fs::symlink_metadata(workdir.join(o)).is_err())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(OutputError::Missing(missing.join("`, `")));
    }
    let mut uploaded = Vec::with_capacity(outputs.len());
    for out in outputs {
        let path = crate::confine::within(workdir, out, crate::confine::Last::Follow)?;
        let fail = |reason: String| OutputError::Upload {
            path: out.clone(),
            reason,
        };
        let (digest, kind) = if path.is_dir() {
            let snap = buildfleet_cache::snapshot(&path).map_err(|e| fail(e.to_string()))?;
            cas.upload_snapshot(&snap)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let tree = buildfleet_cache::tree_message(&snap).map_err(|e| fail(e.to_string()))?;
            let tree = cas
                .upload_blob(tree)
                .await
                .map_err(|e| fail(e.to_string()))?;
            (snap.root, OutputKind::Directory { tree })
        } else {
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| fail(e.to_string()))?;
            // Streamed: an output may be larger than the runner's memory.
            let digest = cas
                .upload_file(&path)
                .await
                .map_err(|e| fail(e.to_string()))?;
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            (digest, OutputKind::File { executable })
        };
        uploaded.push(Uploaded {
            path: out.clone(),
            digest,
            kind,
        });
    }
    confirm(cas, &uploaded).await?;
    Ok(uploaded)
}

/// Asks the cache for every digest we computed. The cache stores a blob
/// only under the digest it verified itself, so presence under ours means
/// it holds exactly our bytes; absence means a mismatch or a lost upload.
async fn confirm(cas: &CasClient, uploaded: &[Uploaded]) -> Result<(), OutputError> {
    let mut wanted: Vec<(&str, Digest)> = Vec::new();
    for u in uploaded {
        wanted.push((&u.path, u.digest));
        if let OutputKind::Directory { tree } = u.kind {
            wanted.push((&u.path, tree));
        }
    }
    let digests: Vec<Digest> = wanted.iter().map(|(_, d)| *d).collect();
    let missing = cas
        .find_missing(&digests)
        .await
        .map_err(|e| OutputError::Upload {
            path: wanted.first().map_or(String::new(), |w| w.0.to_owned()),
            reason: format!("the cache could not confirm the upload: {e}"),
        })?;
    match wanted.iter().find(|(_, d)| missing.contains(d)) {
        Some((path, digest)) => Err(OutputError::NotStored {
            path: (*path).to_owned(),
            digest: *digest,
        }),
        None => Ok(()),
    }
}
