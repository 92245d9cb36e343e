//! Materialising a tree: the reverse of a snapshot, onto local disk.

use crate::tree::FileMode;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use super::expansion::{MAX_DEPTH, MAX_ENTRIES};
use super::{CasClient, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES};
use crate::error::CacheError;
use crate::tree::{DirectoryListing, TreeError};
use buildfleet_model::digest::Digest;

/// What a materialisation wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaterialiseStats {
    pub files: u64,
    /// Directories created, including the destination itself.
    pub directories: u64,
    pub symlinks: u64,
    /// Sum of file sizes written.
    pub bytes: u64,
    /// Distinct file blobs fetched from the server.
    pub fetched_blobs: u64,
    /// Bytes of the blobs fetched from the server.
    pub fetched_bytes: u64,
    /// Distinct file blobs served wholly by the local cache, not fetched.
    pub local_blobs: u64,
    /// Files hard-linked from the local cache.
    pub linked_files: u64,
    /// Files copied from the local cache because linking failed (e.g. the
    /// destination is on another filesystem); each such run is logged.
    pub copied_files: u64,
    /// Files whose local cache entry had changed since it was stored (a
    /// step wrote to a linked input; found by hashing it again): the entry
    /// was dropped and the blob fetched again.
    pub changed_in_local_cache: u64,
    /// The first such file, relative to the destination.
    pub first_changed: Option<PathBuf>,
}

pub(super) struct FileTarget {
    pub(super) path: PathBuf,
    pub(super) mode: FileMode,
}

/// One directory of a layout: where it goes, its files, and its
/// subdirectories (indexes into [`Layout::dirs`]).
pub(super) struct DirPlan {
    pub(super) path: PathBuf,
    pub(super) files: Vec<PlannedFile>,
    pub(super) children: Vec<usize>,
}

#[derive(Debug)]
pub(super) struct PlannedFile {
    pub(super) path: PathBuf,
    pub(super) digest: Digest,
    pub(super) mode: FileMode,
}

/// A tree laid out under its destination, before anything is written.
/// `dirs` is breadth first, so parents come before children; the
/// destination itself is `dirs[0]`.
pub(super) struct Layout {
    pub(super) dirs: Vec<DirPlan>,
    pub(super) symlinks: Vec<(PathBuf, String)>,
    pub(super) stats: MaterialiseStats,
}

impl Layout {
    /// Every file path, grouped by blob.
    pub(super) fn files_by_digest(&self) -> BTreeMap<Digest, Vec<FileTarget>> {
        let mut files: BTreeMap<Digest, Vec<FileTarget>> = BTreeMap::new();
        for file in self.dirs.iter().flat_map(|d| &d.files) {
            files.entry(file.digest).or_default().push(FileTarget {
                path: file.path.clone(),
                mode: file.mode,
            });
        }
        files
    }
}

impl CasClient {
    /// Writes the tree under `root` into `dest` (created if needed). Files
    /// get mode 0o755 if mode, else 0o644. Every directory and file
    /// blob is verified against its digest before it is used.
    pub async fn materialise(
        &self,
        root: &Digest,
        dest: &Path,
    ) -> Result<MaterialiseStats, CacheError> {
        let layout = self.layout(root, dest).await?;
        for dir in &layout.dirs {
            create_dir(&dir.path).await?;
        }
        let files = layout.files_by_digest();
        let mut stats = layout.stats;
        let (fetched, fetched_bytes) = self.write_files(&files).await?;
        stats.fetched_blobs = fetched;
        stats.fetched_bytes = fetched_bytes;
        stats.symlinks = make_symlinks(layout.symlinks).await?;
        Ok(stats)
    }

    /// Reads the tree under `root` (verified) and decides where everything
    /// goes under `dest`; writes nothing.
    pub(super) async fn layout(&self, root: &Digest, dest: &Path) -> Result<Layout, CacheError> {
        let known = self.tree_listings(root).await?;
        // Before a path is laid out: a hostile DAG is refused by counting.
        super::expansion::check(&known, root)?;
        let mut layout = Layout {
            dirs: Vec::new(),
            symlinks: Vec::new(),
            stats: MaterialiseStats::default(),
        };
        let mut queue = VecDeque::from([(*root, dest.to_owned(), None::<usize>)]);
        while let Some((digest, dir_path, parent)) = queue.pop_front() {
            let listing = match known.get(&digest) {
                Some(listing) => listing.clone(),
                // Not in GetTree's answer (e.g. another encoder's bytes, or
                // a subtree the server lacks): fetch it directly, verified.
                None => {
                    let bytes = self.read_blob(&digest).await?;
                    DirectoryListing::decode(&digest, &bytes)?
                }
            };
            let index = layout.dirs.len();
            if let Some(parent) = parent {
                layout.dirs[parent].children.push(index);
            }
            let mut plan = DirPlan {
                path: dir_path,
                files: Vec::with_capacity(listing.files.len()),
                children: Vec::new(),
            };
            for file in listing.files {
                layout.stats.files += 1;
                layout.stats.bytes += file.digest.size_bytes;
                plan.files.push(PlannedFile {
                    path: plan.path.join(&file.name),
                    digest: file.digest,
                    mode: file.mode,
                });
            }
            let depth = plan
                .path
                .strip_prefix(dest)
                .map_or(0, |p| p.components().count());
            for link in listing.symlinks {
                let path = plan.path.join(&link.name);
                if !target_stays_inside(depth, &link.target) {
                    return Err(TreeError::UnsafeSymlink {
                        path,
                        target: link.target,
                    }
                    .into());
                }
                layout.symlinks.push((path, link.target));
            }
            if depth > MAX_DEPTH {
                return Err(TreeError::TooLarge {
                    what: "levels of directories",
                    limit: MAX_DEPTH as u64,
                }
                .into());
            }
            let entries =
                layout.stats.files + layout.stats.directories + listing.directories.len() as u64;
            if entries > MAX_ENTRIES {
                return Err(TreeError::TooLarge {
                    what: "files and directories",
                    limit: MAX_ENTRIES,
                }
                .into());
            }
            for sub in listing.directories {
                queue.push_back((sub.digest, plan.path.join(&sub.name), Some(index)));
            }
            layout.dirs.push(plan);
            layout.stats.directories += 1;
        }
        Ok(layout)
    }

