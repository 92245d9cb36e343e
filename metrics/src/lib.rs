//! The `/metrics` endpoint every role serves (`--metrics-listen`), in the
//! Prometheus text format encoded by `prometheus-client`.
//!
//! Each role keeps its own registry of counters and histograms, bumped
//! where things happen, and sets its gauges from its own state when a
//! scrape comes (`refresh`), so a gauge is never stale and costs nothing
//! between scrapes.

mod http;

use std::sync::Arc;

pub use http::{serve, ServeError};
pub use prometheus_client;
use prometheus_client::registry::Registry;

/// The content type of the text `encode` produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What a scrape answers: gauges set from the role's state, then the
/// registry encoded.
pub trait Exposition: Send + Sync {
    fn registry(&self) -> &Registry;
    /// Sets gauges from the role's state just before encoding.
    fn refresh(&self) {}
}

/// The exposition text of `source`.
pub fn encode(source: &dyn Exposition) -> Result<String, std::fmt::Error> {
    source.refresh();
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, source.registry())?;
    Ok(text)
}

/// Shared handle to what a role exposes.
pub type Source = Arc<dyn Exposition>;

/// [`serve`] on a task of its own, in `span`, until `stop`; a listener
/// that fails is logged as an error, never dropped silently.
pub fn spawn(
    listener: tokio::net::TcpListener,
    source: Source,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    span: tracing::Span,
) -> tokio::task::JoinHandle<()> {
    use tracing::Instrument;
    tokio::spawn(
        async move {
            if let Err(e) = serve(listener, source, stop).await {
                tracing::error!(error = %e, "metrics endpoint stopped");
            }
        }
        .instrument(span),
    )
}

/// Histogram buckets for durations from 100 ms to about 3 hours.
pub fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.1, 2.0, 18)
}
