//! The REAPI v2 cache service: ContentAddressableStorage, ByteStream,
//! ActionCache and Capabilities, plus our own `buildfleet.v1.CacheIndex`,
//! over any [`BlobStore`], plus gRPC health.

mod action_cache;
mod bytestream;
mod capabilities;
mod cas;
mod completeness;
mod get_tree;
mod index;
mod instance;
mod metrics;
mod precondition;
mod uploads;

#[cfg(test)]
mod corruption_tests;

pub(crate) use completeness::describe as describe_missing;
pub use metrics::CacheMetrics;
pub(crate) use precondition::missing_blobs_details;
pub use precondition::{precondition_violations, PreconditionFailure, Violation};

use std::future::Future;
use std::sync::Arc;

use buildfleet_proto::bytestream::byte_stream_server::ByteStreamServer;
use buildfleet_proto::reapi::action_cache_server::ActionCacheServer;
use buildfleet_proto::reapi::capabilities_server::CapabilitiesServer;
use buildfleet_proto::reapi::content_addressable_storage_server::ContentAddressableStorageServer;
use buildfleet_proto::reapi::digest_function;
use buildfleet_proto::v1::cache_index_server::CacheIndexServer;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::error::CacheError;
use crate::store::{BlobStore, StoreError};
use buildfleet_model::digest::DigestFunction;

use action_cache::ActionCacheService;
use bytestream::ByteStreamService;
use capabilities::CapabilitiesService;
use cas::CasService;
use index::IndexService;

/// Largest total of blob bytes in one batch request or response; announced in
/// Capabilities so clients split larger work.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// ByteStream chunk size: large enough to amortise per-message cost, small
/// enough to stay far below gRPC's message limit.
pub const STREAM_CHUNK_BYTES: usize = 1024 * 1024;

/// gRPC message limit on both sides: a full batch plus framing overhead.
pub(crate) const MAX_MESSAGE_BYTES: usize = 2 * MAX_BATCH_BYTES;

/// Most bytes of broken ByteStream uploads kept for resumption, all uploads
/// together (on the store's disk, not in memory).
pub const PARTIAL_UPLOAD_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Most broken ByteStream uploads kept for resumption at once: each keeps
/// a staged file open.
pub const PARTIAL_UPLOAD_MAX_COUNT: usize = 256;

/// Most bytes live ByteStream uploads may declare together when the store
/// has no size limit (with one, that limit).
pub const UPLOADS_IN_FLIGHT_MAX_BYTES: u64 = 64 << 30;

