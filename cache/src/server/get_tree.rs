//! GetTree: every directory under a root, breadth first, in pages.
//!
//! Page tokens are offsets into the breadth-first order. That order is a pure
//! function of the root digest, so tokens need no server-side state.

use buildfleet_proto::convert as wire;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use buildfleet_proto::reapi::{Directory, GetTreeResponse};
use prost::Message;

use super::on_store;
use crate::error::CacheError;
use crate::store::BlobStore;
use crate::tree::TreeError;
use buildfleet_model::digest::Digest;

/// Directories per page when the client does not choose.
const DEFAULT_PAGE_SIZE: usize = 1000;

/// The pages of the tree under `root`, starting at `page_token`. Directories
/// missing below the root are omitted, as REAPI specifies; a missing root is
/// NotFound.
pub(super) async fn pages(
    store: &Arc<dyn BlobStore>,
    root: Digest,
    page_size: i32,
    page_token: &str,
) -> Result<Vec<GetTreeResponse>, CacheError> {
    let start = if page_token.is_empty() {
        0
    } else {
        page_token.parse::<usize>().map_err(|_| {
            CacheError::InvalidRequest(format!("page token {page_token:?} is not one we issued"))
        })?
    };
    let page_size = match usize::try_from(page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(n) => n,
        Err(_) => {
            return Err(CacheError::InvalidRequest(format!(
                "negative page size {page_size}"
            )))
        }
    };
    let directories = on_store(store, move |s| Ok(walk(s, root))).await??;
    if start > directories.len() {
        return Err(CacheError::InvalidRequest(format!(
            "page token {page_token:?} is past the end of the tree"
        )));
    }
    let rest = &directories[start..];
    if rest.is_empty() {
        return Ok(vec![GetTreeResponse::default()]);
    }
    let page_count = rest.len().div_ceil(page_size);
    Ok(rest
        .chunks(page_size)
        .enumerate()
        .map(|(i, page)| GetTreeResponse {
            directories: page.to_vec(),
            next_page_token: if i + 1 < page_count {
                (start + (i + 1) * page_size).to_string()
            } else {
                String::new()
            },
        })
        .collect())
}

/// Breadth-first walk; each distinct directory appears once.
pub(super) fn walk(store: &dyn BlobStore, root: Digest) -> Result<Vec<Directory>, CacheError> {
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut out = Vec::new();
    while let Some(digest) = queue.pop_front() {
        let Some(bytes) = super::completeness::read_structure(store, &digest, "Directory")? else {
            if digest == root {
                return Err(CacheError::NotFound(root));
            }
            continue;
        };
        let dir = Directory::decode(bytes.as_ref())
            .map_err(|source| TreeError::Decode { digest, source })?;
        for child in &dir.directories {
            let wire = child
                .digest
                .as_ref()
                .ok_or(buildfleet_model::digest::DigestError::Missing)?;
            let child = wire::from_reapi(wire, root.function)?;
            if seen.insert(child) {
                queue.push_back(child);
            }
        }
        out.push(dir);
    }
    Ok(out)
}
