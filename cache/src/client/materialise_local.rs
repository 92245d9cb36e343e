//! Materialising through a runner's [`LocalCas`]: files whose blobs the
//! runner already holds are hard-linked, not downloaded and written again;
//! only the rest is fetched (batched and verified as usual), stored in the
//! local cache, then linked. This is what makes a warm runner's restore of a
//! large dependency tree cost little more than `cp -al`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::local_cas::{link_or_copy, LocalCas, PlaceError, Placement};
use super::materialise::{io_error, make_symlinks, FileTarget, Layout, MaterialiseStats};
use super::{CasClient, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES};
use crate::digest::Digest;
use crate::error::CacheError;

/// Most threads placing files at once: linking is metadata work, so a few
/// threads help even on small machines, and more only contend on the
/// directory locks.
const MAX_LINK_WORKERS: usize = 4;

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

    fn targets_mut(&mut self, executable: bool) -> &mut Vec<PathBuf> {
        if executable {
            &mut self.exec
        } else {
            &mut self.plain
        }
    }

    /// The modes wanted, each with its destinations.
    fn variants(&self) -> impl Iterator<Item = (bool, &[PathBuf])> {
        [(false, &self.plain[..]), (true, &self.exec[..])]
            .into_iter()
            .filter(|(_, targets)| !targets.is_empty())
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.exec.is_empty()
    }
}

/// What a group of placements did.
#[derive(Debug, Default)]
struct Tally {
    linked: u64,
    copied: u64,
    /// The first link failure that led to a copy, for the log.
    first_copy_error: Option<(PathBuf, String)>,
    local_blobs: u64,
    fetched_blobs: u64,
    fetched_bytes: u64,
    /// Destinations still to fill: not cached, or the entry vanished.
    missing: Vec<Wanted>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.linked += other.linked;
        self.copied += other.copied;
        if self.first_copy_error.is_none() {
            self.first_copy_error = other.first_copy_error;
        }
        self.local_blobs += other.local_blobs;
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
            directories,
            files,
            symlinks,
            mut stats,
        } = self.layout(root, dest).await?;
        let span = tracing::debug_span!("create_dirs", count = directories.len());
        tokio::task::spawn_blocking(move || span.in_scope(|| create_dirs(&directories))).await??;

        let wanted = group_by_mode(files);
        let mut tally = link_cached(local, wanted).await?;
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
        if tally.copied > 0 {
            let (path, error) = tally.first_copy_error.clone().unwrap_or_default();
            tracing::warn!(
                copied = tally.copied,
                linked = tally.linked,
                first = %path.display(),
                %error,
                "some files were copied from the local cache because hard-linking failed"
            );
        }
        stats.linked_files = tally.linked;
        stats.copied_files = tally.copied;
        stats.local_blobs = tally.local_blobs;
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
        let mut pending: Option<JoinHandle<Result<Tally, CacheError>>> = None;
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
                merge_pending(&mut tally, pending.take()).await?;
                pending = Some(spawn_store(job));
                continue;
            }
            if batch_bytes + digest.size_bytes > BATCH_TARGET_BYTES && !batch.is_empty() {
                let blobs = self.fetch_wanted(&batch).await?;
                tally.fetched_blobs += blobs.len() as u64;
                tally.fetched_bytes += batch_bytes;
                let (local, items) = (local.clone(), pair(std::mem::take(&mut batch), blobs)?);
                merge_pending(&mut tally, pending.take()).await?;
                pending = Some(spawn_store(move || store_batch(&local, items)));
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
            merge_pending(&mut tally, pending.take()).await?;
            pending = Some(spawn_store(move || store_batch(&local, items)));
        }
        merge_pending(&mut tally, pending).await?;
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

async fn merge_pending(
    tally: &mut Tally,
    pending: Option<JoinHandle<Result<Tally, CacheError>>>,
) -> Result<(), CacheError> {
    if let Some(handle) = pending {
        tally.merge(handle.await??);
    }
    Ok(())
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

/// Groups a layout's files by blob, then by mode.
fn group_by_mode(files: std::collections::BTreeMap<Digest, Vec<FileTarget>>) -> Vec<Wanted> {
    files
        .into_iter()
        .map(|(digest, targets)| {
            let mut wanted = Wanted::new(digest);
            for target in targets {
                wanted.targets_mut(target.executable).push(target.path);
            }
            wanted
        })
        .collect()
}

fn create_dirs(directories: &[PathBuf]) -> Result<(), CacheError> {
    let mut dirs = directories.iter();
    if let Some(dest) = dirs.next() {
        std::fs::create_dir_all(dest).map_err(io_error(dest))?;
    }
    // Parents come first (breadth-first layout), so one mkdir each.
    for dir in dirs {
        match std::fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(io_error(dir)(e)),
        }
    }
    Ok(())
}

