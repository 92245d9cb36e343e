//! Materialising through a runner's [`LocalCas`]: files whose blobs the
//! runner already holds are hard-linked, not downloaded and written again;
//! only the rest is fetched (batched and verified as usual), stored in the
//! local cache, then linked. This is what makes a warm runner's restore of a
//! large dependency tree cost about what `cp -al` does (less, on the
//! 2-core runners: see BENCHMARKS.md).

use crate::tree::FileMode;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::link_tree::{link_tree, Outcome, Placed};
use super::local_cas::LocalCas;
use super::materialise::{io_error, make_symlinks, Layout, MaterialiseStats, PlannedFile};
use super::{CasClient, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES};
use crate::error::CacheError;
use buildfleet_model::digest::Digest;

/// One blob's destinations, by mode: each mode is its own cache entry.
#[derive(Debug, Clone)]
struct Wanted {
    digest: Digest,
    plain: Vec<PathBuf>,
    exec: Vec<PathBuf>,
}

impl Wanted {
    fn new(digest: Digest) -> Wanted {
        Wanted {
            digest,
            plain: Vec::new(),
            exec: Vec::new(),
        }
    }

    fn targets_mut(&mut self, mode: FileMode) -> &mut Vec<PathBuf> {
        match mode {
            FileMode::Executable => &mut self.exec,
            FileMode::Plain => &mut self.plain,
        }
    }

    /// The modes wanted, each with its destinations.
    fn variants(&self) -> impl Iterator<Item = (FileMode, &[PathBuf])> {
        [
            (FileMode::Plain, &self.plain[..]),
            (FileMode::Executable, &self.exec[..]),
        ]
        .into_iter()
        .filter(|(_, targets)| !targets.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.exec.is_empty()
    }
}

/// What fetching and placing the missing blobs did.
#[derive(Debug, Default)]
struct Tally {
    placed: Placed,
    fetched_blobs: u64,
    fetched_bytes: u64,
    /// Destinations still to fill: the entry vanished before linking.
    missing: Vec<Wanted>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.placed.merge(other.placed);
        self.fetched_blobs += other.fetched_blobs;
        self.fetched_bytes += other.fetched_bytes;
        self.missing.extend(other.missing);
    }
}

impl CasClient {
    /// [`CasClient::materialise`], through a local cache when one is given:
    /// blobs the cache holds are not fetched, fetched blobs are added to it,
    /// and every file is hard-linked from it (copied where linking fails,
    /// counted in [`MaterialiseStats::copied_files`] and logged). Linked
    /// files are read-only (0o555 / 0o444) and carry the cache's fixed
    /// mtime. Safe to run concurrently with other materialisations sharing
    /// the same cache.
    pub async fn materialise_with(
        &self,
        root: &Digest,
        dest: &Path,
        local: Option<&LocalCas>,
    ) -> Result<MaterialiseStats, CacheError> {
        let Some(local) = local else {
            return self.materialise(root, dest).await;
        };
        let Layout {
            dirs,
            symlinks,
            mut stats,
        } = self.layout(root, dest).await?;
        let distinct: HashSet<Digest> = dirs
            .iter()
            .flat_map(|d| d.files.iter().map(|f| f.digest))
            .collect();
        let placed_tree = link_tree(local, dirs).await?;
        let missing = group_by_digest(placed_tree.missing);
        stats.local_blobs = (distinct.len() - missing.len()) as u64;
        let mut tally = Tally {
            placed: placed_tree.placed,
            missing,
            ..Tally::default()
        };
        // A second round covers entries that vanished between insert and
        // link (dropped by a concurrent check); a third would mean something
        // keeps removing them.
        for _ in 0..2 {
            if tally.missing.is_empty() {
                break;
            }
            let missing = std::mem::take(&mut tally.missing);
            let round = self.fetch_and_link(local, missing).await?;
            tally.merge(round);
        }
        if !tally.missing.is_empty() {
            return Err(CacheError::Internal(format!(
                "{} local cache entries vanished twice while being linked",
                tally.missing.len()
            )));
        }
        let placed = &tally.placed;
        if placed.copied > 0 {
            let (path, error) = placed.first_copy_error.clone().unwrap_or_default();
            tracing::warn!(
                copied = placed.copied,
                linked = placed.linked,
                first = %path.display(),
                %error,
                "some files were copied from the local cache because hard-linking failed"
            );
        }
        if placed.changed > 0 {
            let first = placed.first_changed.clone().unwrap_or_default();
            tracing::warn!(
                changed = placed.changed,
                first = %first.display(),
                "local cache entries had changed since they were stored; fetched again"
            );
        }
        stats.linked_files = placed.linked;
        stats.copied_files = placed.copied;
        stats.changed_in_local_cache = placed.changed;
        stats.first_changed = placed
            .first_changed
            .as_ref()
            .and_then(|p| p.strip_prefix(dest).ok())
            .map(Path::to_path_buf);
        stats.fetched_blobs = tally.fetched_blobs;
        stats.fetched_bytes = tally.fetched_bytes;
        stats.symlinks = make_symlinks(symlinks).await?;
        Ok(stats)
    }

