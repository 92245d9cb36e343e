//! The ContentAddressableStorage service: presence checks and small-blob
//! batches. Large blobs go through ByteStream.

use buildfleet_proto::convert::{from_reapi, to_reapi};
use std::pin::Pin;
use std::sync::Arc;

use buildfleet_proto::google_rpc;
use buildfleet_proto::reapi::content_addressable_storage_server::ContentAddressableStorage;
use buildfleet_proto::reapi::{
    batch_read_blobs_response, batch_update_blobs_response, compressor, BatchReadBlobsRequest,
    BatchReadBlobsResponse, BatchUpdateBlobsRequest, BatchUpdateBlobsResponse,
    FindMissingBlobsRequest, FindMissingBlobsResponse, GetTreeRequest, GetTreeResponse,
};
use bytes::Bytes;
use futures::Stream;
use tonic::{Request, Response, Status};

use super::metrics::CacheMetrics;
use super::{get_tree, on_store, request_function, MAX_BATCH_BYTES};
use crate::error::CacheError;
use crate::store::BlobStore;
use buildfleet_model::digest::{Digest, DigestFunction};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(crate) struct CasService {
    store: Arc<dyn BlobStore>,
    metrics: Arc<CacheMetrics>,
}

impl CasService {
    pub(crate) fn new(store: Arc<dyn BlobStore>, metrics: Arc<CacheMetrics>) -> Self {
        CasService { store, metrics }
    }
}

/// A per-blob status in a batch response, derived from the one error mapping.
fn rpc_status(result: Result<(), CacheError>) -> google_rpc::Status {
    match result {
        Ok(()) => google_rpc::Status::default(),
        Err(err) => {
            let status = Status::from(err);
            google_rpc::Status {
                code: status.code() as i32,
                message: status.message().to_owned(),
                details: Vec::new(),
            }
        }
    }
}

fn parse_digests(
    wire: &[buildfleet_proto::reapi::Digest],
    function: DigestFunction,
) -> Result<Vec<Digest>, CacheError> {
    wire.iter()
        .map(|d| from_reapi(d, function).map_err(CacheError::from))
        .collect()
}

/// Validates one BatchUpdateBlobs entry (the data itself is verified by the store).
fn parse_update(
    function: DigestFunction,
    digest: Option<&buildfleet_proto::reapi::Digest>,
    compressor_id: i32,
    data: Bytes,
) -> Result<(Digest, Bytes), CacheError> {
    if compressor_id != compressor::Value::Identity as i32 {
        return Err(CacheError::Unsupported(format!(
            "compressor {compressor_id}"
        )));
    }
    let wire = digest.ok_or(buildfleet_model::digest::DigestError::Missing)?;
    Ok((from_reapi(wire, function)?, data))
}

#[tonic::async_trait]
impl ContentAddressableStorage for CasService {
    async fn find_missing_blobs(
        &self,
        request: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let request = request.into_inner();
        let function = request_function(request.digest_function)?;
        let digests = parse_digests(&request.blob_digests, function)?;
        let query = digests.clone();
        let present = on_store(&self.store, move |s| s.contains_many(&query)).await?;
        let missing_blob_digests = digests
            .into_iter()
            .zip(present)
            .filter(|(_, present)| !present)
            .map(|(d, _)| to_reapi(d))
            .collect();
        Ok(Response::new(FindMissingBlobsResponse {
            missing_blob_digests,
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<BatchUpdateBlobsRequest>,
    ) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        let request = request.into_inner();
        let function = request_function(request.digest_function)?;
        let total: usize = request.requests.iter().map(|r| r.data.len()).sum();
        if total > MAX_BATCH_BYTES {
            return Err(CacheError::InvalidRequest(format!(
                "batch of {total} bytes exceeds the {MAX_BATCH_BYTES}-byte limit"
            ))
            .into());
        }
        // Each blob is judged on its own: one bad blob must not cost the
        // client a re-upload of the good ones.
        let items: Vec<_> = request
            .requests
            .into_iter()
            .map(|r| {
                let parsed = parse_update(function, r.digest.as_ref(), r.compressor, r.data);
                (r.digest, parsed)
            })
            .collect();
        let results = on_store(&self.store, move |store| {
            // The well-formed entries go to the store together.
            let mut good = Vec::with_capacity(items.len());
            let mut outcomes: Vec<(_, Option<Result<(), CacheError>>)> = Vec::new();
            for (wire, parsed) in items {
                match parsed {
                    Ok(blob) => {
                        good.push(blob);
                        outcomes.push((wire, None));
                    }
                    Err(e) => outcomes.push((wire, Some(Err(e)))),
                }
            }
            let mut stored = store.put_many(good).into_iter();
            Ok(outcomes
                .into_iter()
                .map(|(wire, outcome)| {
                    let outcome = outcome.unwrap_or_else(|| {
                        stored
                            .next()
                            .expect("one result per blob")
                            .map_err(CacheError::from)
                    });
                    (wire, outcome)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let written: u64 = results
            .iter()
            .filter(|(_, outcome)| outcome.is_ok())
            .filter_map(|(digest, _)| digest.as_ref())
            .map(|d| d.size_bytes.max(0) as u64)
            .sum();
        self.metrics.bytes_written(written);
        let responses = results
            .into_iter()
            .map(|(digest, outcome)| {
                if let Err(err) = &outcome {
                    tracing::warn!(?digest, %err, "rejected blob in batch update");
                }
                batch_update_blobs_response::Response {
                    digest,
                    status: Some(rpc_status(outcome)),
                }
            })
            .collect();
        Ok(Response::new(BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        let request = request.into_inner();
        let function = request_function(request.digest_function)?;
        let digests = parse_digests(&request.digests, function)?;
        let total: u64 = digests.iter().map(|d| d.size_bytes).sum();
        if total > MAX_BATCH_BYTES as u64 {
            return Err(CacheError::InvalidRequest(format!(
                "batch read of {total} bytes exceeds the {MAX_BATCH_BYTES}-byte limit; use ByteStream"
            ))
            .into());
        }
        let found = on_store(&self.store, move |store| {
            let blobs = store.get_many(&digests)?;
            Ok(digests.into_iter().zip(blobs).collect::<Vec<_>>())
        })
        .await?;
        let (hits, bytes) = found
            .iter()
            .filter_map(|(_, data)| data.as_ref())
            .fold((0u64, 0u64), |(n, b), d| (n + 1, b + d.len() as u64));
        self.metrics
            .blobs_read(hits, found.len() as u64 - hits, bytes);
        let responses = found
            .into_iter()
            .map(|(digest, data)| {
                let (data, outcome) = match data {
                    Some(data) => (data, Ok(())),
                    None => (Bytes::new(), Err(CacheError::NotFound(digest))),
                };
                batch_read_blobs_response::Response {
                    digest: Some(to_reapi(digest)),
                    data,
                    compressor: compressor::Value::Identity as i32,
                    status: Some(rpc_status(outcome)),
                }
            })
            .collect();
        Ok(Response::new(BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = ResponseStream<GetTreeResponse>;

    async fn get_tree(
        &self,
        request: Request<GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        let request = request.into_inner();
        let function = request_function(request.digest_function)?;
        let root = request
            .root_digest
            .as_ref()
            .ok_or(buildfleet_model::digest::DigestError::Missing)
            .and_then(|d| from_reapi(d, function))
            .map_err(CacheError::from)?;
        let pages =
            get_tree::pages(&self.store, root, request.page_size, &request.page_token).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(
            pages.into_iter().map(Ok),
        ))))
    }
}
