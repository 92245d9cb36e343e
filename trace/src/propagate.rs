//! W3C trace context in gRPC metadata: the client side puts the current
//! context's `traceparent` on each call.

use opentelemetry::propagation::{Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            AsciiMetadataKey::from_bytes(key.as_bytes()),
            AsciiMetadataValue::try_from(value),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// Adds the current context's `traceparent` to `metadata`, when there is
/// one and traces are exported.
pub fn inject_current(metadata: &mut MetadataMap) {
    if !crate::enabled() {
        return;
    }
    let cx = Context::current();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut Metadata(metadata));
    }
}
