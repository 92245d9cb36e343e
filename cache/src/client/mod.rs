//! A REAPI CAS client for our own cache: uploads snapshots, reads blobs and
//! materialises trees. Every byte it receives is verified before use, so a
//! faulty or hostile server can't plant content.

mod action_cache;
mod blobs;
mod expansion;
mod index;
#[cfg(unix)]
mod link_tree;
mod listings;
#[cfg(unix)]
mod local_cas;
mod materialise;
#[cfg(unix)]
mod materialise_local;
mod transfer;
mod upload;

use buildfleet_model::DigestFunction;
use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
use buildfleet_proto::convert::{from_reapi, to_reapi};
use buildfleet_proto::reapi::action_cache_client::ActionCacheClient;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::v1::cache_index_client::CacheIndexClient;
use buildfleet_trust::{AuthChannel, ClientTrust};
use bytes::Bytes;
use tonic::transport::Channel;

use crate::error::CacheError;
use crate::server::MAX_MESSAGE_BYTES;
use buildfleet_model::digest::Digest;

pub use action_cache::{OutputDirectory, OutputFile, Provenance, StepResult};
pub use index::{Completeness, IndexEntry, IndexHit};
#[cfg(unix)]
pub use local_cas::{
    copy_entry, LocalCas, LocalCasError, LocalCasStats, Placement, Probe, Released,
};
pub use materialise::MaterialiseStats;
pub use upload::UploadStats;

/// Blobs below this size travel in batches; at or above it, ByteStream, so
/// one large file never holds up a batch or needs to fit in memory.
pub const BATCH_BLOB_LIMIT: u64 = 1024 * 1024;

/// Target size of one batch: below the server's 4 MiB limit with headroom
/// for message framing.
pub const BATCH_TARGET_BYTES: u64 = 3 * 1024 * 1024;

/// Digests per FindMissingBlobs call, keeping each request well under the
/// message limit (about 80 bytes per digest).
const FIND_MISSING_CHUNK: usize = 10_000;

/// A connection to a REAPI cache. Cheap to clone: clones share the channel.
#[derive(Debug, Clone)]
pub struct CasClient {
    cas: ContentAddressableStorageClient<AuthChannel>,
    bytestream: ByteStreamClient<AuthChannel>,
    action_cache: ActionCacheClient<AuthChannel>,
    index: CacheIndexClient<AuthChannel>,
    /// Where action results and index entries are written.
    instance: String,
    /// Where they are read from, first match wins (the cache trust scope;
    /// just `instance` unless [`CasClient::scoped`]).
    reads: Vec<String>,
    /// The run and project entries written through this client are for.
    writes_for: Provenance,
}

