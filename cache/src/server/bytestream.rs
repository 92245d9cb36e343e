//! ByteStream: reads and writes of blobs too large for a batch. Writes are
//! resumable: see [`super::uploads`]. The instance name in resource names is
//! accepted and ignored, because the CAS is shared by all instances.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use buildfleet_proto::bytestream::byte_stream_server::ByteStream;
use buildfleet_proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse,
};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::uploads::PartialUploads;
use super::{on_store, STREAM_CHUNK_BYTES};
use crate::error::CacheError;
use crate::resource_name::{parse_read, parse_write};
use crate::store::BlobStore;
use buildfleet_model::digest::Digest;

/// Cap on the buffer reserved up front from a client-declared size, so a
/// lying header cannot make us allocate gigabytes before any data arrives.
const MAX_PREALLOCATION: u64 = 64 * 1024 * 1024;

pub(crate) struct ByteStreamService {
    store: Arc<dyn BlobStore>,
    uploads: Arc<PartialUploads>,
}

impl ByteStreamService {
    pub(crate) fn new(store: Arc<dyn BlobStore>, uploads: Arc<PartialUploads>) -> Self {
        ByteStreamService { store, uploads }
    }

    async fn present(&self, digest: Digest) -> Result<bool, CacheError> {
        let found = on_store(&self.store, move |s| s.contains_many(&[digest])).await?;
        Ok(found.first().copied().unwrap_or(false))
    }
}

fn invalid(message: String) -> Status {
    CacheError::InvalidRequest(message).into()
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let request = request.into_inner();
        let digest = parse_read(&request.resource_name).map_err(CacheError::from)?;
        if request.read_offset < 0 || request.read_limit < 0 {
            return Err(invalid(format!(
                "negative read offset {} or limit {}",
                request.read_offset, request.read_limit
            )));
        }
        let data = on_store(&self.store, move |s| s.get(&digest))
            .await?
            .ok_or(CacheError::NotFound(digest))?;
        let offset = request.read_offset as u64;
        if offset > data.len() as u64 {
            return Err(CacheError::ReadOutOfRange {
                offset: request.read_offset,
                size: data.len() as u64,
            }
            .into());
        }
        let offset = offset as usize;
        let end = match request.read_limit {
            0 => data.len(),
            limit => data.len().min(offset.saturating_add(limit as usize)),
        };
        let chunks = (offset..end).step_by(STREAM_CHUNK_BYTES).map(move |start| {
            let stop = (start + STREAM_CHUNK_BYTES).min(end);
            Ok(ReadResponse {
                data: data.slice(start..stop).to_vec(),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let mut stream = request.into_inner();
        let Some(mut msg) = stream.message().await? else {
            return Err(invalid("write stream carried no messages".into()));
        };
        let name = msg.resource_name.clone();
        let digest = parse_write(&name).map_err(CacheError::from)?;
        let size = digest.size_bytes;
        // A blob that exists is not buffered, hashed or stored again: the
        // rest of the stream is drained and the full size reported committed.
        // REAPI would also allow answering at once, but our own CasClient
        // treats an answer before its last chunk as an error, and two runners
        // uploading the same output at once would hit that.
        if self.present(digest).await? {
            self.uploads.forget(&name);
            let mut finished = msg.finish_write;
            while !finished {
                match stream.message().await? {
                    Some(next) => finished = next.finish_write,
                    None => break,
                }
            }
            return Ok(Response::new(WriteResponse {
                committed_size: size as i64,
            }));
        }
        // A blob that can never fit is refused before its first byte is
        // taken, not after the client has sent (and we have held) all of it.
        let limits = self.store.limits();
        if limits.too_large(size) {
            return Err(CacheError::Store(crate::store::StoreError::TooLarge {
                digest,
                max_bytes: limits.max_bytes.unwrap_or(u64::MAX),
            })
            .into());
        }
        let capacity = size.min(MAX_PREALLOCATION) as usize;
        let mut upload = self.uploads.begin(&name, capacity, Instant::now())?;
        loop {
            if !msg.resource_name.is_empty() && msg.resource_name != name {
                return Err(invalid(format!(
                    "resource name changed mid-write from {name:?} to {:?}",
                    msg.resource_name
                )));
            }
            // A wrong offset leaves what was received parked: the client can
            // ask QueryWriteStatus and resume correctly.
            if msg.write_offset != upload.committed() as i64 {
                return Err(CacheError::WriteOffset {
                    resource_name: name,
                    expected: upload.committed(),
                    got: msg.write_offset,
                }
                .into());
            }
            if upload.committed() + msg.data.len() as u64 > size {
                upload.discard("more data than the digest's size");
                return Err(invalid(format!(
                    "more data than the {size} bytes declared for {digest}"
                )));
            }
            upload.append(&msg.data);
            if msg.finish_write {
                break;
            }
            // A stream error or an end without finish_write drops `upload`,
            // which parks the bytes received for a later resumption.
            msg = match stream.message().await {
                Ok(Some(next)) => next,
                Ok(None) => {
                    return Err(invalid(format!(
                        "write of {digest} ended without finish_write; {} bytes kept, resume at that offset",
                        upload.committed()
                    )))
                }
                Err(status) => {
                    tracing::info!(%digest, committed = upload.committed(), %status, "write stream broke");
                    return Err(status);
                }
            };
        }
        let data = upload.finish();
        // The store verifies; a mismatch becomes InvalidArgument and nothing
        // is stored (the bytes are dropped: resuming them can't help).
        let received = data.len();
        on_store(&self.store, move |s| s.put(&digest, data))
            .await
            .inspect_err(|err| {
                tracing::warn!(%digest, %err, bytes = received, "rejected ByteStream write; dropped its data")
            })?;
        Ok(Response::new(WriteResponse {
            committed_size: size as i64,
        }))
    }

    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        let name = request.into_inner().resource_name;
        let digest = parse_write(&name).map_err(CacheError::from)?;
        if self.present(digest).await? {
            return Ok(Response::new(QueryWriteStatusResponse {
                committed_size: digest.size_bytes as i64,
                complete: true,
            }));
        }
        let committed = self.uploads.committed(&name, Instant::now()).unwrap_or(0);
        Ok(Response::new(QueryWriteStatusResponse {
            committed_size: committed as i64,
            complete: false,
        }))
    }
}
