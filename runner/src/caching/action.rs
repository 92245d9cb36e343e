//! Step results: the action digest of a shard, looking it up, storing it,
//! and the history entry that later misses are explained against.

use std::collections::BTreeMap;

use buildfleet_cache::{CasClient, Completeness, Digest, IndexEntry, Listings, StepResult};
use buildfleet_model::{Lease, CONTEXT_VARS};
use bytes::Bytes;

use super::records::{ActionRecord, ACTION_SCHEMA};
use super::CachingError;

/// Variables that differ on every run by design; including them would make
/// every action unique and the cache useless.
const VOLATILE_ENV: &[&str] = &["BUILDFLEET_RUN_ID"];

/// Everything that decides a shard's result.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    pub project: String,
    pub step: String,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub input_root: Digest,
    pub input_globs: Vec<String>,
    pub shard_index: u32,
    pub shard_count: u32,
    pub outputs: Vec<String>,
    pub platform: String,
    pub verify: Vec<String>,
    pub secret_names: Vec<String>,
    /// The dependencies' outputs placed before the command, by path.
    pub artifacts: Vec<buildfleet_model::Artifact>,
    /// What its command runs against.
    pub services: Vec<buildfleet_model::Service>,
    /// It restores and saves dependency caches (its result is then the
    /// project's own, like those caches).
    pub saves_caches: bool,
}

/// A computed action: its digest, its record, and the directory blobs of the
/// input subset (which must be in the cache for later explanations).
#[derive(Debug, Clone)]
pub struct ActionKey {
    pub digest: Digest,
    pub record: ActionRecord,
    pub encoded: Bytes,
}

