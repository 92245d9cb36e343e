//! The server side: each call that arrives with a `traceparent` is a span
//! under it, named for the RPC, from the request to the response's head
//! (a streamed body ends later; its span does not wait for it).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Records a span for each traced call (the `layer` of a tonic server).
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = if crate::enabled() {
            let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
            parent.span().span_context().is_valid().then(|| {
                let path = request.uri().path();
                let tracer = opentelemetry::global::tracer("buildfleet");
                let span = tracer
                    .span_builder(path.trim_start_matches('/').to_owned())
                    .with_kind(SpanKind::Server)
                    .with_attributes([KeyValue::new("rpc.path", path.to_owned())])
                    .start_with_context(&tracer, &parent);
                parent.with_span(span)
            })
        } else {
            None
        };
        TracedFuture {
            inner: self.inner.call(request),
            span,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call's future; its span ends when it resolves.
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        span: Option<Context>,
    }
}

impl<F: Future> Future for TracedFuture<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _attached = this.span.as_ref().map(|c| c.clone().attach());
        let out = this.inner.poll(cx);
        if out.is_ready() {
            if let Some(span) = this.span.take() {
                span.span().end();
            }
        }
        out
    }
}
