//! The part of a tree that globs select, as a tree of its own: a step whose
//! `inputs:` name `src/**/*.py` gets an action digest that ignores edits to
//! the README.

use std::collections::BTreeMap;

use bytes::Bytes;
use globset::GlobSet;

use super::encoding::{DirectoryEntry, DirectoryListing};
use super::{Listings, TreeError};
use buildfleet_model::digest::Digest;

/// A filtered tree: its root and the directory blobs that encode it (new
/// ones must be uploaded before anyone else can walk the subset).
#[derive(Debug, Clone)]
pub struct Subset {
    pub root: Digest,
    pub directories: BTreeMap<Digest, Bytes>,
    /// Files (and symlinks) kept.
    pub entries: u64,
}

/// Keeps the files and symlinks under `root` whose slash-separated path
/// matches `globs`; directories left empty are dropped so that adding an
/// unrelated empty directory does not change the digest.
pub fn subset(listings: &Listings, root: &Digest, globs: &GlobSet) -> Result<Subset, TreeError> {
    let mut out = Subset {
        root: Digest::empty(),
        directories: BTreeMap::new(),
        entries: 0,
    };
    let root_digest = walk(listings, root, "", globs, &mut out)?;
    out.root = root_digest.unwrap_or_else(|| {
        let empty = DirectoryListing::default().encode();
        let digest = Digest::of(&empty);
        out.directories.insert(digest, empty);
        digest
    });
    Ok(out)
}

fn walk(
    listings: &Listings,
    digest: &Digest,
    prefix: &str,
    globs: &GlobSet,
    out: &mut Subset,
) -> Result<Option<Digest>, TreeError> {
    let listing = listings.get(digest).ok_or(TreeError::MissingDirectory {
        digest: *digest,
        path: if prefix.is_empty() {
            ".".to_owned()
        } else {
            prefix.trim_end_matches('/').to_owned()
        },
    })?;
    let mut kept = DirectoryListing::default();
    for f in &listing.files {
        if globs.is_match(format!("{prefix}{}", f.name)) {
            kept.files.push(f.clone());
        }
    }
    for s in &listing.symlinks {
        if globs.is_match(format!("{prefix}{}", s.name)) {
            kept.symlinks.push(s.clone());
        }
    }
    for d in &listing.directories {
        let child_prefix = format!("{prefix}{}/", d.name);
        if let Some(child) = walk(listings, &d.digest, &child_prefix, globs, out)? {
            kept.directories.push(DirectoryEntry {
                name: d.name.clone(),
                digest: child,
            });
        }
    }
    out.entries += (kept.files.len() + kept.symlinks.len()) as u64;
    if kept.files.is_empty() && kept.symlinks.is_empty() && kept.directories.is_empty() {
        return Ok(None);
    }
    let encoded = kept.encode();
    let digest = Digest::of(&encoded);
    out.directories.insert(digest, encoded);
    Ok(Some(digest))
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

    fn globs(patterns: &[&str]) -> GlobSet {
        let mut b = globset::GlobSetBuilder::new();
        for p in patterns {
            b.add(globset::Glob::new(p).unwrap());
        }
        b.build().unwrap()
    }

    #[test]
    fn only_matching_files_count_and_unrelated_edits_keep_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/a.py", b"a");
        write(dir.path(), "src/deep/b.py", b"b");
        write(dir.path(), "README.md", b"v1");
        write(dir.path(), "docs/x.md", b"x");
        let (root, listings) = listings_of(dir.path());
        let g = globs(&["src/**/*.py"]);
        let first = subset(&listings, &root, &g).unwrap();
        assert_eq!(first.entries, 2);

        write(dir.path(), "README.md", b"v2");
        let (root2, listings2) = listings_of(dir.path());
        assert_ne!(root, root2);
        assert_eq!(subset(&listings2, &root2, &g).unwrap().root, first.root);

        write(dir.path(), "src/deep/b.py", b"changed");
        let (root3, listings3) = listings_of(dir.path());
        assert_ne!(subset(&listings3, &root3, &g).unwrap().root, first.root);
    }

    #[test]
    fn nothing_matching_gives_the_empty_tree_and_a_missing_listing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.txt", b"a");
        let (root, listings) = listings_of(dir.path());
        let none = subset(&listings, &root, &globs(&["*.py"])).unwrap();
        assert_eq!(none.entries, 0);
        assert_eq!(none.root, Digest::of(&DirectoryListing::default().encode()));
        let err = subset(&Listings::new(), &root, &globs(&["*"])).unwrap_err();
        assert!(err.to_string().contains("not available"), "{err}");
    }
}