impl ActionSpec {
    /// The one way a shard's action is described: from its lease, the
    /// runner's and `cache explain`'s alike. Secret *names* count (a step
    /// given another secret is another action); their values never do.
    ///
    /// The run context's variables (`BUILDFLEET_COMMIT`, …) and the values
    /// given with `--var` count only for a step that names them — in
    /// `run`, `verify:`, its env or its services: a step that
    /// tags an image with `$BUILDFLEET_SHORT_SHA` is another action on
    /// every commit, while one that never mentions them is reused across
    /// commits when its inputs are the same. A script that reads them
    /// without the step naming them is not seen: name the variable in the
    /// step (see the README).
    pub fn for_shard(lease: &Lease, platform: String) -> ActionSpec {
        // Values that differ per run by design, which count only where named.
        let per_run = |k: &str| CONTEXT_VARS.contains(&k) || lease.run_vars.iter().any(|v| v == k);
        let names = |var: &str| {
            lease.command.contains(var)
                || lease.verify.iter().any(|v| v.command.contains(var))
                || lease
                    .env
                    .iter()
                    .any(|(k, v)| !per_run(k) && v.contains(var))
                || lease.services.iter().any(|s| {
                    s.command.contains(var) || s.ready.as_ref().is_some_and(|r| r.contains(var))
                })
        };
        let env = lease
            .env
            .iter()
            .filter(|(k, _)| !per_run(k) || names(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ActionSpec {
            project: lease.project.clone(),
            step: lease.step.clone(),
            command: lease.command.clone(),
            env,
            input_root: lease.input_root,
            input_globs: lease.inputs.clone(),
            shard_index: lease.shard_index,
            shard_count: lease.shard_count,
            outputs: lease.outputs.clone(),
            platform,
            // The commands decide what is checked; how often a check is
            // tried again does not change the result.
            verify: lease.verify.iter().map(|c| c.command.clone()).collect(),
            // A map's keys: sorted and unique.
            secret_names: lease.secrets.keys().cloned().collect(),
            // The content a step starts from is part of what decides its
            // result: another build's artifact is another action.
            artifacts: {
                let mut a: Vec<_> = lease.artifacts.iter().map(|s| s.artifact.clone()).collect();
                a.sort_by(|x, y| x.path.cmp(&y.path));
                a
            },
            services: lease.services.clone(),
            saves_caches: !lease.caches.is_empty(),
        }
    }

    /// The step-history key: one latest entry per project, step, shard
    /// layout and platform — the "nearest earlier entry" for explanations.
    pub fn history_key(&self) -> String {
        let project = if self.project.is_empty() {
            "default"
        } else {
            &self.project
        };
        format!(
            "history/{}/{project}/{}/{}of{}",
            self.platform, self.step, self.shard_index, self.shard_count
        )
    }
}

/// Computes the action digest. With `inputs:` globs the tree is narrowed to
/// the matching files, using listings only (no file contents are read).
pub async fn compute(cas: &CasClient, spec: &ActionSpec) -> Result<ActionKey, CachingError> {
    let input_root = if spec.input_globs.is_empty() {
        spec.input_root
    } else {
        let listings = cas
            .tree_listings(&spec.input_root)
            .await
            .map_err(CachingError::cache(format!(
                "could not list the input tree {}",
                spec.input_root
            )))?;
        narrow(cas, &listings, spec).await?
    };
    let env = spec
        .env
        .iter()
        .filter(|(k, _)| !VOLATILE_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let record = ActionRecord {
        schema: ACTION_SCHEMA,
        command: spec.command.clone(),
        env,
        input_root,
        input_globs: spec.input_globs.clone(),
        shard_index: spec.shard_index,
        shard_count: spec.shard_count,
        platform: spec.platform.clone(),
        outputs: spec.outputs.clone(),
        verify: spec.verify.clone(),
        secret_names: spec.secret_names.clone(),
        artifacts: spec.artifacts.clone(),
        services: spec.services.clone(),
        cache_project: match spec.saves_caches {
            true => spec.project.clone(),
            false => String::new(),
        },
    };
    let encoded = record.encode();
    Ok(ActionKey {
        digest: Digest::of(&encoded),
        record,
        encoded,
    })
}

async fn narrow(
    cas: &CasClient,
    listings: &Listings,
    spec: &ActionSpec,
) -> Result<Digest, CachingError> {
    let mut builder = globset::GlobSetBuilder::new();
    for g in &spec.input_globs {
        builder.add(globset::Glob::new(g).map_err(|source| CachingError::Glob {
            glob: g.clone(),
            source,
        })?);
    }
    let globs = builder.build().map_err(CachingError::Globs)?;
    let subset =
        buildfleet_cache::subset(listings, &spec.input_root, &globs).map_err(|source| {
            CachingError::Subset {
                root: spec.input_root,
                source: Box::new(source),
            }
        })?;
    // The subset's directories are new blobs; store them so a later miss can
    // be explained by walking this tree.
    let digests: Vec<Digest> = subset.directories.keys().copied().collect();
    let missing = cas
        .find_missing(&digests)
        .await
        .map_err(CachingError::cache("could not check input subset blobs"))?;
    for d in missing {
        if let Some(bytes) = subset.directories.get(&d) {
            cas.upload_blob(bytes.clone())
                .await
                .map_err(CachingError::cache(format!(
                    "could not store input subset directory {d}"
                )))?;
        }
    }
    Ok(subset.root)
}

/// The stored result, if complete. Lookup failures are reported, not
/// swallowed: the caller runs the step and says why the cache was skipped.
pub async fn lookup(cas: &CasClient, key: &ActionKey) -> Result<Option<StepResult>, CachingError> {
    cas.get_step_result(&key.digest)
        .await
        .map_err(CachingError::cache("action cache lookup failed"))
}

/// Stores a successful result and makes it the step's latest history entry.
pub async fn store(
    cas: &CasClient,
    spec: &ActionSpec,
    key: &ActionKey,
    result: &StepResult,
) -> Result<(), CachingError> {
    cas.upload_blob(key.encoded.clone())
        .await
        .map_err(CachingError::cache("could not store the action record"))?;
    cas.put_step_result(&key.digest, result)
        .await
        .map_err(CachingError::cache("could not store the step result"))?;
    cas.index_put(&IndexEntry {
        key: spec.history_key(),
        payload: key.encoded.clone(),
        blobs: Vec::new(),
        trees: vec![key.record.input_root],
        created_unix_ms: 0,
        provenance: Default::default(),
    })
    .await
    .map_err(CachingError::cache("could not record step history"))
}

/// What the action cache holds for a shard.
pub enum Found {
    /// A complete earlier result of this exact action.
    Hit(Box<ActionKey>, Box<StepResult>),
    /// Nothing to reuse, and why (what changed since the nearest earlier
    /// result, or what failed); the key when one could be computed.
    Miss(Option<Box<ActionKey>>, String),
}

/// Computes the action and looks it up, explaining a miss against the
/// step's history: what a runner decides before running a shard, and what
/// `cache explain` shows, from one function.
pub async fn find(cas: &CasClient, spec: &ActionSpec) -> Found {
    let key = match compute(cas, spec).await {
        Ok(key) => key,
        Err(e) => {
            return Found::Miss(
                None,
                format!("no action digest, so no reuse and no save: {e}"),
            )
        }
    };
    match lookup(cas, &key).await {
        Ok(Some(result)) => Found::Hit(Box::new(key), Box::new(result)),
        Ok(None) => {
            let why = match previous(cas, spec).await {
                Ok(Some(old)) => super::explain::action_miss(cas, &old, &key.record).await,
                Ok(None) => format!(
                    "no earlier result for step `{}` shard {}/{} of project `{}` on {}",
                    spec.step,
                    spec.shard_index,
                    spec.shard_count,
                    if spec.project.is_empty() {
                        "default"
                    } else {
                        &spec.project
                    },
                    spec.platform
                ),
                Err(e) => format!("no explanation: {e}"),
            };
            Found::Miss(Some(Box::new(key)), why)
        }
        Err(e) => Found::Miss(Some(Box::new(key)), e.to_string()),
    }
}

/// The latest stored record for this step shard, for explaining a miss.
pub async fn previous(
    cas: &CasClient,
    spec: &ActionSpec,
) -> Result<Option<ActionRecord>, CachingError> {
    let hit = cas
        .index_lookup(&spec.history_key(), &[], Completeness::Optional)
        .await
        .map_err(CachingError::cache("step history lookup failed"))?;
    match hit {
        None => Ok(None),
        Some(hit) => Ok(Some(ActionRecord::decode(&hit.entry.payload)?)),
    }
}
