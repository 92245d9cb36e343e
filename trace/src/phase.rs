//! The runner's phases of a shard (materialise, restore, execute, upload,
//! save) as spans under the attempt its lease names, current while the
//! phase runs so the cache calls it makes carry it.

use std::future::Future;

use opentelemetry::trace::{FutureExt as _, TraceContextExt as _, Tracer as _};
use opentelemetry::Context;

/// Runs `f` with `cx` current (its calls to the cache carry it).
pub async fn in_context<F: Future>(cx: Context, f: F) -> F::Output {
    f.with_context(cx).await
}

/// Runs `f` as the phase `name`, a child of the current context; untraced
/// (no exporter, no parent) it only runs `f`.
pub async fn phase<F: Future>(name: &'static str, f: F) -> F::Output {
    let parent = Context::current();
    if !crate::enabled() || !parent.span().span_context().is_valid() {
        return f.await;
    }
    let tracer = opentelemetry::global::tracer("buildfleet");
    let span = tracer.start_with_context(name, &parent);
    let cx = parent.with_span(span);
    let out = f.with_context(cx.clone()).await;
    cx.span().end();
    out
}
