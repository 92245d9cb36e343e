//! Dependency caches: restore `paths` before the step from the entry keyed by
//! the `key_files`' contents (or a `restore:` fallback), save them after the
//! step succeeds. A failed save never changes the step's result, but it is
//! reported as `cache-save-failed`.

use buildfleet_model::{CacheName, CacheOutcome, CacheReport};
use std::path::Path;

use buildfleet_cache::{
    CasClient, Completeness, Digest, DirectoryListing, Ignores, IndexEntry, LocalCas, Snapshot,
};

use super::explain;
use super::records::Manifest;
use super::CachingError;

pub use buildfleet_model::CacheSpec;

/// A cache with its key computed from the files in a working directory.
#[derive(Debug, Clone)]
pub struct Keyed {
    pub spec: CacheSpec,
    pub platform: String,
    /// Entries are the project's own: one project's entry is never
    /// another's `restore:` fallback (a planted `node_modules`).
    pub project: String,
    /// What the key was computed from (paths empty until saved).
    pub manifest: Manifest,
    /// `{name}/{version}/{hash}`, the form `restore:` prefixes match.
    pub key: String,
}

/// How a restore went, for the step's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    Exact,
    Fallback,
    Nothing,
}

impl Restored {
    /// The value of `BUILDFLEET_CACHE_<NAME>`, so a step can skip its
    /// install on an exact hit.
    pub fn env_value(self) -> &'static str {
        match self {
            Restored::Exact => "hit",
            Restored::Fallback => "fallback",
            Restored::Nothing => "miss",
        }
    }
}

/// `BUILDFLEET_CACHE_` + the name upper-cased with other characters as `_`.
pub fn env_name(cache: &str) -> String {
    let tail: String = cache
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BUILDFLEET_CACHE_{tail}")
}

impl Keyed {
    fn index_key(&self) -> String {
        self.index_prefix(&self.key)
    }

    /// `deps/<length>:<project>/<platform>/…`: the length keeps a project
    /// named `a/linux` from reaching into project `a`'s keys.
    fn index_prefix(&self, prefix: &str) -> String {
        format!(
            "deps/{}:{}/{}/{prefix}",
            self.project.len(),
            self.project,
            self.platform
        )
    }
}

/// Hashes the key files. A missing key file is an error: the key would
/// otherwise silently cover less than the pipeline says.
pub fn key(
    spec: &CacheSpec,
    work_dir: &Path,
    platform: &str,
    project: &str,
) -> Result<Keyed, CachingError> {
    let mut key_files = Vec::with_capacity(spec.key_files.len());
    for rel in &spec.key_files {
        let path = crate::confine::within(work_dir, rel, crate::confine::Last::Follow)?;
        let data = std::fs::read(path).map_err(|source| CachingError::KeyFile {
            cache: spec.name.clone(),
            file: rel.clone(),
            source,
        })?;
        key_files.push((rel.clone(), Digest::of(&data)));
    }
    let manifest = Manifest {
        name: spec.name.clone(),
        version: spec.version.clone(),
        platform: platform.to_owned(),
        key_files,
        paths: Vec::new(),
    };
    let hash = Digest::of(&manifest.encode()).to_hex();
    let version = if spec.version.is_empty() {
        "-"
    } else {
        &spec.version
    };
    Ok(Keyed {
        key: format!("{}/{version}/{}", spec.name, &hash[..32]),
        spec: spec.clone(),
        platform: platform.to_owned(),
        project: project.to_owned(),
        manifest,
    })
}

/// The entry a restore would use, and the report describing it.
pub struct Found {
    pub report: CacheReport,
    pub restored: Restored,
    pub manifest: Option<Manifest>,
}

/// Looks the key up (exact, then each `restore:` prefix) without touching
/// the working directory; `buildfleet cache explain` shows exactly this.
pub async fn find(cas: &CasClient, keyed: &Keyed) -> Found {
    let prefixes: Vec<String> = keyed
        .spec
        .restore
        .iter()
        .map(|p| keyed.index_prefix(p))
        .collect();
    let report = |outcome, detail: String| CacheReport {
        cache: CacheName::Dependency(keyed.spec.name.clone()),
        outcome,
        key: keyed.key.clone(),
        detail,
    };
    let miss = |detail: String| Found {
        report: report(CacheOutcome::Miss, detail),
        restored: Restored::Nothing,
        manifest: None,
    };
    let hit = match cas
        .index_lookup(&keyed.index_key(), &prefixes, Completeness::Required)
        .await
    {
        Ok(hit) => hit,
        Err(e) => return miss(format!("cache lookup failed: {e}")),
    };
    let Some(hit) = hit else {
        return miss(explain_miss(cas, keyed).await);
    };
    let manifest = match Manifest::decode(&hit.entry.payload) {
        Ok(m) => m,
        Err(e) => return miss(format!("entry {} unusable: {e}", hit.entry.key)),
    };
    let user_key = hit
        .entry
        .key
        .strip_prefix(&keyed.index_prefix(""))
        .unwrap_or(&hit.entry.key)
        .to_owned();
    match hit.matched_prefix {
        None => Found {
            report: report(CacheOutcome::Hit, hit.entry.provenance.describe()),
            restored: Restored::Exact,
            manifest: Some(manifest),
        },
        Some(prefix) => {
            let user_prefix = prefix
                .strip_prefix(&keyed.index_prefix(""))
                .unwrap_or(&prefix);
            let why = explain_miss(cas, keyed).await;
            Found {
                report: report(
                    CacheOutcome::Fallback,
                    format!(
                        "exact key missed ({why}); restored {user_key} via `restore: {user_prefix}`, {}",
                        hit.entry.provenance.describe()
                    ),
                ),
                restored: Restored::Fallback,
                manifest: Some(manifest),
            }
        }
    }
}

