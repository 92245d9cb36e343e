//! ByteStream: reads and writes of blobs too large for a batch.

use std::pin::Pin;
use std::sync::Arc;

use buildfleet_proto::bytestream::byte_stream_server::ByteStream;
use buildfleet_proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse,
};
use bytes::BytesMut;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::{on_store, STREAM_CHUNK_BYTES};
use crate::digest::Digest;
use crate::error::CacheError;
use crate::resource_name::{parse_read, parse_write};
use crate::store::BlobStore;

/// Cap on the buffer reserved up front from a client-declared size, so a
/// lying header cannot make us allocate gigabytes before any data arrives.
const MAX_PREALLOCATION: u64 = 64 * 1024 * 1024;

pub(crate) struct ByteStreamService {
    store: Arc<dyn BlobStore>,
}

impl ByteStreamService {
    pub(crate) fn new(store: Arc<dyn BlobStore>) -> Self {
        ByteStreamService { store }
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
        let mut target: Option<(String, Digest)> = None;
        let mut buf = BytesMut::new();
        let mut finished = false;
        while let Some(msg) = stream.message().await? {
            let digest = match &target {
                None => {
                    let digest = parse_write(&msg.resource_name).map_err(CacheError::from)?;
                    buf.reserve(digest.size_bytes.min(MAX_PREALLOCATION) as usize);
                    target = Some((msg.resource_name.clone(), digest));
                    digest
                }
                Some((name, digest)) => {
                    if !msg.resource_name.is_empty() && msg.resource_name != *name {
                        return Err(invalid(format!(
                            "resource name changed mid-write from {name:?} to {:?}",
                            msg.resource_name
                        )));
                    }
                    *digest
                }
            };
            if msg.write_offset != buf.len() as i64 {
                return Err(invalid(format!(
                    "write offset {} but {} bytes received so far",
                    msg.write_offset,
                    buf.len()
                )));
            }
            if (buf.len() + msg.data.len()) as u64 > digest.size_bytes {
                return Err(invalid(format!(
                    "more data than the {} bytes declared for {digest}",
                    digest.size_bytes
                )));
            }
            buf.extend_from_slice(&msg.data);
            if msg.finish_write {
                finished = true;
                break;
            }
        }
        let Some((_, digest)) = target else {
            return Err(invalid("write stream carried no messages".into()));
        };
        if !finished {
            return Err(invalid(format!(
                "write of {digest} ended without finish_write"
            )));
        }
        let data = buf.freeze();
        let committed_size = data.len() as i64;
        // The store verifies; a mismatch becomes InvalidArgument and nothing
        // is stored.
        on_store(&self.store, move |s| s.put(&digest, data))
            .await
            .inspect_err(|err| tracing::warn!(%digest, %err, "rejected ByteStream write"))?;
        Ok(Response::new(WriteResponse { committed_size }))
    }

    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        let digest = parse_write(&request.get_ref().resource_name).map_err(CacheError::from)?;
        // Writes are buffered until finished, so a write is either complete
        // (the blob is stored) or must restart from zero.
        let present = on_store(&self.store, move |s| s.contains_many(&[digest])).await?;
        let complete = present.first().copied().unwrap_or(false);
        Ok(Response::new(QueryWriteStatusResponse {
            committed_size: if complete {
                digest.size_bytes as i64
            } else {
                0
            },
            complete,
        }))
    }
}
