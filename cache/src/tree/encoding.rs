//! The REAPI `Directory` wire form of a directory listing. One of the few
//! places prost types are allowed: everything else works on
//! [`DirectoryListing`].

use super::FileMode;
use buildfleet_model::DigestFunction;
use buildfleet_proto::convert::{from_reapi, to_reapi};
use bytes::Bytes;
use prost::Message;

use buildfleet_proto::reapi;

use super::TreeError;
use buildfleet_model::digest::Digest;

/// A directory's immediate contents, in plain Rust.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectoryListing {
    pub files: Vec<FileEntry>,
    pub directories: Vec<DirectoryEntry>,
    pub symlinks: Vec<SymlinkEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub digest: Digest,
    pub mode: FileMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub name: String,
    pub digest: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymlinkEntry {
    pub name: String,
    pub target: String,
}

/// Rejects names that would escape or alias a directory when materialised,
/// because listings can come from untrusted peers.
fn validate_name(name: &str) -> Result<(), TreeError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(TreeError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

impl DirectoryListing {
    /// The canonical encoding: REAPI requires each node list sorted by name so
    /// that equal trees get equal digests.
    pub fn encode(&self) -> Bytes {
        let mut dir = reapi::Directory {
            files: self
                .files
                .iter()
                .map(|f| reapi::FileNode {
                    name: f.name.clone(),
                    digest: Some(to_reapi(f.digest)),
                    is_executable: f.mode.is_executable(),
                    node_properties: None,
                })
                .collect(),
            directories: self
                .directories
                .iter()
                .map(|d| reapi::DirectoryNode {
                    name: d.name.clone(),
                    digest: Some(to_reapi(d.digest)),
                })
                .collect(),
            symlinks: self
                .symlinks
                .iter()
                .map(|s| reapi::SymlinkNode {
                    name: s.name.clone(),
                    target: s.target.clone(),
                    node_properties: None,
                })
                .collect(),
            node_properties: None,
        };
        dir.files.sort_by(|a, b| a.name.cmp(&b.name));
        dir.directories.sort_by(|a, b| a.name.cmp(&b.name));
        dir.symlinks.sort_by(|a, b| a.name.cmp(&b.name));
        Bytes::from(dir.encode_to_vec())
    }

    /// Decodes and validates a directory blob fetched under `digest`.
    pub fn decode(digest: &Digest, bytes: &[u8]) -> Result<DirectoryListing, TreeError> {
        let dir = reapi::Directory::decode(bytes).map_err(|source| TreeError::Decode {
            digest: *digest,
            source,
        })?;
        listing_from_proto(&dir)
    }
}

/// The REAPI `Tree` message for a snapshot (root plus every descendant
/// directory), which ActionResult output directories point at.
pub fn tree_message(snapshot: &super::Snapshot) -> Result<Bytes, TreeError> {
    let mut root = None;
    let mut children = Vec::new();
    for (digest, source) in snapshot.blobs() {
        let super::BlobSource::Inline(bytes) = source else {
            continue;
        };
        let dir = reapi::Directory::decode(bytes.as_ref()).map_err(|source| TreeError::Decode {
            digest: *digest,
            source,
        })?;
        if *digest == snapshot.root {
            root = Some(dir);
        } else {
            children.push(dir);
        }
    }
    let tree = reapi::Tree { root, children };
    Ok(Bytes::from(tree.encode_to_vec()))
}

/// Converts a wire `Directory` (e.g. from GetTree), validating every name and
/// digest.
pub(crate) fn listing_from_proto(dir: &reapi::Directory) -> Result<DirectoryListing, TreeError> {
    let digest_of = |name: &str, d: &Option<reapi::Digest>| -> Result<Digest, TreeError> {
        let wire = d.as_ref().ok_or_else(|| TreeError::InvalidDigest {
            name: name.to_owned(),
            source: buildfleet_model::digest::DigestError::Missing,
        })?;
        from_reapi(wire, DigestFunction::Blake3).map_err(|source| TreeError::InvalidDigest {
            name: name.to_owned(),
            source,
        })
    };
    let mut listing = DirectoryListing::default();
    for f in &dir.files {
        validate_name(&f.name)?;
        listing.files.push(FileEntry {
            name: f.name.clone(),
            digest: digest_of(&f.name, &f.digest)?,
            mode: FileMode::of(f.is_executable),
        });
    }
    for d in &dir.directories {
        validate_name(&d.name)?;
        listing.directories.push(DirectoryEntry {
            name: d.name.clone(),
            digest: digest_of(&d.name, &d.digest)?,
        });
    }
    for s in &dir.symlinks {
        validate_name(&s.name)?;
        listing.symlinks.push(SymlinkEntry {
            name: s.name.clone(),
            target: s.target.clone(),
        });
    }
    let mut names: Vec<&str> = dir
        .files
        .iter()
        .map(|f| f.name.as_str())
        .chain(dir.directories.iter().map(|d| d.name.as_str()))
        .chain(dir.symlinks.iter().map(|s| s.name.as_str()))
        .collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        // Two nodes with one name would make materialisation order-dependent.
        return Err(TreeError::DuplicateName {
            name: pair[0].to_owned(),
        });
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_sorted_and_round_trips() {
        let listing = DirectoryListing {
            files: vec![
                FileEntry {
                    name: "b".into(),
                    digest: Digest::of(b"b"),
                    mode: FileMode::Executable,
                },
                FileEntry {
                    name: "a".into(),
                    digest: Digest::of(b"a"),
                    mode: FileMode::Plain,
                },
            ],
            directories: vec![DirectoryEntry {
                name: "sub".into(),
                digest: Digest::of(b"sub"),
            }],
            symlinks: vec![SymlinkEntry {
                name: "link".into(),
                target: "a".into(),
            }],
        };
        let bytes = listing.encode();
        let digest = Digest::of(&bytes);
        let decoded = DirectoryListing::decode(&digest, &bytes).unwrap();
        assert_eq!(decoded.files[0].name, "a");
        assert_eq!(decoded.files[1].name, "b");
        assert!(decoded.files[1].mode.is_executable());
        assert_eq!(decoded.directories, listing.directories);
        assert_eq!(decoded.symlinks, listing.symlinks);
        // Order of construction does not matter.
        let mut reversed = listing.clone();
        reversed.files.reverse();
        assert_eq!(reversed.encode(), bytes);
    }

    #[test]
    fn escaping_names_are_rejected() {
        for bad in ["", ".", "..", "a/b"] {
            let dir = reapi::Directory {
                symlinks: vec![reapi::SymlinkNode {
                    name: bad.into(),
                    target: "x".into(),
                    node_properties: None,
                }],
                ..Default::default()
            };
            assert!(matches!(
                listing_from_proto(&dir),
                Err(TreeError::InvalidName { .. })
            ));
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let dir = reapi::Directory {
            files: vec![reapi::FileNode {
                name: "x".into(),
                digest: Some(to_reapi(Digest::empty())),
                ..Default::default()
            }],
            symlinks: vec![reapi::SymlinkNode {
                name: "x".into(),
                target: "/etc".into(),
                node_properties: None,
            }],
            ..Default::default()
        };
        assert!(matches!(
            listing_from_proto(&dir),
            Err(TreeError::DuplicateName { .. })
        ));
    }
}
