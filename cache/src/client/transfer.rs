//! The wire-level transfers behind [`CasClient`]: batches and ByteStream.

use buildfleet_model::DigestFunction;
use buildfleet_proto::convert::{from_reapi, to_reapi};
use std::path::Path;
use std::sync::Arc;

use buildfleet_proto::bytestream::{ReadRequest, WriteRequest};
use buildfleet_proto::reapi::{
    batch_update_blobs_request, compressor, BatchReadBlobsRequest, BatchUpdateBlobsRequest,
};
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use super::{blake3_function, verify_download, CasClient};
use crate::error::CacheError;
use crate::resource_name::{read_resource_name, write_resource_name};
use crate::server::STREAM_CHUNK_BYTES;
use buildfleet_model::digest::Digest;

/// What the file-reading side of an upload saw, checked once the RPC ends.
#[derive(Default)]
struct FileReadOutcome {
    hashed: Option<Digest>,
    error: Option<std::io::Error>,
}

impl CasClient {
    /// Uploads blobs in one BatchUpdateBlobs call; any refused blob fails it.
    pub(super) async fn batch_update(&self, blobs: Vec<(Digest, Bytes)>) -> Result<(), CacheError> {
        let request = BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .into_iter()
                .map(|(digest, data)| batch_update_blobs_request::Request {
                    digest: Some(to_reapi(digest)),
                    data,
                    compressor: compressor::Value::Identity as i32,
                })
                .collect(),
            digest_function: blake3_function(),
        };
        let response = self.cas.clone().batch_update_blobs(request).await?;
        for item in response.into_inner().responses {
            let status = item.status.unwrap_or_default();
            if status.code != Code::Ok as i32 {
                let digest = item
                    .digest
                    .as_ref()
                    .ok_or(buildfleet_model::digest::DigestError::Missing)
                    .and_then(|d| from_reapi(d, DigestFunction::Blake3))?;
                return Err(CacheError::BlobRejected {
                    digest,
                    code: Code::from_i32(status.code),
                    message: status.message,
                });
            }
        }
        Ok(())
    }

    /// Reads blobs in one BatchReadBlobs call, verifying each.
    pub(super) async fn batch_read(
        &self,
        digests: &[Digest],
    ) -> Result<Vec<(Digest, Bytes)>, CacheError> {
        let request = BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: digests.iter().map(|d| to_reapi(*d)).collect(),
            acceptable_compressors: vec![compressor::Value::Identity as i32],
            digest_function: blake3_function(),
        };
        let response = self.cas.clone().batch_read_blobs(request).await?;
        let mut out = Vec::with_capacity(digests.len());
        for item in response.into_inner().responses {
            let wire = item
                .digest
                .ok_or(buildfleet_model::digest::DigestError::Missing)?;
            let digest = from_reapi(&wire, DigestFunction::Blake3)?;
            let status = item.status.unwrap_or_default();
            match Code::from_i32(status.code) {
                Code::Ok => {}
                Code::NotFound => return Err(CacheError::NotFound(digest)),
                code => {
                    return Err(CacheError::BlobRejected {
                        digest,
                        code,
                        message: status.message,
                    })
                }
            }
            verify_download(&digest, &item.data)?;
            out.push((digest, item.data));
        }
        if out.len() != digests.len() {
            return Err(CacheError::InvalidRequest(format!(
                "asked for {} blobs, server answered {}",
                digests.len(),
                out.len()
            )));
        }
        Ok(out)
    }

    /// Writes an in-memory blob over ByteStream.
    pub(super) async fn write_bytes(&self, digest: Digest, data: Bytes) -> Result<(), CacheError> {
        let name = write_resource_name(&self.instance, uuid::Uuid::new_v4(), &digest);
        let len = data.len();
        let requests = (0..len.max(1))
            .step_by(STREAM_CHUNK_BYTES)
            .map(move |start| {
                let stop = (start + STREAM_CHUNK_BYTES).min(len);
                WriteRequest {
                    resource_name: if start == 0 {
                        name.clone()
                    } else {
                        String::new()
                    },
                    write_offset: start as i64,
                    finish_write: stop == len,
                    data: data.slice(start..stop),
                }
            });
        self.write_stream(digest, futures::stream::iter(requests))
            .await
    }

    /// Writes a file over ByteStream without loading it whole. The bytes are
    /// hashed as they are sent so a file edited since the snapshot is
    /// reported as such instead of as a server-side mismatch.
    pub(super) async fn write_file(&self, digest: Digest, path: &Path) -> Result<(), CacheError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|source| CacheError::Io {
                path: path.to_owned(),
                source,
            })?;
        let outcome = Arc::new(Mutex::new(FileReadOutcome::default()));
        let requests = file_chunks(
            file,
            digest,
            write_resource_name(&self.instance, uuid::Uuid::new_v4(), &digest),
            Arc::clone(&outcome),
        );
        let result = self.write_stream(digest, requests).await;
        let seen = std::mem::take(&mut *outcome.lock());
        if let Some(source) = seen.error {
            return Err(CacheError::Io {
                path: path.to_owned(),
                source,
            });
        }
        match (result, seen.hashed) {
            (_, Some(hashed)) if hashed != digest => Err(CacheError::SourceChanged {
                path: path.to_owned(),
            }),
            (Err(err), _) => Err(err),
            (Ok(()), Some(_)) => Ok(()),
            (Ok(()), None) => Err(CacheError::InvalidRequest(format!(
                "server accepted {digest} before the whole file was sent"
            ))),
        }
    }

    async fn write_stream(
        &self,
        digest: Digest,
        requests: impl Stream<Item = WriteRequest> + Send + 'static,
    ) -> Result<(), CacheError> {
        let response = self.bytestream.clone().write(requests).await?;
        let committed = response.into_inner().committed_size;
        if committed != digest.size_bytes as i64 {
            return Err(CacheError::InvalidRequest(format!(
                "server committed {committed} of {} bytes for {digest}",
                digest.size_bytes
            )));
        }
        Ok(())
    }

    /// Reads a blob over ByteStream into memory, verified.
    pub(super) async fn stream_read(&self, digest: &Digest) -> Result<Bytes, CacheError> {
        let mut buf = BytesMut::with_capacity(digest.size_bytes.min(64 << 20) as usize);
        // Hashed chunk by chunk while each is still in the CPU cache: a
        // second pass over a large blob would read it back from memory.
        let mut hasher = blake3::Hasher::new();
        let mut stream = self.open_read(digest).await?;
        while let Some(chunk) = stream.message().await? {
            if (buf.len() + chunk.data.len()) as u64 > digest.size_bytes {
                return Err(CacheError::CorruptDownload {
                    expected: *digest,
                    actual: Digest::of(&[&buf[..], &chunk.data[..]].concat()),
                });
            }
            hasher.update(&chunk.data);
            buf.extend_from_slice(&chunk.data);
        }
        if buf.len() as u64 != digest.size_bytes || hasher.finalize().as_bytes() != &digest.hash {
            // Rare: the full hash again only to report what arrived.
            verify_download(digest, &buf)?;
        }
        Ok(buf.freeze())
    }

    /// Streams a blob into a new file at `path`, verifying as it goes; a
    /// corrupt download leaves no file behind.
    pub(super) async fn read_to_file(
        &self,
        digest: &Digest,
        path: &Path,
    ) -> Result<(), CacheError> {
        let io_err = |source| CacheError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = tokio::fs::File::create(path).await.map_err(io_err)?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut stream = self.open_read(digest).await?;
        while let Some(chunk) = stream.message().await? {
            hasher.update(&chunk.data);
            size += chunk.data.len() as u64;
            if size > digest.size_bytes {
                break;
            }
            file.write_all(&chunk.data).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        drop(file);
        let actual = Digest {
            function: buildfleet_model::digest::DigestFunction::Blake3,
            hash: *hasher.finalize().as_bytes(),
            size_bytes: size,
        };
        if actual != *digest {
            let _ = tokio::fs::remove_file(path).await;
            return Err(CacheError::CorruptDownload {
                expected: *digest,
                actual,
            });
        }
        Ok(())
    }

    async fn open_read(
        &self,
        digest: &Digest,
    ) -> Result<tonic::Streaming<buildfleet_proto::bytestream::ReadResponse>, CacheError> {
        let request = ReadRequest {
            resource_name: read_resource_name(&self.instance, digest),
            read_offset: 0,
            read_limit: 0,
        };
        let response =
            self.bytestream
                .clone()
                .read(request)
                .await
                .map_err(|status| match status.code() {
                    Code::NotFound => CacheError::NotFound(*digest),
                    _ => CacheError::from(status),
                })?;
        Ok(response.into_inner())
    }
}

