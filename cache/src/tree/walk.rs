//! Turning a directory on disk into a [`Snapshot`].

use super::FileMode;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ignore::WalkBuilder;

use super::encoding::{DirectoryEntry, DirectoryListing, FileEntry, SymlinkEntry};
use super::{file_hash, BlobSource, Snapshot, TreeError};
use buildfleet_model::digest::Digest;

struct PendingFile {
    dir: PathBuf,
    name: String,
    path: PathBuf,
    mode: FileMode,
}

/// Which files a snapshot leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignores {
    /// `.gitignore`/`.ignore` rules and `.git/`: the workspace as a commit
    /// would see it.
    Honour,
    /// Nothing: a dependency cache (`node_modules`, `.venv`) is usually
    /// ignored by the very repository it serves, and a cache that silently
    /// dropped ignored files would restore a broken tree.
    None,
}

/// Snapshots `root`: honours `.gitignore`/`.ignore` files even outside a git
/// repository (users expect their ignores to keep `target/` out of uploads),
/// includes hidden files (dotfiles are often build inputs) and always skips
/// `.git/`. The user's global gitignore is not read so the same tree gives
/// the same digest on every machine.
pub fn snapshot(root: &Path) -> Result<Snapshot, TreeError> {
    snapshot_with(root, Ignores::Honour)
}