impl CasClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:7070`) without a token:
    /// for a cache that has no token file.
    pub async fn connect(url: &str) -> Result<CasClient, CacheError> {
        CasClient::connect_with(url, &ClientTrust::none()).await
    }

    /// Connects to `url` presenting `trust`'s token on every call.
    pub async fn connect_with(url: &str, trust: &ClientTrust) -> Result<CasClient, CacheError> {
        let channel = buildfleet_trust::connect(url, trust).await?;
        Ok(CasClient::from_auth_channel(channel))
    }

    /// Wraps an existing channel (no token), for callers that share one
    /// connection.
    pub fn from_channel(channel: Channel) -> CasClient {
        CasClient::from_auth_channel(ClientTrust::none().wrap(channel))
    }

    /// Wraps a channel that presents a token.
    pub fn from_auth_channel(channel: AuthChannel) -> CasClient {
        let cas = ContentAddressableStorageClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let bytestream = ByteStreamClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let action_cache = ActionCacheClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let index = CacheIndexClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        CasClient {
            cas,
            bytestream,
            action_cache,
            index,
            instance: String::new(),
            reads: vec![String::new()],
            writes_for: Provenance::default(),
        }
    }

    /// The same connection, reading and writing action results and index
    /// entries in `scope` (blobs are shared by every scope: a blob is
    /// named by its content, so sharing it trusts nothing).
    pub fn scoped(&self, scope: &buildfleet_model::CacheScope) -> CasClient {
        self.scoped_for(scope, "", "")
    }

    /// [`Self::scoped`], and entries written record `run` and `project`
    /// as their provenance.
    pub fn scoped_for(
        &self,
        scope: &buildfleet_model::CacheScope,
        run: &str,
        project: &str,
    ) -> CasClient {
        let mut scoped = self.clone();
        scoped.writes_for = Provenance {
            run: run.to_owned(),
            project: project.to_owned(),
            ..Provenance::default()
        };
        scoped.instance = scope.write.clone();
        scoped.reads = match scope.read.is_empty() {
            true => vec![scope.write.clone()],
            false => scope.read.clone(),
        };
        scoped
    }

    /// The instance entries are written to.
    pub fn write_scope(&self) -> &str {
        &self.instance
    }

    /// `given`, with this client's run and project where it names none.
    fn provenance_of(&self, given: &Provenance) -> Provenance {
        let pick = |a: &str, b: &str| {
            if a.is_empty() {
                b.to_owned()
            } else {
                a.to_owned()
            }
        };
        Provenance {
            scope: self.instance.clone(),
            writer: String::new(),
            run: pick(&given.run, &self.writes_for.run),
            project: pick(&given.project, &self.writes_for.project),
        }
    }

    /// The digests among `digests` that the server lacks, in input order.
    /// The empty blob is never missing.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, CacheError> {
        let wanted: Vec<Digest> = digests
            .iter()
            .copied()
            .filter(|d| !d.is_empty_blob())
            .collect();
        let mut missing = Vec::new();
        for chunk in wanted.chunks(FIND_MISSING_CHUNK) {
            let request = buildfleet_proto::reapi::FindMissingBlobsRequest {
                instance_name: self.instance.clone(),
                blob_digests: chunk.iter().map(|d| to_reapi(*d)).collect(),
                digest_function: blake3_function(),
            };
            let response = self.cas.clone().find_missing_blobs(request).await?;
            for wire in &response.get_ref().missing_blob_digests {
                missing.push(from_reapi(wire, DigestFunction::Blake3)?);
            }
        }
        Ok(missing)
    }

    /// Uploads one in-memory blob unless the server already has it.
    pub async fn upload_blob(&self, data: Bytes) -> Result<Digest, CacheError> {
        let digest = Digest::of(&data);
        if self.find_missing(&[digest]).await?.is_empty() {
            return Ok(digest);
        }
        if digest.size_bytes < BATCH_BLOB_LIMIT {
            self.batch_update(vec![(digest, data)]).await?;
        } else {
            self.write_bytes(digest, data).await?;
        }
        Ok(digest)
    }

    /// Uploads one file unless the server already has it, without holding
    /// it in memory: hashed in a streaming pass on the blocking pool, then
    /// (if missing) sent in chunks read as they go. A file that changes
    /// between the two passes is reported as changed, never stored under
    /// the wrong digest (the server verifies what it receives).
    pub async fn upload_file(&self, path: &std::path::Path) -> Result<Digest, CacheError> {
        let owned = path.to_owned();
        let digest = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&owned)?;
            Digest::of_reader(&mut file)
        })
        .await?
        .map_err(|source| CacheError::Io {
            path: path.to_owned(),
            source,
        })?;
        if self.find_missing(&[digest]).await?.is_empty() {
            return Ok(digest);
        }
        if digest.size_bytes < BATCH_BLOB_LIMIT {
            // Small: one read, one batch (at most 1 MiB in memory).
            let data = tokio::fs::read(path)
                .await
                .map_err(|source| CacheError::Io {
                    path: path.to_owned(),
                    source,
                })?;
            if Digest::of(&data) != digest {
                return Err(CacheError::SourceChanged {
                    path: path.to_owned(),
                });
            }
            self.batch_update(vec![(digest, Bytes::from(data))]).await?;
        } else {
            self.write_file(digest, path).await?;
        }
        Ok(digest)
    }

    /// Reads and verifies one blob.
    pub async fn read_blob(&self, digest: &Digest) -> Result<Bytes, CacheError> {
        if digest.is_empty_blob() {
            return Ok(Bytes::new());
        }
        if digest.size_bytes < BATCH_BLOB_LIMIT {
            let mut blobs = self.batch_read(&[*digest]).await?;
            return blobs
                .pop()
                .map(|(_, data)| data)
                .ok_or(CacheError::NotFound(*digest));
        }
        self.stream_read(digest).await
    }
}

fn blake3_function() -> i32 {
    buildfleet_proto::reapi::digest_function::Value::Blake3 as i32
}

/// Checks received bytes against the digest they were requested under.
fn verify_download(expected: &Digest, data: &[u8]) -> Result<(), CacheError> {
    let actual = Digest::of(data);
    if actual != *expected {
        return Err(CacheError::CorruptDownload {
            expected: *expected,
            actual,
        });
    }
    Ok(())
}