    /// Fetches every blob in `missing`, adds it to the local cache and
    /// places its files. Small blobs travel in batches; the next batch is
    /// fetched while the previous one is written.
    async fn fetch_and_link(
        &self,
        local: &LocalCas,
        missing: Vec<Wanted>,
    ) -> Result<Tally, CacheError> {
        let mut tally = Tally::default();
        let mut pending = Pending::default();
        let mut batch: Vec<Wanted> = Vec::new();
        let mut batch_bytes = 0u64;
        for wanted in missing {
            let digest = wanted.digest;
            if digest.size_bytes >= BATCH_BLOB_LIMIT {
                let tmp = local.temp_path();
                if let Err(err) = self.read_to_file(&digest, &tmp).await {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(err);
                }
                tally.fetched_blobs += 1;
                tally.fetched_bytes += digest.size_bytes;
                let local = local.clone();
                let job = move || store_streamed(&local, wanted, &tmp);
                pending.push(&mut tally, spawn_store(job)).await?;
                continue;
            }
            if batch_bytes + digest.size_bytes > BATCH_TARGET_BYTES && !batch.is_empty() {
                let blobs = self.fetch_wanted(&batch).await?;
                tally.fetched_blobs += blobs.len() as u64;
                tally.fetched_bytes += batch_bytes;
                let (local, items) = (local.clone(), pair(std::mem::take(&mut batch), blobs)?);
                let job = spawn_store(move || store_batch(&local, items));
                pending.push(&mut tally, job).await?;
                batch_bytes = 0;
            }
            batch_bytes += digest.size_bytes;
            batch.push(wanted);
        }
        if !batch.is_empty() {
            let blobs = self.fetch_wanted(&batch).await?;
            tally.fetched_blobs += blobs.len() as u64;
            tally.fetched_bytes += batch_bytes;
            let (local, items) = (local.clone(), pair(batch, blobs)?);
            let job = spawn_store(move || store_batch(&local, items));
            pending.push(&mut tally, job).await?;
        }
        pending.finish(&mut tally).await?;
        Ok(tally)
    }

    /// BatchRead of the non-empty blobs among `batch` (the empty blob is
    /// never fetched).
    async fn fetch_wanted(&self, batch: &[Wanted]) -> Result<Vec<(Digest, Bytes)>, CacheError> {
        let digests: Vec<Digest> = batch
            .iter()
            .map(|w| w.digest)
            .filter(|d| !d.is_empty_blob())
            .collect();
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        self.batch_read(&digests).await
    }
}

fn spawn_store(
    job: impl FnOnce() -> Result<Tally, CacheError> + Send + 'static,
) -> JoinHandle<Result<Tally, CacheError>> {
    let span = tracing::debug_span!("store_and_link");
    tokio::task::spawn_blocking(move || span.in_scope(job))
}

/// Store jobs in flight: writing an entry creates an inode, which costs
/// far more than the download of a small blob, and inode creations in
/// different fan-out directories overlap; the next batch is fetched
/// meanwhile.
const STORES_IN_FLIGHT: usize = 4;

#[derive(Default)]
struct Pending(VecDeque<JoinHandle<Result<Tally, CacheError>>>);

impl Pending {
    /// Adds a job, first waiting for the oldest if enough are running.
    async fn push(
        &mut self,
        tally: &mut Tally,
        job: JoinHandle<Result<Tally, CacheError>>,
    ) -> Result<(), CacheError> {
        while self.0.len() >= STORES_IN_FLIGHT {
            let oldest = self.0.pop_front().expect("non-empty");
            tally.merge(oldest.await??);
        }
        self.0.push_back(job);
        Ok(())
    }