    /// Fetches each distinct file blob once and writes it to every path that
    /// holds it. Returns how many blobs, and bytes, were fetched.
    async fn write_files(
        &self,
        files: &BTreeMap<Digest, Vec<FileTarget>>,
    ) -> Result<(u64, u64), CacheError> {
        let mut fetched = 0u64;
        let mut fetched_bytes = 0u64;
        let mut batch: Vec<Digest> = Vec::new();
        let mut batch_bytes = 0u64;
        for (digest, targets) in files {
            if digest.is_empty_blob() {
                for target in targets {
                    write_file(target, &[]).await?;
                }
            } else if digest.size_bytes >= BATCH_BLOB_LIMIT {
                let (first, rest) = targets.split_first().expect("at least one path");
                self.read_to_file(digest, &first.path).await?;
                set_mode(first).await?;
                for target in rest {
                    copy_file(&first.path, target).await?;
                }
                fetched += 1;
                fetched_bytes += digest.size_bytes;
            } else {
                fetched_bytes += digest.size_bytes;
                if batch_bytes + digest.size_bytes > BATCH_TARGET_BYTES {
                    fetched += self.fetch_batch(&std::mem::take(&mut batch), files).await?;
                    batch_bytes = 0;
                }
                batch.push(*digest);
                batch_bytes += digest.size_bytes;
            }
        }
        if !batch.is_empty() {
            fetched += self.fetch_batch(&batch, files).await?;
        }
        Ok((fetched, fetched_bytes))
    }

    async fn fetch_batch(
        &self,
        digests: &[Digest],
        files: &BTreeMap<Digest, Vec<FileTarget>>,
    ) -> Result<u64, CacheError> {
        let blobs = self.batch_read(digests).await?;
        for (digest, data) in &blobs {
            for target in files.get(digest).into_iter().flatten() {
                write_file(target, data).await?;
            }
        }
        Ok(blobs.len() as u64)
    }
}

/// Creates the symlinks of a layout; returns how many.
pub(super) async fn make_symlinks(symlinks: Vec<(PathBuf, String)>) -> Result<u64, CacheError> {
    let mut made = 0;
    for (path, target) in symlinks {
        make_symlink(&target, &path).await?;
        made += 1;
    }
    Ok(made)
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

async fn create_dir(path: &Path) -> Result<(), CacheError> {
    tokio::fs::create_dir_all(path)
        .await
        .map_err(io_error(path))
}

async fn write_file(target: &FileTarget, data: &[u8]) -> Result<(), CacheError> {
    tokio::fs::write(&target.path, data)
        .await
        .map_err(io_error(&target.path))?;
    set_mode(target).await
}

async fn copy_file(from: &Path, target: &FileTarget) -> Result<(), CacheError> {
    tokio::fs::copy(from, &target.path)
        .await
        .map_err(io_error(&target.path))?;
    set_mode(target).await
}

/// Sets the mode explicitly: the umask must not decide whether a build
/// script is mode on the runner.
#[cfg(unix)]
async fn set_mode(target: &FileTarget) -> Result<(), CacheError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if target.mode.is_executable() {
        0o755
    } else {
        0o644
    };
    tokio::fs::set_permissions(&target.path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io_error(&target.path))
}

#[cfg(not(unix))]
async fn set_mode(_target: &FileTarget) -> Result<(), CacheError> {
    Ok(())
}

#[cfg(unix)]
async fn make_symlink(target: &str, path: &Path) -> Result<(), CacheError> {
    tokio::fs::symlink(target, path)
        .await
        .map_err(io_error(path))
}

#[cfg(not(unix))]
async fn make_symlink(_target: &str, path: &Path) -> Result<(), CacheError> {
    Err(CacheError::Io {
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "symlinks are only materialised on unix",
        ),
    })
}

/// A relative target that, read from a link `depth` directories below
/// the root, never climbs above it. Absolute targets are kept: a Python
/// venv's `bin/python` names the interpreter it was made with, and a venv
/// restored from a dependency cache must work.
fn target_stays_inside(depth: usize, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut level = depth as i64;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                level -= 1;
                if level < 0 {
                    return false;
                }
            }
            _ => level += 1,
        }
    }
    true
}

#[cfg(test)]
mod symlink_tests {
    use super::target_stays_inside;

    #[test]
    fn symlink_targets_must_stay_inside_the_tree() {
        assert!(target_stays_inside(0, "a/b"));
        assert!(target_stays_inside(1, "../x"));
        assert!(target_stays_inside(2, "../../x"));
        assert!(!target_stays_inside(1, "../../x"));
        assert!(!target_stays_inside(0, "../x"));
        assert!(target_stays_inside(3, "/usr/bin/python3"), "absolute: kept");
        assert!(!target_stays_inside(1, "a/../../.."));
    }
}