/// A broken upload not resumed within this long is dropped.
pub const PARTIAL_UPLOAD_IDLE_EXPIRY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The cache services as routes, for embedding in another tonic server:
/// REAPI ContentAddressableStorage, ByteStream, ActionCache and
/// Capabilities, and `buildfleet.v1.CacheIndex`, all over `store`.
pub fn services(store: Arc<dyn BlobStore>, metrics: Arc<CacheMetrics>) -> Routes {
    let cas =
        ContentAddressableStorageServer::new(CasService::new(Arc::clone(&store), metrics.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Live uploads may declare together what the store may hold (they
    // would evict each other past it), or a generous fixed amount when the
    // store is unlimited.
    let max_active_bytes = store
        .limits()
        .max_bytes
        .unwrap_or(UPLOADS_IN_FLIGHT_MAX_BYTES);
    let uploads = uploads::PartialUploads::new(uploads::UploadLimits {
        max_parked_bytes: PARTIAL_UPLOAD_MAX_BYTES,
        max_parked_uploads: PARTIAL_UPLOAD_MAX_COUNT,
        max_active_bytes,
        idle_expiry: PARTIAL_UPLOAD_IDLE_EXPIRY,
    });
    let bytestream = ByteStreamServer::new(ByteStreamService::new(
        Arc::clone(&store),
        uploads,
        metrics.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let action_cache = ActionCacheServer::new(ActionCacheService::new(Arc::clone(&store), metrics))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let index = CacheIndexServer::new(IndexService::new(store))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    Routes::new(cas)
        .add_service(bytestream)
        .add_service(action_cache)
        .add_service(index)
        .add_service(CapabilitiesServer::new(CapabilitiesService))
}

/// Serves the cache on `listener` until `shutdown` resolves, then drains
/// in-flight requests. Every call passes `guard` first (the RPC table of
/// `buildfleet_trust::policy`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn BlobStore>,
    guard: buildfleet_trust::Guard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CacheError> {
    serve_with_metrics(listener, None, store, guard, shutdown).await
}

/// [`serve`], plus Prometheus metrics at `/metrics` on `metrics` (plain
/// HTTP) for as long as the cache serves.
pub async fn serve_with_metrics(
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    store: Arc<dyn BlobStore>,
    guard: buildfleet_trust::Guard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CacheError> {
    let counters = CacheMetrics::new(Arc::clone(&store));
    let exporter = metrics.map(|listener| {
        buildfleet_metrics::spawn(
            listener,
            counters.clone(),
            std::future::pending(),
            tracing::info_span!("cache_metrics"),
        )
    });
    let served = serve_routes(listener, store, counters, guard, shutdown).await;
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    served
}

async fn serve_routes(
    listener: tokio::net::TcpListener,
    store: Arc<dyn BlobStore>,
    counters: Arc<CacheMetrics>,
    guard: buildfleet_trust::Guard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CacheError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    // The store is already open (the caller handed it over), so we are ready.
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_serving::<ContentAddressableStorageServer<CasService>>()
        .await;
    health
        .set_serving::<ByteStreamServer<ByteStreamService>>()
        .await;
    health
        .set_serving::<CapabilitiesServer<CapabilitiesService>>()
        .await;
    health
        .set_serving::<ActionCacheServer<ActionCacheService>>()
        .await;
    health.set_serving::<CacheIndexServer<IndexService>>().await;

    let tls = guard.tls();
    let router = buildfleet_proto::transport::server()
        // One span per request, so every log line names the RPC it served.
        .trace_fn(|request| tracing::info_span!("cache_rpc", path = %request.uri().path()))
        .layer(guard)
        .layer(buildfleet_trace::TraceLayer)
        .add_routes(services(store, counters))
        .add_service(health_service);
    match tls {
        Some(tls) => {
            let incoming = buildfleet_trust::tls::incoming(listener, tls);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?
        }
        None => {
            // Without TCP_NODELAY, Nagle plus delayed ACKs add ~40 ms to
            // small RPCs.
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?
        }
    }
    Ok(())
}

/// Runs a store call on the blocking pool: RocksDB calls can take
/// milliseconds and must not stall the async workers.
pub(crate) async fn on_store<T, F>(store: &Arc<dyn BlobStore>, f: F) -> Result<T, CacheError>
where
    T: Send + 'static,
    F: FnOnce(&dyn BlobStore) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    // Carry the request's span onto the blocking thread, so store logs
    // (evictions, corrupt blobs) say which request caused them.
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || span.in_scope(|| f(&*store))).await?;
    Ok(result?)
}

/// The digest function a REAPI request names. Unset means SHA-256: REAPI
/// infers the function from the hash length for clients older than 2.3, and
/// the only 64-hex-digit function those clients knew is SHA-256. Anything
/// else we don't serve is refused rather than mis-hashed.
pub(crate) fn request_function(value: i32) -> Result<DigestFunction, CacheError> {
    match digest_function::Value::try_from(value) {
        Ok(digest_function::Value::Unknown | digest_function::Value::Sha256) => {
            Ok(DigestFunction::Sha256)
        }
        Ok(digest_function::Value::Blake3) => Ok(DigestFunction::Blake3),
        _ => Err(CacheError::Unsupported(format!(
            "digest function {value}; this cache serves BLAKE3 and SHA-256"
        ))),
    }
}

/// The REAPI enum value for `function`.
pub(crate) fn wire_function(function: DigestFunction) -> digest_function::Value {
    match function {
        DigestFunction::Blake3 => digest_function::Value::Blake3,
        DigestFunction::Sha256 => digest_function::Value::Sha256,
    }
}