    async fn finish(self, tally: &mut Tally) -> Result<(), CacheError> {
        for job in self.0 {
            tally.merge(job.await??);
        }
        Ok(())
    }
}

/// Matches fetched blobs (in the server's order) with what wanted them.
fn pair(
    batch: Vec<Wanted>,
    blobs: Vec<(Digest, Bytes)>,
) -> Result<Vec<(Wanted, Bytes)>, CacheError> {
    let mut by_digest: HashMap<Digest, Bytes> = blobs.into_iter().collect();
    batch
        .into_iter()
        .map(|wanted| {
            if wanted.digest.is_empty_blob() {
                return Ok((wanted, Bytes::new()));
            }
            let data = by_digest
                .remove(&wanted.digest)
                .ok_or(CacheError::NotFound(wanted.digest))?;
            Ok((wanted, data))
        })
        .collect()
}

/// Groups files still to fill by blob, then by mode.
fn group_by_digest(files: Vec<PlannedFile>) -> Vec<Wanted> {
    let mut by_digest: BTreeMap<Digest, Wanted> = BTreeMap::new();
    for file in files {
        by_digest
            .entry(file.digest)
            .or_insert_with(|| Wanted::new(file.digest))
            .targets_mut(file.mode)
            .push(file.path);
    }
    by_digest.into_values().collect()
}

/// Adds fetched (already verified) small blobs to the cache and places
/// their files.
fn store_batch(local: &LocalCas, items: Vec<(Wanted, Bytes)>) -> Result<Tally, CacheError> {
    let mut tally = Tally::default();
    for (wanted, data) in items {
        let mut pinned = Vec::new();
        for (mode, _) in wanted.variants() {
            if let Err(e) = local.insert_verified_pinned(&wanted.digest, mode, &data) {
                // Unpin what was stored, or the cap could never evict it.
                for mode in pinned {
                    local.unpin(&wanted.digest, mode);
                }
                return Err(e.into());
            }
            pinned.push(mode);
        }
        place_pinned(local, &wanted, &mut tally)?;
    }
    Ok(tally)
}

/// Adds a blob streamed to `tmp` (already verified) to the cache and places
/// its files. Wanted in both modes, it becomes two entries.
fn store_streamed(local: &LocalCas, wanted: Wanted, tmp: &Path) -> Result<Tally, CacheError> {
    let mut tally = Tally::default();
    let modes: Vec<FileMode> = wanted.variants().map(|(mode, _)| mode).collect();
    let mut temps = vec![tmp.to_owned()];
    if modes.len() == 2 {
        let second = local.temp_path();
        std::fs::copy(tmp, &second).map_err(io_error(&second))?;
        temps.push(second);
    }
    for (mode, tmp) in modes.iter().zip(&temps) {
        local.publish_verified_temp_pinned(tmp, &wanted.digest, *mode)?;
    }
    place_pinned(local, &wanted, &mut tally)?;
    Ok(tally)
}

/// Places the freshly stored (and pinned) entries of `wanted` at their
/// targets, unpinning each; targets whose entry vanished are recorded as
/// still missing.
fn place_pinned(local: &LocalCas, wanted: &Wanted, tally: &mut Tally) -> Result<(), CacheError> {
    let mut missing = Wanted::new(wanted.digest);
    for (mode, targets) in wanted.variants() {
        let placed = place_all(local, &wanted.digest, targets, mode, tally);
        local.unpin(&wanted.digest, mode);
        missing.targets_mut(mode).extend_from_slice(placed?);
    }
    if !missing.is_empty() {
        tally.missing.push(missing);
    }
    Ok(())
}

/// Places the entry for `digest` at every target. Returns the targets not
/// placed because the entry vanished (empty when all were placed).
fn place_all<'a>(
    local: &LocalCas,
    digest: &Digest,
    targets: &'a [PathBuf],
    mode: FileMode,
    tally: &mut Tally,
) -> Result<&'a [PathBuf], CacheError> {
    for (i, dest) in targets.iter().enumerate() {
        if tally.placed.place(local, digest, dest, mode)? == Outcome::NotPlaced {
            return Ok(&targets[i..]);
        }
    }
    Ok(&[])
}
