//! TLS and mutual TLS against a real cache server on loopback, with
//! certificates made here: the right certificates connect, missing or
//! foreign ones do not, and a renewed certificate is served without a
//! restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use buildfleet_cache::{BlobStore, CasClient, Digest, MemoryStore};
use buildfleet_trust::{ClientTls, ClientTrust, Guard, ServerTlsFiles};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio_util::sync::CancellationToken;

/// A certificate authority that signs servers and clients.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf certificate and key (PEM) for `names`.
    fn sign(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.cert.pem()).unwrap();
        path
    }
}

/// Writes a leaf's files, replacing old ones whole (as a Secret update does).
fn write_leaf(dir: &Path, stem: &str, (cert, key): &(String, String)) {
    for (ext, text) in [("crt", cert), ("key", key)] {
        let tmp = dir.join(format!("{stem}.{ext}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(format!("{stem}.{ext}"))).unwrap();
    }
}

/// A cache serving TLS from `dir/server.{crt,key}`, optionally requiring
/// client certificates signed by `client_ca`.
async fn serve(dir: &Path, client_ca: Option<std::path::PathBuf>) -> (String, CancellationToken) {
    let tls = buildfleet_trust::tls::watch_server(ServerTlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_ca,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
    tokio::spawn(buildfleet_cache::serve(
        listener,
        store,
        Guard::open().with_tls(tls),
        stop.clone().cancelled_owned(),
    ));
    (url, stop)
}

/// Whether a client with `tls` can make a call (a fresh connection).
async fn works(url: &str, tls: ClientTls) -> Result<(), String> {
    let trust = ClientTrust::none().with_tls(tls);
    let call = async {
        let cas = CasClient::connect_with(url, &trust)
            .await
            .map_err(|e| e.to_string())?;
        cas.find_missing(&[Digest::of(b"x")])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

fn trusting(ca: &Path) -> ClientTls {
    ClientTls::from_files(Some(ca), None, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls_succeed_with_the_right_certificates_and_fail_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("fleet CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    write_leaf(dir.path(), "server", &ca.sign(&["127.0.0.1", "localhost"]));

    // Server TLS only.
    let (url, stop) = serve(dir.path(), None).await;
    works(&url, trusting(&ca_file))
        .await
        .expect("a client trusting the CA connects");
    assert!(
        works(&url, ClientTls::default()).await.is_err(),
        "a client trusting only the web PKI does not"
    );
    let plain = url.replace("https://", "http://");
    assert!(
        works(&plain, ClientTls::default()).await.is_err(),
        "plain HTTP/2 does not"
    );
    stop.cancel();

    // Mutual TLS: clients need a certificate from the client CA.
    let clients = Ca::new("client CA");
    let clients_file = clients.write(dir.path(), "clients.crt");
    write_leaf(dir.path(), "runner", &clients.sign(&["runner-1"]));
    write_leaf(dir.path(), "stranger", &Ca::new("other").sign(&["mallory"]));
    let (url, stop) = serve(dir.path(), Some(clients_file)).await;
    let with = |stem: &str| {
        ClientTls::from_files(
            Some(&ca_file),
            Some(&dir.path().join(format!("{stem}.crt"))),
            Some(&dir.path().join(format!("{stem}.key"))),
        )
        .unwrap()
    };
    works(&url, with("runner"))
        .await
        .expect("the right client certificate connects");
    assert!(
        works(&url, trusting(&ca_file)).await.is_err(),
        "no client certificate: refused"
    );
    assert!(
        works(&url, with("stranger")).await.is_err(),
        "a foreign client certificate: refused"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let (old_file, new_file) = (
        old.write(dir.path(), "old.crt"),
        new.write(dir.path(), "new.crt"),
    );
    write_leaf(dir.path(), "server", &old.sign(&["127.0.0.1"]));
    let (url, stop) = serve(dir.path(), None).await;
    works(&url, trusting(&old_file))
        .await
        .expect("the first certificate is served");
    assert!(works(&url, trusting(&new_file)).await.is_err());

    write_leaf(dir.path(), "server", &new.sign(&["127.0.0.1"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while works(&url, trusting(&new_file)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        works(&url, trusting(&old_file)).await.is_err(),
        "new connections get the new certificate only"
    );
    stop.cancel();
}
