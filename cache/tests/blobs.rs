//! Many blobs at once through CasClient, over a real server on loopback.

use std::sync::Arc;

use buildfleet_cache::{serve, BlobStore, CasClient, Digest, RocksStore};
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test]
async fn upload_blobs_and_read_blobs_round_trip_small_large_and_duplicates() {
    let db = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = Arc::new(RocksStore::open(db.path()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        Arc::clone(&store),
        buildfleet_trust::Guard::open(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = CasClient::connect(&url).await.unwrap();

    // Enough small blobs for several batches, two large ones, a duplicate
    // and the empty blob.
    let mut blobs: Vec<Bytes> = (0..3000u32)
        .map(|i| Bytes::from(format!("small blob {i} ").repeat(100)))
        .collect();
    blobs.push(Bytes::from(vec![7u8; 3 * 1024 * 1024]));
    blobs.push(Bytes::from(vec![9u8; 1024 * 1024]));
    blobs.push(blobs[0].clone());
    blobs.push(Bytes::new());
    let total_distinct = 3000 + 2;

    let (digests, stats) = client.upload_blobs(blobs.clone()).await.unwrap();
    assert_eq!(digests.len(), blobs.len());
    assert_eq!(stats.uploaded_blobs, total_distinct);
    assert_eq!(stats.skipped_blobs, 1, "the empty blob");
    for (digest, blob) in digests.iter().zip(&blobs) {
        assert_eq!(*digest, Digest::of(blob));
    }
    assert!(store.contains_many(&digests).unwrap().iter().all(|&c| c));

    let again = client.upload_blobs(blobs.clone()).await.unwrap().1;
    assert_eq!(again.uploaded_blobs, 0);

    let read = client.read_blobs(&digests).await.unwrap();
    assert_eq!(read, blobs);

    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
