//! The client side: every gRPC client of the fleet (the CLI, runners,
//! the embedded fleet) connects through here, so each presents its token
//! the same way.

use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad URL `{url}`: {source}")]
    Url {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("the token {0} is not usable in a header (it must be printable ASCII)")]
    BadToken(String),
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
}

/// What a client presents to the fleet's servers, and the TLS it speaks
/// to `https://` ones.
#[derive(Clone, Default)]
pub struct ClientTrust {
    bearer: Bearer,
    tls: Option<Arc<crate::tls::ClientTls>>,
}

impl std::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTrust")
            .field("token", &self.bearer.0.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientTrust {
    /// No token: for servers without a token file.
    pub fn none() -> ClientTrust {
        ClientTrust::default()
    }

    pub fn with_token(token: &str) -> Result<ClientTrust, ConnectError> {
        let value: MetadataValue<Ascii> = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| ConnectError::BadToken(redacted(token)))?;
        Ok(ClientTrust {
            bearer: Bearer(Some(Arc::new(value))),
            tls: None,
        })
    }

    /// Speaks TLS with `tls` to `https://` servers.
    pub fn with_tls(self, tls: crate::tls::ClientTls) -> ClientTrust {
        ClientTrust {
            tls: Some(Arc::new(tls)),
            ..self
        }
    }

    /// The token from a file (first line; a Kubernetes Secret mounted as a
    /// file, or the embedded fleet's), else `BUILDFLEET_TOKEN`, else none.
    pub fn from_file_or_env(file: Option<&std::path::Path>) -> Result<ClientTrust, ConnectError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConnectError::TokenFile {
                path: path.display().to_string(),
                source,
            })?;
            return ClientTrust::with_token(text.lines().next().unwrap_or(""));
        }
        match std::env::var("BUILDFLEET_TOKEN") {
            Ok(t) if !t.trim().is_empty() => ClientTrust::with_token(&t),
            _ => Ok(ClientTrust::none()),
        }
    }

    pub fn has_token(&self) -> bool {
        self.bearer.0.is_some()
    }

    /// An endpoint for `url` with Nagle off (small RPCs must not wait for
    /// delayed ACKs); callers add their own settings, then [`Self::wrap`].
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ConnectError> {
        let bad = |source| ConnectError::Url {
            url: url.to_owned(),
            source,
        };
        let endpoint =
            buildfleet_proto::transport::tune(Endpoint::from_shared(url.to_owned()).map_err(bad)?);
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        // An https URL without a CA of ours trusts the web PKI.
        let tls = self.tls.as_deref().cloned().unwrap_or_default();
        endpoint.tls_config(tls.tonic_config()).map_err(bad)
    }

    /// A channel that presents this client's token on every call.
    pub fn wrap(&self, channel: Channel) -> AuthChannel {
        InterceptedService::new(channel, self.bearer.clone())
    }
}

/// Connects to `url` presenting `trust`.
pub async fn connect(url: &str, trust: &ClientTrust) -> Result<AuthChannel, ConnectError> {
    let channel = trust
        .endpoint(url)?
        .connect()
        .await
        .map_err(|source| ConnectError::Connect {
            url: url.to_owned(),
            source,
        })?;
    Ok(trust.wrap(channel))
}

/// A channel whose every call carries the client's token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer …` to each call. Never printed.
#[derive(Clone, Default)]
pub struct Bearer(Option<Arc<MetadataValue<Ascii>>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", MetadataValue::clone(value));
        }
        // The caller's trace (a runner's shard phase), for the server's span.
        buildfleet_trace::inject_current(request.metadata_mut());
        Ok(request)
    }
}

/// Enough of a token to recognise it in a message, never enough to use.
fn redacted(token: &str) -> String {
    let shown: String = token.chars().take(6).collect();
    format!("`{shown}…`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token() {
        let t = ClientTrust::with_token("bft_0123456789abcdef").unwrap();
        let shown = format!("{t:?} {:?}", t.bearer);
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_being_shown() {
        let e = ClientTrust::with_token("bft_abc\u{7}secretpart")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secretpart"), "{e}");
    }
}
