//! How much a tree expands to, counted over its distinct directories
//! before anything is laid out. A DAG of 31 tiny directory blobs can
//! describe 2^30 directories; laying it out until a count runs over would
//! hold millions of paths in memory first (842 MiB, measured, for the
//! 2,000,000-entry limit). Counting each distinct directory once, with
//! memoised subtree sizes, refuses it in microseconds and kilobytes.

use std::collections::HashMap;

use crate::error::CacheError;
use crate::tree::{Listings, TreeError};
use buildfleet_model::digest::Digest;

/// Deeper than any real tree; bounds what a hostile one can describe.
pub(super) const MAX_DEPTH: usize = 256;
/// Files and directories one materialisation may create.
pub(super) const MAX_ENTRIES: u64 = 2_000_000;

/// A subtree's expanded size: its directories and files, and its depth.
#[derive(Clone, Copy)]
struct Expanded {
    entries: u64,
    depth: usize,
}

/// Refuses the tree under `root` when it expands past [`MAX_ENTRIES`]
/// files and directories or [`MAX_DEPTH`] levels. Directories missing
/// from `known` count as one entry here; the layout checks them as it
/// fetches them.
pub(super) fn check(known: &Listings, root: &Digest) -> Result<(), CacheError> {
    let mut done: HashMap<Digest, Expanded> = HashMap::new();
    // Post-order without recursion: a node is summed once all its
    // children are. Content addressing makes cycles impossible.
    let mut stack = vec![(*root, false)];
    while let Some((digest, children_done)) = stack.pop() {
        if done.contains_key(&digest) {
            continue;
        }
        let Some(listing) = known.get(&digest) else {
            done.insert(
                digest,
                Expanded {
                    entries: 1,
                    depth: 0,
                },
            );
            continue;
        };
        if !children_done {
            stack.push((digest, true));
            for child in &listing.directories {
                if !done.contains_key(&child.digest) {
                    stack.push((child.digest, false));
                }
            }
            continue;
        }
        let mut total = Expanded {
            entries: 1 + listing.files.len() as u64,
            depth: 0,
        };
        for child in &listing.directories {
            let sub = done[&child.digest];
            total.entries = total.entries.saturating_add(sub.entries);
            total.depth = total.depth.max(sub.depth + 1);
        }
        if total.entries > MAX_ENTRIES {
            return Err(TreeError::TooLarge {
                what: "files and directories",
                limit: MAX_ENTRIES,
            }
            .into());
        }
        if total.depth > MAX_DEPTH {
            return Err(TreeError::TooLarge {
                what: "levels of directories",
                limit: MAX_DEPTH as u64,
            }
            .into());
        }
        done.insert(digest, total);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{DirectoryEntry, DirectoryListing, FileEntry, FileMode};

    fn dir(children: &[Digest], files: usize) -> DirectoryListing {
        DirectoryListing {
            files: (0..files)
                .map(|i| FileEntry {
                    name: format!("f{i}"),
                    digest: Digest::of(b"x"),
                    mode: FileMode::Plain,
                })
                .collect(),
            directories: children
                .iter()
                .enumerate()
                .map(|(i, d)| DirectoryEntry {
                    name: format!("d{i}"),
                    digest: *d,
                })
                .collect(),
            symlinks: Vec::new(),
        }
    }

    /// A chain of `levels` directories, each naming the next `fan` times.
    fn dag(levels: usize, fan: usize, files: usize) -> (Listings, Digest) {
        let mut known = Listings::new();
        let mut below: Vec<Digest> = Vec::new();
        for level in 0..levels {
            let d = Digest::of(format!("dir {level}").as_bytes());
            known.insert(d, dir(&below, files));
            below = vec![d; fan];
        }
        (known, below[0])
    }

    #[test]
    fn a_dag_is_counted_as_it_expands_and_refused_past_the_limits() {
        // 31 levels, each naming the one below twice: 2^31 - 1 directories.
        let (known, root) = dag(31, 2, 1);
        let err = check(&known, &root).unwrap_err().to_string();
        assert!(
            err.contains("more than 2000000 files and directories"),
            "{err}"
        );

        // 20 levels of 2: 2^20 - 1 directories and as many files, ~2.1M.
        assert!(check(&dag(20, 2, 1).0, &dag(20, 2, 1).1).is_err());
        // 19 levels: ~1M, allowed.
        let (known, root) = dag(19, 2, 1);
        check(&known, &root).unwrap();

        let (known, root) = dag(258, 1, 0);
        let err = check(&known, &root).unwrap_err().to_string();
        assert!(err.contains("more than 256 levels"), "{err}");
        let (known, root) = dag(257, 1, 0);
        check(&known, &root).expect("256 levels below the root are allowed");
    }
}
