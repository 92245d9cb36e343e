//! The web dashboard, served with `/metrics` on the coordinator's HTTP
//! port: server-rendered pages and a little plain JavaScript, no build
//! step. It reads the same hub the gRPC API does and admits each page as
//! the RPC it stands for (`buildfleet_trust::policy`), so a page shows a
//! caller exactly what the API would, and a button allows only what the
//! API allows.

mod artifact;
mod auth;
mod cache_page;
mod gantt;
pub mod html;
mod logs;
mod run_page;
mod runners_page;
mod runs_page;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::hub::Hub;

pub use auth::Refusal;

/// What every handler reads.
pub struct Dashboard {
    pub hub: Arc<Hub>,
    pub guard: buildfleet_trust::Guard,
    pub metrics: buildfleet_metrics::Source,
}

type Shared = axum::extract::State<Arc<Dashboard>>;

/// Every route of the HTTP port.
pub fn router(dashboard: Arc<Dashboard>) -> Router {
    Router::new()
        .route("/", get(runs_page::page_route))
        .route("/runs/{id}", get(run_page::page_route))
        .route("/runs/{id}/live", get(run_page::live_fragment))
        .route("/runs/{id}/steps/{step}/decide", post(run_page::decide))
        .route(
            "/runs/{id}/artifacts/{hash}/{size}",
            get(artifact::download),
        )
        .route("/runs/{id}/logs/{step}/{shard}", get(logs::page_route))
        .route("/runs/{id}/logs/{step}/{shard}/stream", get(logs::stream))
        .route("/runners", get(runners_page::page_route))
        .route("/cache", get(cache_page::page_route))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            Refusal::new(axum::http::StatusCode::NOT_FOUND, "no such page".into())
        })
        .with_state(dashboard)
}

/// Serves the dashboard and `/metrics` on `listener` until `stop`, on a
/// task of its own; a listener that fails is logged, never silent.
pub fn spawn(
    listener: TcpListener,
    dashboard: Arc<Dashboard>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let span = tracing::info_span!("coordinator_http");
    tokio::spawn(
        async move {
            tracing::info!(addr = ?listener.local_addr().ok(), "dashboard and /metrics serving");
            let app = router(dashboard);
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "dashboard and metrics endpoint stopped");
            }
        }
        .instrument(span),
    )
}

async fn metrics(axum::extract::State(d): Shared) -> Response {
    match buildfleet_metrics::encode(d.metrics.as_ref()) {
        Ok(body) => (
            [(header::CONTENT_TYPE, buildfleet_metrics::CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics could not be encoded");
            Refusal::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("metrics could not be encoded: {e}"),
            )
            .into_response()
        }
    }
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    buildfleet_model::unix_ms(std::time::SystemTime::now())
}
