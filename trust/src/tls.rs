//! TLS for every server and client, with rustls: certificates and keys
//! from PEM files, optional mutual TLS, and a server that takes up new
//! files without a restart (each new connection uses the latest ones).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use crate::reload::Reloading;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("TLS set-up: {0}")]
    Config(String),
}

/// A server's certificate files (`--tls-cert`, `--tls-key`, and for
/// mutual TLS `--tls-client-ca`).
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by one of these.
    pub client_ca: Option<PathBuf>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            path: path.display().to_string(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            path: path.display().to_string(),
            message: format!("no certificate in this {what}"),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        path: path.display().to_string(),
        message: format!("no PEM private key: {e}"),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the files into a rustls server config speaking HTTP/2 (gRPC).
pub fn server_config(files: &ServerTlsFiles) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("client CA file", ca)? {
                roots.add(c).map_err(|e| TlsError::Invalid {
                    path: ca.display().to_string(),
                    message: e.to_string(),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs("certificate file", &files.cert)?, key(&files.key)?)
        .map_err(|e| TlsError::Invalid {
            path: files.key.display().to_string(),
            message: format!("the key does not fit the certificate: {e}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The server's TLS, read now (a bad file stops start-up) and again
/// whenever one of its files changes.
pub fn watch_server(files: ServerTlsFiles) -> Result<Reloading<rustls::ServerConfig>, TlsError> {
    let mut paths = vec![files.cert.clone(), files.key.clone()];
    paths.extend(files.client_ca.clone());
    Reloading::watch("TLS certificates", paths, move || server_config(&files))
}

/// How long a client may take over its handshake before it is dropped:
/// a stalled handshake must not hold a connection slot forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections of `listener`, each through a TLS handshake with the
/// configuration current when it arrived. Failed handshakes (a client
/// without the right certificate) are logged and dropped; the stream ends
/// when the server stops reading it.
pub fn incoming(
    listener: TcpListener,
    config: Reloading<rustls::ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(
        async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: wait, don't spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                // Without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms
                // to small RPCs.
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(config.get());
                let tx = tx.clone();
                tokio::spawn(
                    async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                let _ = tx.send(Ok(stream)).await;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
                        }
                    }
                    .instrument(tracing::info_span!("tls_handshake")),
                );
            }
        }
        .instrument(tracing::info_span!("tls_accept")),
    );
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// What a client presents and trusts over TLS (`https://` URLs).
#[derive(Clone, Default)]
pub struct ClientTls {
    /// The CA that signed the servers' certificates (else the web PKI).
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and key, for servers that require one.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// Reads the client's files: a CA to trust, and a certificate with
    /// its key (both or neither).
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, TlsError> {
        let ca_pem = ca
            .map(|p| certs("CA file", p).and_then(|_| read("CA file", p)))
            .transpose()?;
        let identity_pem = match (cert, key) {
            (Some(c), Some(k)) => {
                certs("certificate file", c)?;
                key_check(k)?;
                Some((read("certificate file", c)?, read("private key", k)?))
            }
            (None, None) => None,
            _ => {
                return Err(TlsError::Config(
                    "a client certificate needs both --tls-cert and --tls-key".into(),
                ))
            }
        };
        Ok(ClientTls {
            ca_pem,
            identity_pem,
        })
    }

    pub fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca_pem {
            Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(ca)),
            None => config.with_webpki_roots(),
        };
        if let Some((cert, key)) = &self.identity_pem {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        config
    }
}

fn key_check(path: &Path) -> Result<(), TlsError> {
    key(path).map(|_| ())
}