/// Restores the best entry into the working directory. Never fails the
/// step: a lookup or restore problem is a miss that says what went wrong,
/// and a half-restored path is removed rather than left behind.
pub async fn restore(
    cas: &CasClient,
    local: Option<&LocalCas>,
    keyed: &Keyed,
    work_dir: &Path,
) -> (CacheReport, Restored) {
    let found = find(cas, keyed).await;
    let Some(manifest) = &found.manifest else {
        return (found.report, found.restored);
    };
    if let Err(e) = materialise_paths(cas, local, manifest, &keyed.spec.paths, work_dir).await {
        let report = CacheReport {
            outcome: CacheOutcome::Miss,
            detail: format!("restore failed, running without it: {e}"),
            ..found.report
        };
        return (report, Restored::Nothing);
    }
    (found.report, found.restored)
}

async fn materialise_paths(
    cas: &CasClient,
    local: Option<&LocalCas>,
    stored: &Manifest,
    wanted: &[String],
    work_dir: &Path,
) -> Result<(), CachingError> {
    for (path, root) in &stored.paths {
        if !wanted.contains(path) {
            continue;
        }
        // The restore writes as the runner: never through a link that
        // leaves the work directory (a link at `dest` itself is replaced).
        let dest = crate::confine::within(work_dir, path, crate::confine::Last::Replace)?;
        let result = async {
            if tokio::fs::symlink_metadata(&dest).await.is_ok() {
                remove(&dest).await?;
            }
            cas.materialise_with(root, &dest, local)
                .await
                .map(|_| ())
                .map_err(CachingError::cache(format!("`{path}`")))
        }
        .await;
        if let Err(e) = result {
            // A partial tree is worse than none: the step would trust it.
            let left = match remove(&dest).await {
                Ok(()) => return Err(e),
                Err(cleanup) => {
                    let still_there = tokio::fs::symlink_metadata(&dest).await.is_ok();
                    Some((Box::new(cleanup), still_there))
                }
            };
            return Err(CachingError::Partial {
                failed: Box::new(e),
                path: path.clone(),
                left,
            });
        }
    }
    Ok(())
}

async fn remove(path: &Path) -> Result<(), CachingError> {
    let meta = tokio::fs::symlink_metadata(path)
        .await
        .map_err(|source| CachingError::Inspect {
            path: path.to_owned(),
            source,
        })?;
    let result = if meta.is_dir() {
        tokio::fs::remove_dir_all(path).await
    } else {
        tokio::fs::remove_file(path).await
    };
    result.map_err(|source| CachingError::Clear {
        path: path.to_owned(),
        source,
    })
}

/// Compares against the newest entry of the same cache on this platform.
async fn explain_miss(cas: &CasClient, keyed: &Keyed) -> String {
    let prefix = keyed.index_prefix(&format!("{}/", keyed.spec.name));
    match cas
        .index_lookup("", &[prefix], Completeness::Optional)
        .await
    {
        Ok(Some(hit)) => match Manifest::decode(&hit.entry.payload) {
            Ok(old) => explain::dependency_miss(&old, &keyed.manifest),
            Err(e) => format!("the earlier entry is unreadable: {e}"),
        },
        Ok(None) => format!(
            "no earlier entry for cache `{}` on {}",
            keyed.spec.name, keyed.platform
        ),
        Err(e) => format!("no explanation: history lookup failed: {e}"),
    }
}

/// Saves the paths under the exact key; with a local cache, the saved files
/// are adopted into it so the next restore on this runner links them.
pub async fn save(
    cas: &CasClient,
    local: Option<&LocalCas>,
    keyed: &Keyed,
    work_dir: &Path,
) -> CacheReport {
    let report = |outcome, detail: String| CacheReport {
        cache: CacheName::Dependency(keyed.spec.name.clone()),
        outcome,
        key: keyed.key.clone(),
        detail,
    };
    match save_paths(cas, local, keyed, work_dir).await {
        Ok(summary) => report(CacheOutcome::Saved, summary),
        Err(e) => report(CacheOutcome::SaveFailed, e.to_string()),
    }
}