/// The WriteRequests for a file, at most `digest.size_bytes` of it.
fn file_chunks(
    file: tokio::fs::File,
    digest: Digest,
    name: String,
    outcome: Arc<Mutex<FileReadOutcome>>,
) -> impl Stream<Item = WriteRequest> + Send + 'static {
    struct State {
        file: tokio::fs::File,
        offset: u64,
        name: Option<String>,
        hasher: blake3::Hasher,
        done: bool,
    }
    let state = State {
        file,
        offset: 0,
        name: Some(name),
        hasher: blake3::Hasher::new(),
        done: false,
    };
    futures::stream::unfold(state, move |mut st| {
        let outcome = Arc::clone(&outcome);
        async move {
            if st.done {
                return None;
            }
            let want = (digest.size_bytes - st.offset).min(STREAM_CHUNK_BYTES as u64) as usize;
            let mut data = vec![0u8; want];
            let mut filled = 0;
            while filled < want {
                match st.file.read(&mut data[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(err) => {
                        outcome.lock().error = Some(err);
                        // Ending without finish_write makes the server drop it.
                        return None;
                    }
                }
            }
            data.truncate(filled);
            st.hasher.update(&data);
            let write_offset = st.offset as i64;
            st.offset += filled as u64;
            // A short read means the file shrank: finish now and let the
            // hash comparison report it.
            let finish_write = st.offset == digest.size_bytes || filled < want;
            if finish_write {
                st.done = true;
                outcome.lock().hashed = Some(Digest {
                    function: buildfleet_model::digest::DigestFunction::Blake3,
                    hash: *st.hasher.finalize().as_bytes(),
                    size_bytes: st.offset,
                });
            }
            let request = WriteRequest {
                resource_name: st.name.take().unwrap_or_default(),
                write_offset,
                finish_write,
                data: data.into(),
            };
            Some((request, st))
        }
    })
    .boxed()
}
