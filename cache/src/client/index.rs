//! The CacheIndex client: named entries (dependency caches, step history)
//! pointing at content in the CAS. Plain Rust in, plain Rust out.

use buildfleet_proto::v1 as pb;
use bytes::Bytes;

use super::CasClient;
use crate::error::CacheError;
use buildfleet_model::digest::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub key: String,
    pub payload: Bytes,
    /// Blobs that must be present for the entry to be served complete.
    pub blobs: Vec<Digest>,
    /// Root directories whose whole trees must be present.
    pub trees: Vec<Digest>,
    /// Server time of the Put; 0 on entries not yet stored.
    pub created_unix_ms: i64,
    /// Who wrote it, for which run and project (the writer is set by the
    /// server from the token; the scope by the reader, from where it was
    /// found).
    pub provenance: crate::Provenance,
}

/// A lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexHit {
    pub entry: IndexEntry,
    /// `None` when the exact key matched, else the prefix that did.
    pub matched_prefix: Option<String>,
    pub complete: bool,
    /// The scope (instance) it was found in.
    pub scope: String,
}

fn digests(list: &[pb::Digest], what: &str) -> Result<Vec<Digest>, CacheError> {
    list.iter()
        .map(|d| Digest::try_from(d).map_err(|e| CacheError::InvalidEntry(format!("{what}: {e}"))))
        .collect()
}

/// Whether a lookup may return an entry some of whose content is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Only an entry whose every blob is present: a restore needs them all.
    Required,
    /// Any entry, with `complete` saying which: an explanation reads only
    /// the entry's own payload.
    Optional,
}

impl CasClient {
    pub async fn index_put(&self, entry: &IndexEntry) -> Result<(), CacheError> {
        let provenance = self.provenance_of(&entry.provenance);
        let request = pb::IndexPutRequest {
            instance_name: self.instance.clone(),
            entry: Some(pb::IndexEntry {
                key: entry.key.clone(),
                payload: entry.payload.to_vec(),
                blobs: entry.blobs.iter().map(|d| (*d).into()).collect(),
                trees: entry.trees.iter().map(|d| (*d).into()).collect(),
                created_unix_ms: 0,
                provenance: Some(pb::Provenance {
                    writer: String::new(),
                    run: provenance.run,
                    project: provenance.project,
                }),
            }),
        };
        self.index.clone().put(request).await?;
        Ok(())
    }

    /// Keeps `blobs` and everything under `directories` from eviction until
    /// `until`; returns how many blobs were pinned (or had their pin
    /// extended) and how many named ones the CAS does not hold.
    pub async fn pin(
        &self,
        blobs: &[Digest],
        directories: &[Digest],
        until: std::time::SystemTime,
    ) -> Result<(u64, u64), CacheError> {
        let until_ms = until
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let request = pb::PinRequest {
            instance_name: self.instance.clone(),
            blobs: blobs.iter().map(|d| (*d).into()).collect(),
            directories: directories.iter().map(|d| (*d).into()).collect(),
            until_unix_ms: until_ms,
        };
        let r = self.index.clone().pin(request).await?.into_inner();
        Ok((r.pinned, r.missing))
    }

    /// The exact key, else the newest entry under each prefix in turn —
    /// the exact key in every scope read before any prefix, so a shared
    /// exact entry beats an overlay's fallback.
    pub async fn index_lookup(
        &self,
        exact: &str,
        prefixes: &[String],
        completeness: Completeness,
    ) -> Result<Option<IndexHit>, CacheError> {
        if !exact.is_empty() {
            for scope in &self.reads {
                if let Some(hit) = self.lookup_in(scope, exact, &[], completeness).await? {
                    return Ok(Some(hit));
                }
            }
        }
        if !prefixes.is_empty() {
            for scope in &self.reads {
                if let Some(hit) = self.lookup_in(scope, "", prefixes, completeness).await? {
                    return Ok(Some(hit));
                }
            }
        }
        Ok(None)
    }

    async fn lookup_in(
        &self,
        scope: &str,
        exact: &str,
        prefixes: &[String],
        completeness: Completeness,
    ) -> Result<Option<IndexHit>, CacheError> {
        let request = pb::IndexLookupRequest {
            instance_name: scope.to_owned(),
            exact: exact.to_owned(),
            prefixes: prefixes.to_vec(),
            require_complete: completeness == Completeness::Required,
        };
        let response = self.index.clone().lookup(request).await?.into_inner();
        let Some(entry) = response.entry else {
            return Ok(None);
        };
        Ok(Some(IndexHit {
            entry: IndexEntry {
                blobs: digests(&entry.blobs, "index entry blob")?,
                trees: digests(&entry.trees, "index entry tree")?,
                key: entry.key,
                payload: Bytes::from(entry.payload),
                created_unix_ms: entry.created_unix_ms,
                provenance: crate::Provenance {
                    scope: scope.to_owned(),
                    ..entry
                        .provenance
                        .map(crate::Provenance::from_wire)
                        .unwrap_or_default()
                },
            },
            matched_prefix: Some(response.matched_prefix).filter(|p| !p.is_empty()),
            complete: response.complete,
            scope: scope.to_owned(),
        }))
    }
}
