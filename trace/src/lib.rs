//! Traces across the fleet. One run is one trace: its id is derived from
//! the run id (so a coordinator restarted mid-run continues the same
//! trace), the coordinator records each shard attempt and its wait for a
//! runner, the lease carries the attempt's W3C `traceparent` to the
//! runner, the runner records its phases under it and sends the current
//! phase's context in gRPC metadata to the cache, which records each call
//! it serves. Spans go out over OTLP (gRPC) when a role is given an
//! endpoint; without one, nothing is recorded and every call here is
//! cheap.

mod export;
mod ids;
mod layer;
mod phase;
mod propagate;
mod record;

pub use export::{Exporter, TraceError};
pub use ids::{attempt_context, attempt_traceparent, parse_traceparent, run_context, run_ids};
pub use layer::TraceLayer;
pub use phase::{in_context, phase};
pub use propagate::inject_current;
pub use record::{record, record_attempt, record_run, Attr};

/// Whether spans are being exported in this process.
pub fn enabled() -> bool {
    export::ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}
