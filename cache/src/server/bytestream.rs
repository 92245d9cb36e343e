//! ByteStream: reads and writes of blobs too large for a batch. Writes are
//! resumable: see [`super::uploads`]. The instance name in resource names is
//! accepted and ignored, because the CAS is shared by all instances.
//!
//! Neither direction holds a blob in memory. A write goes to a staged file
//! on the store's disk, hashed piece by piece on the blocking pool, and is
//! committed (renamed into place) once the digest matched; its declared
//! size is checked against the store's limit before the first byte is
//! taken. A read of a large blob reads its file in pieces on the blocking
//! pool: a ranged read reads only its range, and a whole read hashes as it
//! sends and holds the last piece back until the digest matched, so a
//! corrupt blob ends the stream with DATA_LOSS (and is deleted) instead of
//! completing.

use std::io::{Read, Seek, SeekFrom};
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
use crate::store::{BlobStore, StoreError, StoredBlob};
use buildfleet_model::digest::Digest;

/// Pieces of a file read in flight towards the client: with one being
/// sent and one read ahead, reading and sending overlap while a slow
/// client holds at most this many pieces of memory.
const READ_AHEAD_PIECES: usize = 2;

pub(crate) struct ByteStreamService {
    store: Arc<dyn BlobStore>,
    uploads: Arc<PartialUploads>,
    metrics: Arc<super::metrics::CacheMetrics>,
}

impl ByteStreamService {
    pub(crate) fn new(
        store: Arc<dyn BlobStore>,
        uploads: Arc<PartialUploads>,
        metrics: Arc<super::metrics::CacheMetrics>,
    ) -> Self {
        ByteStreamService {
            store,
            uploads,
            metrics,
        }
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
        let source = on_store(&self.store, move |s| s.open(&digest)).await?;
        let Some(source) = source else {
            self.metrics.blobs_read(0, 1, 0);
            return Err(CacheError::NotFound(digest).into());
        };
        let offset = request.read_offset as u64;
        if offset > digest.size_bytes {
            return Err(CacheError::ReadOutOfRange {
                offset: request.read_offset,
                size: digest.size_bytes,
            }
            .into());
        }
        let end = match request.read_limit {
            0 => digest.size_bytes,
            limit => digest.size_bytes.min(offset.saturating_add(limit as u64)),
        };
        // Counted as asked for: a read cut short by corruption says so in
        // its status and the log.
        self.metrics.blobs_read(1, 0, end - offset);
        match source {
            StoredBlob::Bytes(data) => {
                let (offset, end) = (offset as usize, end as usize);
                let chunks = (offset..end).step_by(STREAM_CHUNK_BYTES).map(move |start| {
                    let stop = (start + STREAM_CHUNK_BYTES).min(end);
                    Ok(ReadResponse {
                        data: data.slice(start..stop),
                    })
                });
                Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
            }
            StoredBlob::File(file) => {
                let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_PIECES);
                let store = Arc::clone(&self.store);
                let span = tracing::info_span!("bytestream_read", %digest, offset, end);
                tokio::task::spawn_blocking(move || {
                    span.in_scope(|| send_file(&*store, file, digest, offset..end, &tx))
                });
                Ok(Response::new(Box::pin(
                    tokio_stream::wrappers::ReceiverStream::new(rx),
                )))
            }
        }
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
        let uploads = Arc::clone(&self.uploads);
        let store = Arc::clone(&self.store);
        let begin_name = name.clone();
        let mut upload = tokio::task::spawn_blocking(move || {
            uploads.begin(&begin_name, size, Instant::now(), || store.stage(&digest))
        })
        .await
        .map_err(CacheError::from)??;
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
            let finish = msg.finish_write;
            if !msg.data.is_empty() {
                let data = std::mem::take(&mut msg.data);
                let (back, appended) = tokio::task::spawn_blocking(move || {
                    let appended = upload.append(&data);
                    (upload, appended)
                })
                .await
                .map_err(CacheError::from)?;
                upload = back;
                // A failed write to the staged file (a full disk) parks
                // what was written before it; the client may resume.
                appended.map_err(CacheError::from)?;
            }
            if finish {
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
        // A mismatch becomes InvalidArgument and the staged file is removed
        // (resuming it can't help).
        let received = upload.committed();
        let committed = on_store(&self.store, move |s| s.commit(upload.finish()?)).await;
        committed.inspect_err(|err| {
            tracing::warn!(%digest, %err, bytes = received, "rejected ByteStream write; dropped its data")
        })?;
        self.metrics.bytes_written(size);
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

/// Streams `range` of a blob's file to `tx` in pieces, verifying a whole
/// read on the way: the last piece is only sent once everything hashed to
/// `digest`. A mismatch sends DATA_LOSS instead and deletes the blob, so
/// the client never completes a corrupt download and the next upload can
/// replace it. A ranged read is not verified here (that would mean reading
/// the whole blob); the client assembling the ranges verifies the whole.
/// Stops quietly when the client goes away.
fn send_file(
    store: &dyn BlobStore,
    mut file: std::fs::File,
    digest: Digest,
    range: std::ops::Range<u64>,
    tx: &tokio::sync::mpsc::Sender<Result<ReadResponse, Status>>,
) {
    let whole = range.start == 0 && range.end == digest.size_bytes;
    let mut hasher = whole.then(|| digest.function.hasher());
    let fail = |err: std::io::Error| {
        tracing::error!(%digest, error = %err, "reading a large blob failed");
        let err = CacheError::Store(StoreError::Backend {
            operation: "read large blob",
            source: Box::new(err),
        });
        let _ = tx.blocking_send(Err(err.into()));
    };
    if let Err(err) = file.seek(SeekFrom::Start(range.start)) {
        return fail(err);
    }
    let mut at = range.start;
    while at < range.end {
        let len = (range.end - at).min(STREAM_CHUNK_BYTES as u64) as usize;
        // Read into spare capacity: no zeroing of a buffer about to be
        // overwritten.
        let mut piece = Vec::with_capacity(len);
        match (&mut file).take(len as u64).read_to_end(&mut piece) {
            Ok(n) if n == len => {}
            Ok(n) => {
                return fail(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the blob's file ended {} bytes early", len - n),
                ))
            }
            Err(err) => return fail(err),
        }
        at += len as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&piece);
        }
        if at == range.end {
            if let Some(h) = hasher.take() {
                let actual = h.finalize();
                if actual != digest {
                    tracing::error!(%digest, %actual, "corrupt blob found while serving it; deleting");
                    if let Err(err) = store.forget_corrupt(&digest) {
                        tracing::error!(%digest, %err, "cannot delete a corrupt blob");
                    }
                    let err = CacheError::CorruptStored { digest, actual };
                    let _ = tx.blocking_send(Err(err.into()));
                    return;
                }
            }
        }
        if tx
            .blocking_send(Ok(ReadResponse { data: piece.into() }))
            .is_err()
        {
            tracing::debug!(%digest, at, "reader went away");
            return;
        }
    }
}
