//! The one interceptor layer every server puts in front of all its
//! services: it reads the bearer token, finds its grant, checks the RPC
//! table, and records the [`Caller`] for the handler — or answers
//! UNAUTHENTICATED / PERMISSION_DENIED itself, before any handler runs.

use std::task::{Context, Poll};

use futures::future::{Either, Ready};
use tonic::Status;

use crate::policy;
use crate::reload::Reloading;
use crate::role::Caller;
use crate::tokens::TokenSet;

/// What a server checks at its door: TLS (when configured), then tokens
/// from a (reloaded) file, or everyone.
#[derive(Clone, Debug)]
pub struct Guard {
    tokens: Option<Reloading<TokenSet>>,
    tls: Option<Reloading<tokio_rustls::rustls::ServerConfig>>,
}

impl Guard {
    /// Every caller is an admin: for a server run without a token file
    /// (said loudly at start-up by the caller of this).
    pub fn open() -> Guard {
        Guard {
            tokens: None,
            tls: None,
        }
    }

    pub fn tokens(tokens: Reloading<TokenSet>) -> Guard {
        Guard {
            tokens: Some(tokens),
            tls: None,
        }
    }

    /// Serve over TLS with this (reloaded) configuration.
    pub fn with_tls(self, tls: Reloading<tokio_rustls::rustls::ServerConfig>) -> Guard {
        Guard {
            tls: Some(tls),
            ..self
        }
    }

    /// The TLS configuration connections go through, if any.
    pub fn tls(&self) -> Option<Reloading<tokio_rustls::rustls::ServerConfig>> {
        self.tls.clone()
    }

    pub fn is_open(&self) -> bool {
        self.tokens.is_none()
    }

    /// Decides one request from its path and headers.
    pub fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Caller, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(Caller::open());
        };
        if let Some(policy::Rpc {
            who: policy::Who::Anyone,
            ..
        }) = policy::find(path)
        {
            return Ok(Caller {
                name: "anyone".into(),
                role: crate::Role::Client,
                cache_write: false,
                authenticated: false,
            });
        }
        let token = bearer(headers)?;
        let caller = tokens
            .get()
            .find(token)
            .map(|g| g.caller())
            .ok_or_else(|| {
                Status::unauthenticated("unknown token (it may have been rotated out)")
            })?;
        if !policy::admits(path, &caller) {
            return Err(Status::permission_denied(format!(
                "`{}` ({} token) may not call {path}{}",
                caller.name,
                caller.role,
                match policy::find(path) {
                    Some(rpc) => format!("; it is for: {}", rpc.who.describe()),
                    None => " (not in the access table: admins only)".into(),
                }
            )));
        }
        Ok(caller)
    }
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, Status> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated(
            "no token: this server needs a bearer token (--token-file FILE or BUILDFLEET_TOKEN)",
        )
    })?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Status::unauthenticated("the authorization header is not `Bearer <token>`"))
}

impl<S> tower::Layer<S> for Guard {
    type Service = Guarded<S>;
    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: self.clone(),
        }
    }
}

/// A service behind the [`Guard`].
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    guard: Guard,
}

impl<S, B> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        match self.guard.admit(&path, request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Either::Left(self.inner.call(request))
            }
            Err(status) => {
                let peer = request
                    .extensions()
                    .get::<tonic::transport::server::TcpConnectInfo>()
                    .and_then(|i| i.remote_addr());
                tracing::warn!(
                    rpc = %path,
                    peer = ?peer,
                    code = ?status.code(),
                    reason = status.message(),
                    "call refused"
                );
                Either::Right(futures::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{stored_hash, TokenSet};
    use crate::Role;

    fn guard() -> Guard {
        let text = format!(
            "tokens:\n  - name: ci\n    role: client\n    hash: {}\n  - name: r\n    role: runner\n    hash: {}\n",
            stored_hash("bft_c"),
            stored_hash("bft_r")
        );
        Guard::tokens(Reloading::fixed(TokenSet::parse("t", &text).unwrap()))
    }

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(v) = value {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    const SUBMIT: &str = "/buildfleet.v1.Pipelines/Submit";
    const SESSION: &str = "/buildfleet.v1.RunnerService/Session";

    #[test]
    fn no_token_a_malformed_one_and_an_unknown_one_are_unauthenticated() {
        let g = guard();
        for h in [
            None,
            Some("bft_c"),
            Some("Basic bft_c"),
            Some("Bearer "),
            Some("Bearer bft_x"),
        ] {
            let e = g.admit(SUBMIT, &headers(h)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{h:?}");
        }
    }

    #[test]
    fn a_known_token_is_admitted_by_role_and_recorded() {
        let g = guard();
        let c = g.admit(SUBMIT, &headers(Some("Bearer bft_c"))).unwrap();
        assert_eq!(
            (c.name.as_str(), c.role, c.authenticated),
            ("ci", Role::Client, true)
        );
        let e = g
            .admit(SESSION, &headers(Some("Bearer bft_c")))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("`ci` (client token) may not call"),
            "{}",
            e.message()
        );
        assert!(g.admit(SESSION, &headers(Some("Bearer bft_r"))).is_ok());
    }

    #[test]
    fn health_needs_no_token_and_an_open_guard_admits_all_as_admin() {
        assert!(guard()
            .admit("/grpc.health.v1.Health/Check", &headers(None))
            .is_ok());
        let c = Guard::open().admit(SESSION, &headers(None)).unwrap();
        assert_eq!(c, Caller::open());
    }
}