async fn save_paths(
    cas: &CasClient,
    local: Option<&LocalCas>,
    keyed: &Keyed,
    work_dir: &Path,
) -> Result<String, CachingError> {
    let mut manifest = keyed.manifest.clone();
    let (mut files, mut bytes) = (0u64, 0u64);
    for rel in &keyed.spec.paths {
        // The runner reads what the step's user may not: only what is
        // really inside the work directory is saved.
        let dir = crate::confine::within(work_dir, rel, crate::confine::Last::Follow)?;
        if !dir.is_dir() {
            return Err(CachingError::NotADirectory(rel.clone()));
        }
        let snap_dir = dir.clone();
        let snap = tokio::task::spawn_blocking(move || {
            buildfleet_cache::snapshot_with(&snap_dir, Ignores::None)
        })
        .await
        .map_err(|e| CachingError::Snapshot {
            path: rel.clone(),
            what: format!("did not finish: {e}"),
        })?
        .map_err(|e| CachingError::Snapshot {
            path: rel.clone(),
            what: format!("failed: {e}"),
        })?;
        cas.upload_snapshot(&snap)
            .await
            .map_err(CachingError::cache(format!("upload of `{rel}` failed")))?;
        files += snap.file_count;
        bytes += snap.total_bytes;
        manifest.paths.push((rel.clone(), snap.root));
        if let Some(local) = local.cloned() {
            let (adopted, failed) = tokio::task::spawn_blocking(move || adopt(&local, &dir, &snap))
                .await
                .unwrap_or((0, 1));
            tracing::debug!(path = %rel, adopted, "saved files adopted into the local cache");
            if failed > 0 {
                tracing::warn!(path = %rel, failed, "saved files not adopted into the local cache; the next restore downloads them");
            }
        }
    }
    let entry = IndexEntry {
        key: keyed.index_key(),
        payload: manifest.encode(),
        blobs: Vec::new(),
        trees: manifest.paths.iter().map(|(_, d)| *d).collect(),
        created_unix_ms: 0,
        provenance: Default::default(),
    };
    cas.index_put(&entry)
        .await
        .map_err(CachingError::cache("could not record the entry"))?;
    Ok(format!("{files} files, {bytes} bytes"))
}

/// Adds every file of a saved tree to the local cache; returns how many
/// were adopted and how many could not be (each failure is logged by the
/// local cache, and costs only a download later).
fn adopt(local: &LocalCas, dir: &Path, snap: &Snapshot) -> (u64, u64) {
    let (mut adopted, mut failed) = (0, 0);
    let mut queue = vec![(snap.root, dir.to_path_buf())];
    while let Some((digest, path)) = queue.pop() {
        let listing = match snap.source(&digest).map(|s| s.read()) {
            Some(Ok(bytes)) => match DirectoryListing::decode(&digest, &bytes) {
                Ok(l) => l,
                Err(_) => {
                    failed += 1;
                    continue;
                }
            },
            _ => {
                failed += 1;
                continue;
            }
        };
        for f in &listing.files {
            if local.contains(&f.digest, f.mode) {
                continue;
            }
            match local.insert_file(&path.join(&f.name), &f.digest, f.mode) {
                Ok(_) => adopted += 1,
                Err(e) => {
                    tracing::debug!(file = %path.join(&f.name).display(), error = %e, "not adopted");
                    failed += 1;
                }
            }
        }
        for d in listing.directories {
            queue.push((d.digest, path.join(&d.name)));
        }
    }
    (adopted, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CacheSpec {
        CacheSpec {
            name: "deps".into(),
            key_files: vec!["requirements.txt".into()],
            paths: vec![".venv".into()],
            version: "1".into(),
            restore: vec!["deps/1/".into()],
        }
    }

    #[test]
    fn key_depends_on_key_file_contents_version_and_platform() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "a==1\n").unwrap();
        let a = key(&spec(), dir.path(), "linux-x86_64", "p").unwrap();
        assert!(a.key.starts_with("deps/1/"), "{}", a.key);
        assert_eq!(
            key(&spec(), dir.path(), "linux-x86_64", "p").unwrap().key,
            a.key
        );
        assert_ne!(
            key(&spec(), dir.path(), "linux-aarch64", "p").unwrap().key,
            a.key
        );
        let v2 = CacheSpec {
            version: "2".into(),
            ..spec()
        };
        assert!(key(&v2, dir.path(), "linux-x86_64", "p")
            .unwrap()
            .key
            .starts_with("deps/2/"));
        std::fs::write(dir.path().join("requirements.txt"), "a==2\n").unwrap();
        assert_ne!(
            key(&spec(), dir.path(), "linux-x86_64", "p").unwrap().key,
            a.key
        );
    }

    #[test]
    fn a_missing_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = key(&spec(), dir.path(), "linux-x86_64", "p").unwrap_err();
        assert!(matches!(&err, CachingError::KeyFile { file, .. } if file == "requirements.txt"));
        assert!(
            err.to_string().contains("key file `requirements.txt`"),
            "{err}"
        );
    }

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("node-deps.v2"), "BUILDFLEET_CACHE_NODE_DEPS_V2");
        assert_eq!(Restored::Exact.env_value(), "hit");
    }
}
