//! A plain HTTP/1 server with one page: `GET /metrics`. hyper directly,
//! since tonic already builds it; no web framework for one route.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{info, warn, Instrument};

use crate::Source;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("metrics listener failed: {0}")]
    Accept(#[from] std::io::Error),
}

/// Serves `source` at `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    source: Source,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    info!(addr = ?listener.local_addr().ok(), "metrics serving at /metrics");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted?,
        };
        let source = source.clone();
        let service = hyper::service::service_fn(move |request| {
            let source = source.clone();
            async move { Ok::<_, Infallible>(answer(&source, &request)) }
        });
        let span = tracing::info_span!("metrics_connection", %peer);
        tokio::spawn(
            async move {
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    warn!(error = %e, "metrics connection ended with an error");
                }
            }
            .instrument(span),
        );
    }
}

fn answer<B>(source: &Source, request: &Request<B>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    };
    let text = "text/plain; charset=utf-8";
    if request.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            text,
            "only /metrics is served here\n".into(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "GET /metrics\n".into(),
        );
    }
    match crate::encode(source.as_ref()) {
        Ok(body) => reply(StatusCode::OK, crate::CONTENT_TYPE, body),
        Err(e) => {
            warn!(error = %e, "metrics could not be encoded");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                text,
                format!("metrics could not be encoded: {e}\n"),
            )
        }
    }
}
