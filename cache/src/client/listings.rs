//! Whole-tree listings in one GetTree stream: what subsetting and diffing
//! need, without any file contents.

use buildfleet_proto::convert::to_reapi;
use buildfleet_proto::reapi::GetTreeRequest;
use prost::Message;

use super::{blake3_function, CasClient};
use crate::error::CacheError;
use crate::tree::{listing_from_proto, Listings};
use buildfleet_model::digest::Digest;

impl CasClient {
    /// Every directory under `root`, keyed by the digest of its encoding.
    /// Entries are keyed by their own hash, so a server can't substitute one
    /// directory for another; walks from `root` only reach verified ones.
    pub async fn tree_listings(&self, root: &Digest) -> Result<Listings, CacheError> {
        let mut known = Listings::new();
        let mut page_token = String::new();
        loop {
            let request = GetTreeRequest {
                instance_name: self.instance.clone(),
                root_digest: Some(to_reapi(*root)),
                page_size: 0,
                page_token: page_token.clone(),
                digest_function: blake3_function(),
            };
            let mut stream = self
                .cas
                .clone()
                .get_tree(request)
                .await
                .map_err(|status| match status.code() {
                    tonic::Code::NotFound => CacheError::NotFound(*root),
                    _ => CacheError::from(status),
                })?
                .into_inner();
            page_token.clear();
            while let Some(page) = stream.message().await? {
                for dir in &page.directories {
                    let digest = Digest::of(&dir.encode_to_vec());
                    known.insert(digest, listing_from_proto(dir)?);
                }
                page_token = page.next_page_token;
            }
            if page_token.is_empty() {
                return Ok(known);
            }
        }
    }
}
