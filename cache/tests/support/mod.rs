//! A real cache server on an OS-assigned loopback port, shared by the REAPI
//! and index test files.

// Each test binary compiles this module and uses a different subset of it.
#![allow(dead_code)]

use std::sync::Arc;

use buildfleet_cache::{serve, BlobStore, CacheError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

pub struct TestServer {
    pub store: Arc<dyn BlobStore>,
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), CacheError>>>,
}

impl TestServer {
    pub async fn start(store: Arc<dyn BlobStore>) -> TestServer {
        TestServer::start_guarded(store, buildfleet_trust::Guard::open()).await
    }

    /// A server that checks tokens with `guard`.
    pub async fn start_guarded(
        store: Arc<dyn BlobStore>,
        guard: buildfleet_trust::Guard,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::clone(&store), guard, async {
            let _ = stopped.await;
        }));
        TestServer {
            store,
            url,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server and checks it shut down cleanly.
    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Deterministic test data.
pub fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Writes `data` at `rel` under `root`, creating parent directories.
pub fn write(root: &std::path::Path, rel: &str, data: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

pub fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
