//! The OTLP exporter: a batch processor on its own thread sending to the
//! endpoint over tonic, installed as the process's global tracer. Ids of
//! spans recorded after the fact (a finished run, a shard attempt) are
//! chosen by the caller through [`forced`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

pub(crate) static ENABLED: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("OTLP endpoint {endpoint}: {source}")]
    Endpoint {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

thread_local! {
    static FORCED_TRACE: Cell<Option<TraceId>> = const { Cell::new(None) };
    static FORCED_SPAN: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, unless the caller on this thread chose them for the span
/// it is about to build.
#[derive(Debug, Default)]
struct ChosenIds {
    random: RandomIdGenerator,
}

impl IdGenerator for ChosenIds {
    fn new_trace_id(&self) -> TraceId {
        FORCED_TRACE
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_trace_id())
    }
    fn new_span_id(&self) -> SpanId {
        FORCED_SPAN
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_span_id())
    }
}

/// Builds one span with chosen ids: `build` must build it synchronously,
/// on this thread (the SDK asks the id generator while building).
pub(crate) fn forced<R>(trace: Option<TraceId>, span: SpanId, build: impl FnOnce() -> R) -> R {
    FORCED_TRACE.with(|c| c.set(trace));
    FORCED_SPAN.with(|c| c.set(Some(span)));
    let r = build();
    FORCED_TRACE.with(|c| c.set(None));
    FORCED_SPAN.with(|c| c.set(None));
    r
}

/// The installed exporter; [`Exporter::shutdown`] sends what is queued.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Exports this process's spans to `endpoint` (`http://HOST:4317`) as
    /// `service`. Call inside the tokio runtime: the gRPC channel's tasks
    /// run there.
    pub fn start(endpoint: &str, service: &'static str) -> Result<Exporter, TraceError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| TraceError::Endpoint {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(500))
            .with_max_queue_size(8192)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_id_generator(ChosenIds::default())
            .with_resource(Resource::builder().with_service_name(service).build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        ENABLED.store(true, Ordering::Relaxed);
        tracing::info!(endpoint, service, "exporting traces over OTLP");
        Ok(Exporter { provider })
    }

    /// Sends every queued span (bounded), off the async workers: the
    /// export needs them free.
    pub async fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not all exported at shutdown"),
            Err(e) => tracing::warn!(error = %e, "trace export stopped"),
        }
    }
}
