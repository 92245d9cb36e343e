//! `buildfleet.v1.CacheIndex`: client-chosen string keys → opaque entries,
//! per instance name, with prefix fallback ("the newest build of any commit
//! on this branch") and an optional completeness requirement.
//!
//! Lookup order: the exact key, then each prefix in the order given, where a
//! prefix yields the newest entry (by the server's `created_unix_ms`) whose
//! key starts with it. With `Completeness::Required`, candidates whose blobs or
//! trees are not all in the CAS are passed over. Creation stamps are strictly
//! increasing per server, so "newest" is never a tie between two puts.

use crate::client::Completeness;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use buildfleet_proto::v1::cache_index_server::CacheIndex;
use buildfleet_proto::v1::{
    IndexEntry, IndexLookupRequest, IndexLookupResponse, IndexPutRequest, IndexPutResponse,
    PinRequest, PinResponse,
};
use bytes::Bytes;
use prost::Message;
use tonic::{Request, Response, Status};

use super::completeness::{describe, missing, References};
use super::instance::{instance_key, strip_instance};
use super::on_store;
use crate::error::CacheError;
use crate::store::{BlobStore, MetaTable, StoreError};
use buildfleet_model::digest::Digest;

pub(crate) struct IndexService {
    store: Arc<dyn BlobStore>,
    /// The last creation stamp handed out.
    last_stamp: AtomicI64,
}

impl IndexService {
    pub(crate) fn new(store: Arc<dyn BlobStore>) -> Self {
        IndexService {
            store,
            last_stamp: AtomicI64::new(0),
        }
    }

    /// Now in Unix milliseconds, but always after the previous stamp.
    fn stamp(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let prev = self
            .last_stamp
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        now.max(prev + 1)
    }
}

