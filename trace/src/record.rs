//! Spans recorded after the fact, with the times the event log holds:
//! the coordinator knows when a shard waited and ran only once it has.

use std::time::SystemTime;

use opentelemetry::trace::{Span as _, SpanKind, Tracer as _};
use opentelemetry::{Context, KeyValue};

/// One attribute: a name and a string or integer value.
pub type Attr = KeyValue;

fn tracer() -> opentelemetry::global::BoxedTracer {
    opentelemetry::global::tracer("buildfleet")
}

/// A finished span under `parent`.
pub fn record(
    parent: &Context,
    name: String,
    start: SystemTime,
    end: SystemTime,
    attrs: Vec<Attr>,
) {
    if !crate::enabled() {
        return;
    }
    let t = tracer();
    let mut span = t
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(start)
        .with_attributes(attrs)
        .start_with_context(&t, parent);
    span.end_with_timestamp(end);
}

/// A shard attempt's own span (the parent its runner's phases named),
/// under the run's root.
pub fn record_attempt(
    run_id: &str,
    step: &str,
    shard: Option<u32>,
    attempt: u32,
    start: SystemTime,
    end: SystemTime,
    attrs: Vec<Attr>,
) {
    if !crate::enabled() {
        return;
    }
    let id = crate::ids::attempt_span_id(run_id, step, shard, attempt);
    let parent = crate::ids::run_context(run_id);
    let name = match shard {
        Some(i) => format!("shard {step}#{i}"),
        None => format!("listing {step}"),
    };
    crate::export::forced(None, id, || record(&parent, name, start, end, attrs));
}

/// The run's root span, once it has ended.
pub fn record_run(run_id: &str, start: SystemTime, end: SystemTime, attrs: Vec<Attr>) {
    if !crate::enabled() {
        return;
    }
    let (trace, root) = crate::ids::run_ids(run_id);
    let name = format!("run {run_id}");
    crate::export::forced(Some(trace), root, || {
        record(&Context::new(), name, start, end, attrs)
    });
}