/// Links every blob the local cache already holds, spread over a few
/// blocking threads; the rest comes back in [`Tally::missing`].
async fn link_cached(local: &LocalCas, wanted: Vec<Wanted>) -> Result<Tally, CacheError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_LINK_WORKERS)
        .min(wanted.len().max(1));
    let mut shares: Vec<Vec<Wanted>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, w) in wanted.into_iter().enumerate() {
        shares[i % workers].push(w);
    }
    let handles: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(worker, share)| {
            let local = local.clone();
            let span = tracing::debug_span!("link_cached", worker, blobs = share.len());
            tokio::task::spawn_blocking(move || span.in_scope(|| link_share(&local, share)))
        })
        .collect();
    let mut tally = Tally::default();
    for handle in handles {
        tally.merge(handle.await??);
    }
    Ok(tally)
}

fn link_share(local: &LocalCas, share: Vec<Wanted>) -> Result<Tally, CacheError> {
    let mut tally = Tally::default();
    for wanted in share {
        let mut missing = Wanted::new(wanted.digest);
        for (executable, targets) in wanted.variants() {
            let rest = match local.checked_entry(&wanted.digest, executable) {
                Some(entry) => place_all(&entry, targets, executable, &mut tally)?,
                None => targets,
            };
            missing.targets_mut(executable).extend_from_slice(rest);
        }
        if missing.is_empty() {
            tally.local_blobs += 1;
        } else {
            tally.missing.push(missing);
        }
    }
    Ok(tally)
}

/// Adds fetched (already verified) small blobs to the cache and places
/// their files.
fn store_batch(local: &LocalCas, items: Vec<(Wanted, Bytes)>) -> Result<Tally, CacheError> {
    let mut tally = Tally::default();
    for (wanted, data) in items {
        let mut missing = Wanted::new(wanted.digest);
        for (executable, targets) in wanted.variants() {
            local.insert_verified_pinned(&wanted.digest, executable, &data)?;
            let entry = local.entry_path(&wanted.digest, executable);
            let placed = place_all(&entry, targets, executable, &mut tally);
            local.unpin(&wanted.digest, executable);
            missing.targets_mut(executable).extend_from_slice(placed?);
        }
        if !missing.is_empty() {
            tally.missing.push(missing);
        }
    }
    Ok(tally)
}

/// Adds a blob streamed to `tmp` (already verified) to the cache and places
/// its files. Wanted in both modes, it becomes two entries.
fn store_streamed(local: &LocalCas, wanted: Wanted, tmp: &Path) -> Result<Tally, CacheError> {
    let mut tally = Tally::default();
    let modes: Vec<bool> = wanted.variants().map(|(exec, _)| exec).collect();
    let mut temps = vec![tmp.to_owned()];
    if modes.len() == 2 {
        let second = local.temp_path();
        std::fs::copy(tmp, &second).map_err(io_error(&second))?;
        temps.push(second);
    }
    for (executable, tmp) in modes.iter().zip(&temps) {
        local.publish_verified_temp_pinned(tmp, &wanted.digest, *executable)?;
    }
    let mut missing = Wanted::new(wanted.digest);
    for (executable, targets) in wanted.variants() {
        let entry = local.entry_path(&wanted.digest, executable);
        let placed = place_all(&entry, targets, executable, &mut tally);
        local.unpin(&wanted.digest, executable);
        missing.targets_mut(executable).extend_from_slice(placed?);
    }
    if !missing.is_empty() {
        tally.missing.push(missing);
    }
    Ok(tally)
}

/// Places `entry` at every target. Returns the targets not placed because
/// the entry vanished (empty when all were placed).
fn place_all<'a>(
    entry: &Path,
    targets: &'a [PathBuf],
    executable: bool,
    tally: &mut Tally,
) -> Result<&'a [PathBuf], CacheError> {
    for (i, dest) in targets.iter().enumerate() {
        match link_or_copy(entry, dest, executable) {
            Ok((Placement::Linked, _)) => tally.linked += 1,
            Ok((Placement::Copied, err)) => {
                tally.copied += 1;
                let err = err.map(|e| e.to_string()).unwrap_or_default();
                tracing::debug!(dest = %dest.display(), error = %err, "copied instead of linked");
                if tally.first_copy_error.is_none() {
                    tally.first_copy_error = Some((dest.clone(), err));
                }
            }
            Err(PlaceError::SourceGone) => {
                tracing::info!(entry = %entry.display(), "local cache entry vanished before linking; fetching again");
                return Ok(&targets[i..]);
            }
            Err(PlaceError::Io { path, source }) => return Err(CacheError::Io { path, source }),
        }
    }
    Ok(&[])
}
