//! gRPC adapters and the server entry point. Prost types stop here.

mod convert;
mod pipelines;
mod runners;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use buildfleet_proto::v1 as pb;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing::{info, info_span, Instrument};

use crate::config::CoordinatorConfig;
use crate::db::Db;
use crate::hub::Hub;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] crate::error::CoordinatorError),
    #[error("coordinator server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Db(#[from] crate::db::DbError),
}

/// Serves the coordinator on an already-bound listener (tests bind port 0)
/// until `shutdown` resolves. Health turns SERVING once the hub is built.
/// Every call passes `guard` first (the RPC table of
/// `buildfleet_trust::policy`); handlers read the `Caller` it records.
pub async fn serve(
    listener: TcpListener,
    config: CoordinatorConfig,
    db: Db,
    guard: buildfleet_trust::Guard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_metrics(listener, None, config, db, guard, shutdown).await
}

/// [`serve`], plus the dashboard and Prometheus metrics at `/metrics` on
/// `metrics` (plain HTTP) until shutdown.
pub async fn serve_with_metrics(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    config: CoordinatorConfig,
    db: Db,
    guard: buildfleet_trust::Guard,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate()?;
    let notify = config.notify.clone();
    let hub = Arc::new(Hub::new(config, db));
    let exporter = metrics.map(|listener| spawn_http(&hub, listener, guard.clone()));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    hub.set_notifications(tx);
    let deliveries = crate::notify::spawn(hub.clone(), notify.clone(), rx);
    let ticker = {
        let hub = hub.clone();
        let mut every = tokio::time::interval(Duration::from_millis(200));
        tokio::spawn(
            async move {
                loop {
                    every.tick().await;
                    hub.tick();
                }
            }
            .instrument(info_span!("coordinator_ticker")),
        )
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<pb::pipelines_server::PipelinesServer<pipelines::PipelinesService>>()
        .await;
    reporter
        .set_serving::<pb::runner_service_server::RunnerServiceServer<runners::RunnerService>>()
        .await;
    let addr = listener.local_addr().ok();
    info!(?addr, "coordinator serving");
    let tls = guard.tls();
    let router = buildfleet_proto::transport::server()
        .layer(guard)
        .add_service(health)
        .add_service(
            pb::pipelines_server::PipelinesServer::new(pipelines::PipelinesService {
                hub: hub.clone(),
            })
            .max_decoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES),
        )
        .add_service(
            pb::runner_service_server::RunnerServiceServer::new(runners::RunnerService {
                hub: hub.clone(),
            })
            .max_decoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES),
        );
    let stopping = {
        let hub = hub.clone();
        async move {
            shutdown.await;
            hub.begin_shutdown();
        }
    };
    let result = match tls {
        Some(tls) => {
            let incoming = buildfleet_trust::tls::incoming(listener, tls);
            router
                .serve_with_incoming_shutdown(incoming, stopping)
                .await
        }
        None => {
            let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, stopping)
                .await
        }
    };
    ticker.abort();
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    // Alerts about the last runs still go out: close the inbox and give
    // the delivery task the time its retries need (bounded).
    hub.close_notifications();
    let budget = (1..notify.attempts)
        .map(|n| crate::notify::backoff(notify.backoff, n))
        .sum::<Duration>()
        + Duration::from_secs(10 * u64::from(notify.attempts));
    if tokio::time::timeout(budget, deliveries.task).await.is_err() {
        tracing::warn!("stopped before every notification was delivered");
    }
    Ok(result?)
}

/// The HTTP port: the dashboard, and metrics whose gauges are read from
/// the hub at each scrape (through a weak handle, so the endpoint never
/// keeps a stopped hub alive).
fn spawn_http(
    hub: &Arc<Hub>,
    listener: TcpListener,
    guard: buildfleet_trust::Guard,
) -> tokio::task::JoinHandle<()> {
    let metrics = hub.read(|s| s.metrics());
    let weak = Arc::downgrade(hub);
    metrics.gauges_from(move || {
        weak.upgrade()
            .map(|hub| hub.read(|s| s.gauges(std::time::Instant::now())))
            .unwrap_or_default()
    });
    let mut closing = hub.closing();
    let stop = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    let dashboard = crate::dashboard::Dashboard {
        hub: hub.clone(),
        guard,
        metrics,
    };
    crate::dashboard::spawn(listener, Arc::new(dashboard), stop)
}