/// The entry's references as BLAKE3 digests (our own protocol's function).
fn references(entry: &IndexEntry) -> Result<References, CacheError> {
    let parse = |list: &[buildfleet_proto::v1::Digest]| {
        list.iter()
            .map(|d| Digest::try_from(d).map_err(CacheError::from))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(References {
        blobs: parse(&entry.blobs)?,
        directories: parse(&entry.trees)?,
        trees: Vec::new(),
    })
}

/// What a lookup found.
struct Found {
    entry: IndexEntry,
    matched_prefix: String,
    complete: bool,
}

/// Judges one candidate: `Some` if it may be served. Entries that fail to
/// decode or reference undecodable trees are logged and passed over.
fn judge(
    store: &dyn BlobStore,
    instance: &str,
    entry: IndexEntry,
    matched_prefix: &str,
    completeness: Completeness,
) -> Result<Option<Found>, StoreError> {
    let complete = match references(&entry).and_then(|refs| missing(store, &refs)) {
        Ok(gone) if gone.is_empty() => true,
        Ok(gone) => {
            tracing::info!(
                instance,
                key = %entry.key,
                missing = gone.len(),
                blobs = %describe(&gone),
                "index entry is incomplete"
            );
            false
        }
        Err(CacheError::Store(err)) => return Err(err),
        Err(err) => {
            tracing::warn!(instance, key = %entry.key, %err, "index entry references unusable content");
            false
        }
    };
    if completeness == Completeness::Required && !complete {
        return Ok(None);
    }
    Ok(Some(Found {
        entry,
        matched_prefix: matched_prefix.to_owned(),
        complete,
    }))
}

fn decode(instance: &str, key: &[u8], bytes: &[u8]) -> Option<IndexEntry> {
    match IndexEntry::decode(bytes) {
        Ok(entry) => Some(entry),
        Err(err) => {
            tracing::error!(
                instance,
                key = %String::from_utf8_lossy(key),
                %err,
                "stored index entry does not decode; skipping it"
            );
            None
        }
    }
}

fn lookup(
    store: &dyn BlobStore,
    request: &IndexLookupRequest,
) -> Result<Option<Found>, StoreError> {
    let instance = request.instance_name.as_str();
    let require = match request.require_complete {
        true => Completeness::Required,
        false => Completeness::Optional,
    };
    if !request.exact.is_empty() {
        let key = instance_key(instance, request.exact.as_bytes());
        if let Some(bytes) = store.meta_get(MetaTable::Index, &key)? {
            if let Some(entry) = decode(instance, request.exact.as_bytes(), &bytes) {
                if let Some(found) = judge(store, instance, entry, "", require)? {
                    return Ok(Some(found));
                }
            }
        }
    }
    for prefix in &request.prefixes {
        let scan =
            store.meta_scan_prefix(MetaTable::Index, &instance_key(instance, prefix.as_bytes()))?;
        let mut candidates: Vec<IndexEntry> = scan
            .iter()
            .filter_map(|(full, bytes)| {
                decode(instance, strip_instance(full).unwrap_or(full), bytes)
            })
            .collect();
        // Newest first; equal stamps (only from another server's clock) by key.
        candidates.sort_by(|a, b| {
            b.created_unix_ms
                .cmp(&a.created_unix_ms)
                .then_with(|| b.key.cmp(&a.key))
        });
        for entry in candidates {
            if let Some(found) = judge(store, instance, entry, prefix, require)? {
                return Ok(Some(found));
            }
        }
    }
    Ok(None)
}

/// Every blob a pin request names: the blobs, and each directory with all
/// the directories and files under it. Returns them and how many named
/// roots were missing.
fn pinned_blobs(
    store: &dyn BlobStore,
    request: &PinRequest,
) -> Result<(Vec<Digest>, u64), CacheError> {
    let parse = |d: &buildfleet_proto::v1::Digest| Digest::try_from(d).map_err(CacheError::from);
    let mut out = Vec::new();
    let mut missing = 0;
    for d in &request.blobs {
        out.push(parse(d)?);
    }
    for d in &request.directories {
        let root = parse(d)?;
        let dirs = match super::get_tree::walk(store, root) {
            Ok(dirs) => dirs,
            Err(CacheError::NotFound(_)) => {
                missing += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        out.push(root);
        for dir in dirs {
            let children = dir.directories.iter().filter_map(|c| c.digest.as_ref());
            let files = dir.files.iter().filter_map(|f| f.digest.as_ref());
            for wire in children.chain(files) {
                out.push(buildfleet_proto::convert::from_reapi(wire, root.function)?);
            }
        }
    }
    let present = store.contains_many(&out)?;
    missing += present.iter().filter(|p| !**p).count() as u64;
    out.sort_by_key(|d| d.key_bytes());
    out.dedup();
    Ok((out, missing))
}

#[tonic::async_trait]
impl CacheIndex for IndexService {
    async fn pin(&self, request: Request<PinRequest>) -> Result<Response<PinResponse>, Status> {
        let request = request.into_inner();
        let until = UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(request.until_unix_ms).unwrap_or(0));
        let (pinned, missing) = on_store(&self.store, move |s| {
            // Store errors end the request; a tree that cannot be read is
            // the request's error, said as such.
            Ok(pinned_blobs(s, &request).and_then(|(blobs, missing)| {
                let pinned = crate::store::pin(s, &blobs, until)?;
                Ok((pinned as u64, missing))
            }))
        })
        .await??;
        if missing > 0 {
            tracing::warn!(missing, "pin request named blobs the CAS does not hold");
        }
        Ok(Response::new(PinResponse { pinned, missing }))
    }

    async fn put(
        &self,
        request: Request<IndexPutRequest>,
    ) -> Result<Response<IndexPutResponse>, Status> {
        let caller = buildfleet_trust::Caller::of(&request)?;
        let request = request.into_inner();
        let mut entry = request
            .entry
            .ok_or_else(|| CacheError::InvalidRequest("no entry to store".into()))?;
        // Who wrote it is the token's name, whatever the entry claims.
        entry.provenance.get_or_insert_with(Default::default).writer =
            caller.owner().unwrap_or_default().to_owned();
        if entry.key.is_empty() {
            return Err(CacheError::InvalidRequest("index keys must not be empty".into()).into());
        }
        // Refuse malformed digests now rather than at every lookup.
        references(&entry)?;
        entry.created_unix_ms = self.stamp();
        let key = instance_key(&request.instance_name, entry.key.as_bytes());
        let value = Bytes::from(entry.encode_to_vec());
        on_store(&self.store, move |s| {
            s.meta_put(MetaTable::Index, &key, value)
        })
        .await?;
        Ok(Response::new(IndexPutResponse {}))
    }

    async fn lookup(
        &self,
        request: Request<IndexLookupRequest>,
    ) -> Result<Response<IndexLookupResponse>, Status> {
        let request = request.into_inner();
        // An empty prefix would scan (and decode, and judge) every entry
        // of the instance for one lookup: refused, not served slowly.
        if request.prefixes.iter().any(String::is_empty) {
            return Err(CacheError::InvalidRequest(
                "an index lookup prefix must not be empty (it would scan every entry)".into(),
            )
            .into());
        }
        let found = on_store(&self.store, move |s| lookup(s, &request)).await?;
        Ok(Response::new(match found {
            Some(found) => IndexLookupResponse {
                entry: Some(found.entry),
                matched_prefix: found.matched_prefix,
                complete: found.complete,
            },
            None => IndexLookupResponse::default(),
        }))
    }
}