/// Snapshots `root` with the given ignore policy.
pub fn snapshot_with(root: &Path, ignores: Ignores) -> Result<Snapshot, TreeError> {
    let meta = std::fs::metadata(root).map_err(|source| TreeError::Io {
        path: root.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(TreeError::NotADirectory {
            path: root.to_owned(),
        });
    }

    // Relative directory path -> listing under construction ("" is the root).
    let mut dirs: BTreeMap<PathBuf, DirectoryListing> = BTreeMap::new();
    dirs.insert(PathBuf::new(), DirectoryListing::default());
    let mut hashing = file_hash::HashPipeline::start();
    let mut files = Vec::new();
    let mut symlink_count = 0u64;

    let mut builder = WalkBuilder::new(root);
    builder
        .hidden(false)
        .require_git(false)
        .git_global(false)
        .follow_links(false);
    match ignores {
        Ignores::Honour => {
            builder.filter_entry(|entry| entry.file_name() != ".git");
        }
        Ignores::None => {
            builder.standard_filters(false);
        }
    }
    let walker = builder.build();
    for entry in walker {
        let entry = entry?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("walk stays under root");
        let parent = rel.parent().unwrap_or(Path::new("")).to_owned();
        let name = entry
            .file_name()
            .to_str()
            .ok_or_else(|| TreeError::NonUtf8Path {
                path: path.to_owned(),
            })?
            .to_owned();
        let Some(file_type) = entry.file_type() else {
            continue;
        };
        let io_err = |source| TreeError::Io {
            path: path.to_owned(),
            source,
        };
        if file_type.is_dir() {
            dirs.entry(rel.to_owned()).or_default();
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(path).map_err(io_err)?;
            let target = target
                .to_str()
                .ok_or_else(|| TreeError::NonUtf8Path {
                    path: path.to_owned(),
                })?
                .to_owned();
            dirs.entry(parent)
                .or_default()
                .symlinks
                .push(SymlinkEntry { name, target });
            symlink_count += 1;
        } else if file_type.is_file() {
            let meta = entry.metadata()?;
            hashing.submit(path.to_owned());
            files.push(PendingFile {
                dir: parent,
                name,
                path: path.to_owned(),
                mode: FileMode::of(is_executable(&meta)),
            });
        }
        // Sockets, FIFOs and devices are not build inputs; skip them.
    }

    let digests = hashing.finish()?;

    let mut blobs: BTreeMap<Digest, BlobSource> = BTreeMap::new();
    let mut total_bytes = 0u64;
    let file_count = files.len() as u64;
    // The walk yields a directory's files in runs: one map lookup per run,
    // not per file (path comparisons made this a tenth of a snapshot).
    let mut run: Option<(PathBuf, Vec<FileEntry>)> = None;
    for (file, digest) in files.into_iter().zip(digests) {
        total_bytes += digest.size_bytes;
        blobs
            .entry(digest)
            .or_insert_with(|| BlobSource::File(file.path));
        let entry = FileEntry {
            name: file.name,
            digest,
            mode: file.mode,
        };
        match &mut run {
            Some((dir, entries)) if *dir == file.dir => entries.push(entry),
            _ => {
                if let Some((dir, entries)) = run.replace((file.dir, vec![entry])) {
                    dirs.entry(dir).or_default().files.extend(entries);
                }
            }
        }
    }
    if let Some((dir, entries)) = run {
        dirs.entry(dir).or_default().files.extend(entries);
    }

    let directory_count = dirs.len() as u64;
    let root_digest = seal_directories(dirs, &mut blobs);
    Ok(Snapshot {
        root: root_digest,
        file_count,
        total_bytes,
        directory_count,
        symlink_count,
        blobs,
    })
}

/// Encodes directories deepest first so each parent can name its children by
/// digest; returns the root's digest.
fn seal_directories(
    dirs: BTreeMap<PathBuf, DirectoryListing>,
    blobs: &mut BTreeMap<Digest, BlobSource>,
) -> Digest {
    let mut by_depth: Vec<(PathBuf, DirectoryListing)> = dirs.into_iter().collect();
    by_depth.sort_by_cached_key(|(path, _)| std::cmp::Reverse(path.components().count()));
    let mut children: HashMap<PathBuf, Vec<DirectoryEntry>> = HashMap::new();
    let mut root = Digest::empty();
    for (path, mut listing) in by_depth {
        listing.directories = children.remove(&path).unwrap_or_default();
        let encoded = listing.encode();
        let digest = Digest::of(&encoded);
        blobs.entry(digest).or_insert(BlobSource::Inline(encoded));
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                children
                    .entry(parent.to_owned())
                    .or_default()
                    .push(DirectoryEntry {
                        name: name.to_string_lossy().into_owned(),
                        digest,
                    });
            }
            _ => root = digest,
        }
    }
    root
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::test_files::write;
    use std::fs;

    fn sample(root: &Path) {
        write(root, "README.md", b"hello\n");
        write(root, "src/main.rs", b"fn main() {}\n");
        write(root, "src/nested/deep.txt", b"deep");
        write(root, ".hidden", b"dotfile");
    }

    #[test]
    fn same_tree_gives_same_root() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        sample(a.path());
        sample(b.path());
        let sa = snapshot(a.path()).unwrap();
        let sb = snapshot(b.path()).unwrap();
        assert_eq!(sa.root, sb.root);
        assert_eq!(sa.file_count, 4);
        assert_eq!(sa.total_bytes, 6 + 13 + 4 + 7);
        assert_eq!(sa.directory_count, 3);
        // 4 distinct files + 3 directories.
        assert_eq!(sa.blob_count(), 7);
        assert_eq!(snapshot(a.path()).unwrap().root, sa.root);
    }

    #[test]
    fn one_changed_byte_changes_the_root() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let before = snapshot(dir.path()).unwrap().root;
        write(dir.path(), "src/nested/deep.txt", b"deeP");
        let after = snapshot(dir.path()).unwrap().root;
        assert_ne!(before, after);
    }

    #[test]
    fn raw_snapshots_keep_ignored_files_even_when_a_parent_ignores_them() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".gitignore", b"node_modules/\n");
        write(dir.path(), "node_modules/a/index.js", b"module.exports = 1");
        write(dir.path(), "node_modules/a/.gitignore", b"*.js\n");
        let deps = dir.path().join("node_modules");
        let honoured = snapshot(&deps).unwrap();
        assert_eq!(
            honoured.file_count, 1,
            "only the nested .gitignore survives"
        );
        let raw = snapshot_with(&deps, Ignores::None).unwrap();
        assert_eq!(raw.file_count, 2);
    }

    #[test]
    fn gitignored_files_and_dot_git_are_excluded() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let before = snapshot(dir.path()).unwrap();
        write(dir.path(), ".gitignore", b"*.log\ntarget/\n");
        let with_ignore = snapshot(dir.path()).unwrap();
        write(dir.path(), "build.log", b"noise");
        write(dir.path(), "target/debug/bin", b"binary");
        write(dir.path(), ".git/HEAD", b"ref: refs/heads/main\n");
        let after = snapshot(dir.path()).unwrap();
        assert_ne!(
            before.root, with_ignore.root,
            ".gitignore itself is included"
        );
        assert_eq!(with_ignore.root, after.root);
        assert_eq!(after.file_count, 5);
        assert!(after.blobs().all(|(_, src)| match src {
            BlobSource::File(p) => {
                !p.ends_with("build.log") && !p.components().any(|c| c.as_os_str() == ".git")
            }
            BlobSource::Inline(_) => true,
        }));
    }

    #[cfg(unix)]
    #[test]
    fn executable_bit_changes_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        let script = dir.path().join("src/main.rs");
        fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
        let before = snapshot(dir.path()).unwrap().root;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let after = snapshot(dir.path()).unwrap().root;
        assert_ne!(before, after);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_recorded_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        sample(dir.path());
        std::os::unix::fs::symlink("README.md", dir.path().join("link")).unwrap();
        let snap = snapshot(dir.path()).unwrap();
        assert_eq!(snap.symlink_count, 1);
        assert_eq!(snap.file_count, 4);
        let root = snap.source(&snap.root).unwrap().read().unwrap();
        let listing = DirectoryListing::decode(&snap.root, &root).unwrap();
        assert_eq!(
            listing.symlinks,
            vec![SymlinkEntry {
                name: "link".into(),
                target: "README.md".into()
            }]
        );
    }

    #[test]
    fn duplicate_contents_are_one_blob_and_sources_hash_right() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", b"same");
        write(dir.path(), "b/a.txt", b"same");
        let snap = snapshot(dir.path()).unwrap();
        assert_eq!(snap.file_count, 2);
        assert_eq!(snap.blob_count(), 3);
        for (digest, source) in snap.blobs() {
            assert_eq!(Digest::of(&source.read().unwrap()), *digest);
        }
    }

    #[test]
    fn a_file_is_not_a_snapshot_root() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "f", b"x");
        assert!(matches!(
            snapshot(&dir.path().join("f")),
            Err(TreeError::NotADirectory { .. })
        ));
    }
}
