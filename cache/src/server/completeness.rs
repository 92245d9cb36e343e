//! Whether everything a cache entry references is still in the CAS. An action
//! cache or index entry is only useful if a client can fetch all it names;
//! serving one whose blobs were evicted would send the client into a failed
//! download instead of a rebuild.
//!
//! Checking counts as use: `contains_many` and `get` mark what they touch, so
//! an entry that is served keeps its content from being evicted before it.

use buildfleet_proto::convert::from_reapi;
use std::collections::{HashSet, VecDeque};

use buildfleet_proto::reapi::{Directory, Tree};
use prost::Message;

use crate::error::CacheError;
use crate::store::BlobStore;
use crate::tree::TreeError;
use buildfleet_model::digest::{Digest, DigestError, DigestFunction};

/// What an entry needs present.
#[derive(Debug, Default, Clone)]
pub(crate) struct References {
    /// Plain blobs (output files, stdout, index blobs).
    pub(crate) blobs: Vec<Digest>,
    /// Root `Directory` digests whose whole tree must be in the CAS.
    pub(crate) directories: Vec<Digest>,
    /// REAPI `Tree` messages (output directories): the message itself and
    /// every file it names must be present.
    pub(crate) trees: Vec<Digest>,
}

/// Largest `Directory` or `Tree` blob the server decodes. Far beyond any
/// real directory (a million entries is well under it), it keeps a hostile
/// client from making the server read a gigabyte blob into memory by
/// naming it as a tree.
pub(crate) const MAX_STRUCTURE_BYTES: u64 = buildfleet_proto::MAX_MESSAGE_BYTES as u64;

/// A `Directory` or `Tree` blob (`what`) for decoding, refused when larger
/// than [`MAX_STRUCTURE_BYTES`] before a byte of it is read.
pub(crate) fn read_structure(
    store: &dyn BlobStore,
    digest: &Digest,
    what: &str,
) -> Result<Option<bytes::Bytes>, CacheError> {
    if digest.size_bytes > MAX_STRUCTURE_BYTES {
        return Err(CacheError::InvalidRequest(format!(
            "{what} blob {digest} is {} bytes; tree structure over {MAX_STRUCTURE_BYTES} bytes is refused",
            digest.size_bytes
        )));
    }
    Ok(store.get(digest)?)
}

/// The referenced blobs that are missing, in discovery order, each once.
/// Fails only on a store error or on referenced directory / tree blobs that
/// are present but do not decode.
pub(crate) fn missing(store: &dyn BlobStore, refs: &References) -> Result<Vec<Digest>, CacheError> {
    let mut missing = Vec::new();
    let mut wanted: Vec<Digest> = refs.blobs.clone();
    for tree in &refs.trees {
        let Some(bytes) = read_structure(store, tree, "Tree")? else {
            missing.push(*tree);
            continue;
        };
        let tree_msg = Tree::decode(bytes.as_ref()).map_err(|err| {
            CacheError::InvalidRequest(format!("blob {tree} is not a REAPI Tree: {err}"))
        })?;
        for dir in tree_msg.root.iter().chain(&tree_msg.children) {
            wanted.extend(file_digests(dir, tree.function)?);
        }
    }
    walk_directories(store, &refs.directories, &mut wanted, &mut missing)?;

    let mut seen = HashSet::new();
    wanted.retain(|d| seen.insert(*d));
    let present = store.contains_many(&wanted)?;
    missing.extend(
        wanted
            .into_iter()
            .zip(present)
            .filter(|(_, present)| !present)
            .map(|(d, _)| d),
    );
    let mut seen = HashSet::new();
    missing.retain(|d| seen.insert(*d));
    Ok(missing)
}

/// Breadth-first through `roots` in the CAS: missing directories go to
/// `missing`, file digests to `wanted`.
fn walk_directories(
    store: &dyn BlobStore,
    roots: &[Digest],
    wanted: &mut Vec<Digest>,
    missing: &mut Vec<Digest>,
) -> Result<(), CacheError> {
    let mut seen: HashSet<Digest> = roots.iter().copied().collect();
    let mut queue: VecDeque<Digest> = roots.iter().copied().collect();
    while let Some(digest) = queue.pop_front() {
        let Some(bytes) = read_structure(store, &digest, "Directory")? else {
            missing.push(digest);
            continue;
        };
        let dir = Directory::decode(bytes.as_ref())
            .map_err(|source| TreeError::Decode { digest, source })?;
        wanted.extend(file_digests(&dir, digest.function)?);
        for child in &dir.directories {
            let wire = child.digest.as_ref().ok_or(DigestError::Missing)?;
            let child = from_reapi(wire, digest.function)?;
            if seen.insert(child) {
                queue.push_back(child);
            }
        }
    }
    Ok(())
}

fn file_digests(dir: &Directory, function: DigestFunction) -> Result<Vec<Digest>, CacheError> {
    dir.files
        .iter()
        .map(|f| {
            let wire = f.digest.as_ref().ok_or(DigestError::Missing)?;
            Ok(from_reapi(wire, function)?)
        })
        .collect()
}

/// A short list of missing digests for logs and messages.
pub(crate) fn describe(missing: &[Digest]) -> String {
    const SHOWN: usize = 5;
    let mut out: Vec<String> = missing.iter().take(SHOWN).map(|d| d.to_string()).collect();
    if missing.len() > SHOWN {
        out.push(format!("and {} more", missing.len() - SHOWN));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use buildfleet_proto::reapi::{DirectoryNode, FileNode};
    use bytes::Bytes;

    use super::*;
    use crate::store::MemoryStore;
    use buildfleet_proto::convert::to_reapi;

    fn put(store: &MemoryStore, function: DigestFunction, data: &[u8]) -> Digest {
        let d = Digest::of_with(function, data);
        store.put(&d, Bytes::copy_from_slice(data)).unwrap();
        d
    }

    fn file(name: &str, d: Digest) -> FileNode {
        FileNode {
            name: name.into(),
            digest: Some(to_reapi(d)),
            ..Default::default()
        }
    }

    #[test]
    fn walks_directories_and_trees_and_reports_what_is_missing() {
        for function in DigestFunction::ALL {
            let store = MemoryStore::new();
            let present = put(&store, function, b"present");
            let absent = Digest::of_with(function, b"absent");
            let leaf = Directory {
                files: vec![file("gone", absent)],
                ..Default::default()
            };
            let leaf_d = put(&store, function, &leaf.encode_to_vec());
            let root = Directory {
                files: vec![file("here", present)],
                directories: vec![DirectoryNode {
                    name: "sub".into(),
                    digest: Some(to_reapi(leaf_d)),
                }],
                ..Default::default()
            };
            let root_d = put(&store, function, &root.encode_to_vec());
            let refs = References {
                directories: vec![root_d],
                ..Default::default()
            };
            assert_eq!(missing(&store, &refs).unwrap(), vec![absent]);

            let tree = Tree {
                root: Some(root.clone()),
                children: vec![leaf.clone()],
            };
            let tree_d = put(&store, function, &tree.encode_to_vec());
            let missing_dir = Digest::of_with(function, b"no dir");
            let refs = References {
                blobs: vec![present, absent],
                trees: vec![tree_d],
                directories: vec![missing_dir],
            };
            assert_eq!(missing(&store, &refs).unwrap(), vec![missing_dir, absent]);

            put(&store, function, b"absent");
            let refs = References {
                trees: vec![tree_d],
                directories: vec![root_d],
                ..Default::default()
            };
            assert!(missing(&store, &refs).unwrap().is_empty());
        }
    }
}
