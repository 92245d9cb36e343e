//! What changed between two trees, by path: the answer to "why did this
//! step miss the cache?". Walks only subtrees whose digests differ, so a
//! one-file change in a 20,000-file tree touches a handful of listings.

use super::encoding::DirectoryListing;
use super::{Listings, TreeError};
use buildfleet_model::digest::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "changed",
        }
    }
}

/// One differing path; directories added or removed whole are one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

/// Differences from `old` to `new`, in path order. Both trees' listings must
/// be in the maps given (each may hold only its own tree).
pub fn diff(
    old_listings: &Listings,
    old: &Digest,
    new_listings: &Listings,
    new: &Digest,
) -> Result<Vec<Change>, TreeError> {
    let mut changes = Vec::new();
    walk(old_listings, old, new_listings, new, "", &mut changes)?;
    Ok(changes)
}

fn get<'a>(
    listings: &'a Listings,
    digest: &Digest,
    path: &str,
) -> Result<&'a DirectoryListing, TreeError> {
    listings
        .get(digest)
        .ok_or_else(|| TreeError::MissingDirectory {
            digest: *digest,
            path: if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            },
        })
}

/// A node of either kind, keyed by name, for a merge walk.
#[derive(PartialEq, Eq)]
enum Node<'a> {
    File(&'a Digest, super::FileMode),
    Dir(&'a Digest),
    Link(&'a str),
}

fn nodes(listing: &DirectoryListing) -> std::collections::BTreeMap<&str, Node<'_>> {
    let mut map = std::collections::BTreeMap::new();
    for f in &listing.files {
        map.insert(f.name.as_str(), Node::File(&f.digest, f.mode));
    }
    for d in &listing.directories {
        map.insert(d.name.as_str(), Node::Dir(&d.digest));
    }
    for s in &listing.symlinks {
        map.insert(s.name.as_str(), Node::Link(&s.target));
    }
    map
}

fn walk(
    old_listings: &Listings,
    old: &Digest,
    new_listings: &Listings,
    new: &Digest,
    path: &str,
    out: &mut Vec<Change>,
) -> Result<(), TreeError> {
    if old == new {
        return Ok(());
    }
    let a = nodes(get(old_listings, old, path)?);
    let b = nodes(get(new_listings, new, path)?);
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}/{name}")
        }
    };
    let mut names: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let child = join(name);
        match (a.get(name), b.get(name)) {
            (Some(x), Some(y)) if x == y => {}
            (Some(Node::Dir(x)), Some(Node::Dir(y))) => {
                walk(old_listings, x, new_listings, y, &child, out)?;
            }
            (Some(_), Some(_)) => out.push(Change {
                path: child,
                kind: ChangeKind::Modified,
            }),
            (Some(_), None) => out.push(Change {
                path: child,
                kind: ChangeKind::Removed,
            }),
            (None, Some(_)) => out.push(Change {
                path: child,
                kind: ChangeKind::Added,
            }),
            (None, None) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::snapshot;
    use crate::tree::test_files::write;

    fn listings_of(root: &std::path::Path) -> (Digest, Listings) {
        let snap = snapshot(root).unwrap();
        (snap.root, snap.listings().unwrap())
    }

    #[test]
    fn names_changed_added_and_removed_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/a.py", b"a");
        write(dir.path(), "src/b.py", b"b");
        write(dir.path(), "old/x", b"x");
        write(dir.path(), "same/y", b"y");
        let (old, old_l) = listings_of(dir.path());
        write(dir.path(), "src/a.py", b"a2");
        std::fs::remove_file(dir.path().join("src/b.py")).unwrap();
        std::fs::remove_dir_all(dir.path().join("old")).unwrap();
        write(dir.path(), "new.txt", b"n");
        let (new, new_l) = listings_of(dir.path());
        let changes = diff(&old_l, &old, &new_l, &new).unwrap();
        let rendered: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {}", c.kind.name(), c.path))
            .collect();
        assert_eq!(
            rendered,
            vec![
                "added new.txt",
                "removed old",
                "changed src/a.py",
                "removed src/b.py"
            ]
        );
        assert!(diff(&old_l, &old, &old_l, &old).unwrap().is_empty());
    }
}
