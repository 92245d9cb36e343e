//! Placing a laid-out tree from the local cache with a few threads.
//!
//! On the runners' ext4 creating an inode (a directory or a file) costs
//! ~300 µs of kernel CPU while a hard link costs ~8 µs, so a warm restore is
//! bound by its `mkdir`s, and `cp -al` makes them one after another on one
//! core. Here a small pool works on directory tasks: a task creates its
//! directory, links its files, then queues its subdirectories. Parents are
//! always created before children, and every core makes directories.

use crate::tree::FileMode;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::local_cas::{Linked, LocalCas, PlaceError, Placement};
use super::materialise::{io_error, DirPlan, PlannedFile};
use crate::error::CacheError;
use buildfleet_model::digest::Digest;

/// Threads placing one tree. More than the 2 cores of a runner so a thread
/// waiting on a directory lock (siblings share their parent's) does not
/// idle a core: the node-deps restore keeps ~1.9 cores busy. 8 threads
/// measured no better than 4.
const WORKERS: usize = 4;

/// How files got into place.
#[derive(Debug, Default)]
pub(super) struct Placed {
    pub(super) linked: u64,
    pub(super) copied: u64,
    /// The first link failure that led to a copy, for the log.
    pub(super) first_copy_error: Option<(PathBuf, String)>,
    /// Files whose entry had changed since it was stored (found by
    /// hashing it again): dropped, and the file fetched again.
    pub(super) changed: u64,
    pub(super) first_changed: Option<PathBuf>,
}

/// Whether a file got into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Placed,
    /// The local cache lacks the entry (or lost it meanwhile, or it had
    /// changed and was dropped): the file is still to fetch.
    NotPlaced,
}

impl Placed {
    /// Places the local cache's entry for `digest` at `dest` once it is
    /// proven intact, counting how.
    pub(super) fn place(
        &mut self,
        local: &LocalCas,
        digest: &Digest,
        dest: &std::path::Path,
        mode: FileMode,
    ) -> Result<Outcome, CacheError> {
        match local.link_file(digest, mode, dest) {
            Ok(Linked::Placed {
                placement: Placement::Linked,
                ..
            }) => self.linked += 1,
            Ok(Linked::Placed {
                placement: Placement::Copied,
                link_error,
            }) => {
                self.copied += 1;
                let err = link_error.map(|e| e.to_string()).unwrap_or_default();
                tracing::debug!(dest = %dest.display(), error = %err, "copied instead of linked");
                if self.first_copy_error.is_none() {
                    self.first_copy_error = Some((dest.to_owned(), err));
                }
            }
            Ok(Linked::Changed) => {
                self.changed += 1;
                self.first_changed.get_or_insert_with(|| dest.to_owned());
                return Ok(Outcome::NotPlaced);
            }
            Ok(Linked::Absent) | Err(PlaceError::SourceGone) => return Ok(Outcome::NotPlaced),
            Err(PlaceError::Io { path, source }) => return Err(CacheError::Io { path, source }),
        }
        Ok(Outcome::Placed)
    }

    pub(super) fn merge(&mut self, other: Placed) {
        self.linked += other.linked;
        self.copied += other.copied;
        self.changed += other.changed;
        if self.first_copy_error.is_none() {
            self.first_copy_error = other.first_copy_error;
        }
        if self.first_changed.is_none() {
            self.first_changed = other.first_changed;
        }
    }
}

/// What placing a tree did, and the files still to fill because the local
/// cache lacked (or lost) their entries.
#[derive(Debug, Default)]
pub(super) struct TreeTally {
    pub(super) placed: Placed,
    pub(super) missing: Vec<PlannedFile>,
}

struct Pool {
    dirs: Vec<DirPlan>,
    state: Mutex<PoolState>,
    wake: Condvar,
}

struct PoolState {
    ready: Vec<usize>,
    busy: usize,
    failed: bool,
}

/// Creates every directory of `dirs` (`dirs[0]` is the destination) and
/// links every file whose entry the local cache holds.
pub(super) async fn link_tree(
    local: &LocalCas,
    dirs: Vec<DirPlan>,
) -> Result<TreeTally, CacheError> {
    if dirs.is_empty() {
        return Ok(TreeTally::default());
    }
    let workers = WORKERS.min(dirs.len());
    let pool = Arc::new(Pool {
        dirs,
        state: Mutex::new(PoolState {
            ready: vec![0],
            busy: 0,
            failed: false,
        }),
        wake: Condvar::new(),
    });
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let (pool, local) = (Arc::clone(&pool), local.clone());
            let span = tracing::debug_span!("link_tree", worker);
            tokio::task::spawn_blocking(move || span.in_scope(|| work(&pool, &local)))
        })
        .collect();
    let mut tally = TreeTally::default();
    let mut first_error = None;
    for handle in handles {
        match handle.await? {
            Ok(part) => {
                tally.placed.merge(part.placed);
                tally.missing.extend(part.missing);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(tally),
    }
}

fn work(pool: &Pool, local: &LocalCas) -> Result<TreeTally, CacheError> {
    let mut tally = TreeTally::default();
    // Entries this worker found missing: a blob used by many files (a
    // licence text) is looked for once per worker, not once per file.
    let mut missing: HashSet<(Digest, FileMode)> = HashSet::new();
    loop {
        let index = {
            let mut state = pool.state.lock();
            loop {
                if state.failed {
                    return Ok(tally);
                }
                if let Some(index) = state.ready.pop() {
                    state.busy += 1;
                    break index;
                }
                if state.busy == 0 {
                    return Ok(tally);
                }
                pool.wake.wait(&mut state);
            }
        };
        let result = place_dir(pool, index, local, &mut missing, &mut tally);
        let mut state = pool.state.lock();
        state.busy -= 1;
        match result {
            Ok(()) => state.ready.extend_from_slice(&pool.dirs[index].children),
            Err(err) => {
                state.failed = true;
                pool.wake.notify_all();
                return Err(err);
            }
        }
        pool.wake.notify_all();
    }
}

fn place_dir(
    pool: &Pool,
    index: usize,
    local: &LocalCas,
    missing: &mut HashSet<(Digest, FileMode)>,
    tally: &mut TreeTally,
) -> Result<(), CacheError> {
    let dir = &pool.dirs[index];
    let made = if index == 0 {
        std::fs::create_dir_all(&dir.path)
    } else {
        match std::fs::create_dir(&dir.path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.path.is_dir() => Ok(()),
            other => other,
        }
    };
    made.map_err(io_error(&dir.path))?;
    for file in &dir.files {
        let key = (file.digest, file.mode);
        let placed = if missing.contains(&key) {
            Outcome::NotPlaced
        } else {
            tally
                .placed
                .place(local, &file.digest, &file.path, file.mode)?
        };
        if placed == Outcome::NotPlaced {
            missing.insert(key);
            tally.missing.push(PlannedFile {
                path: file.path.clone(),
                digest: file.digest,
                mode: file.mode,
            });
        }
    }
    Ok(())
}
