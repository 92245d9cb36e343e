//! A real cache server for the benchmarks: its own thread and runtime (as if
//! it were another process), listening on an OS-assigned loopback port.

use std::sync::Arc;

use buildfleet_cache::{serve, BlobStore};
use tokio::sync::oneshot;

pub struct BenchServer {
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BenchServer {
    pub fn start(store: Arc<dyn BlobStore>) -> BenchServer {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bf-server-main".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("bf-server")
                    .enable_all()
                    .build()
                    .expect("server runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind loopback");
                    let addr = listener.local_addr().expect("local addr");
                    url_tx.send(format!("http://{addr}")).expect("url");
                    serve(listener, store, buildfleet_trust::Guard::open(), async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("server runs until stopped");
                });
            })
            .expect("spawn server thread");
        let url = url_rx.recv().expect("server started");
        BenchServer {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread");
        }
    }
}
