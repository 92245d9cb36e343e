//! Corrupt data on disk is never served over gRPC. In-crate because planting
//! corrupt data needs the store's test-only raw write.

use buildfleet_proto::convert::to_reapi;
use std::sync::Arc;

use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
use buildfleet_proto::bytestream::ReadRequest;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::reapi::{BatchReadBlobsRequest, FindMissingBlobsRequest};
use bytes::Bytes;
use tokio::net::TcpListener;
use tonic::Code;

use super::{serve, wire_function};
use crate::resource_name::read_resource_name;
use crate::store::{BlobStore, RocksStore};
use buildfleet_model::digest::{Digest, DigestFunction};

/// A cache server over `store` on 127.0.0.1, its channel, and its stop.
async fn start(
    store: &Arc<RocksStore>,
) -> (
    tonic::transport::Channel,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), crate::error::CacheError>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::clone(store) as Arc<dyn BlobStore>,
        buildfleet_trust::Guard::open(),
        async {
            let _ = stopped.await;
        },
    ));
    let channel = tonic::transport::Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, stop, server)
}

/// Reads a whole ByteStream: the bytes that arrived, and how it ended.
async fn read_all(
    bytestream: &mut ByteStreamClient<tonic::transport::Channel>,
    digest: &Digest,
    offset: i64,
    limit: i64,
) -> (Vec<u8>, Result<(), tonic::Status>) {
    let mut got = Vec::new();
    let response = bytestream
        .read(ReadRequest {
            resource_name: read_resource_name("inst", digest),
            read_offset: offset,
            read_limit: limit,
        })
        .await;
    let mut stream = match response {
        Ok(response) => response.into_inner(),
        Err(status) => return (got, Err(status)),
    };
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk.data),
            Ok(None) => return (got, Ok(())),
            Err(status) => return (got, Err(status)),
        }
    }
}

#[tokio::test]
async fn corrupt_blobs_on_disk_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path()).unwrap());
    let (channel, stop, server) = start(&store).await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut bytestream = ByteStreamClient::new(channel);

    for function in DigestFunction::ALL {
        let data = Bytes::from(vec![function as u8 + 1; 200_000]);
        let digest = Digest::of_with(function, &data);
        store.put(&digest, data.clone()).unwrap();
        let mut garbage = data.to_vec();
        garbage[1234] ^= 0x55;
        store.write_unverified(&digest, &garbage);

        let batch = cas
            .batch_read_blobs(BatchReadBlobsRequest {
                digests: vec![to_reapi(digest)],
                digest_function: wire_function(function) as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let item = &batch.responses[0];
        assert_eq!(
            item.status.as_ref().unwrap().code,
            Code::NotFound as i32,
            "{function}"
        );
        assert!(item.data.is_empty(), "{function}: no corrupt bytes sent");

        // Once found corrupt it is deleted: presence checks agree.
        let missing = cas
            .find_missing_blobs(FindMissingBlobsRequest {
                blob_digests: vec![to_reapi(digest)],
                digest_function: wire_function(function) as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(missing.missing_blob_digests, vec![to_reapi(digest)]);
        assert_eq!(store.total_bytes(), 0, "{function}: size accounting fixed");

        // Corrupted again, ByteStream refuses it too.
        store.put(&digest, data.clone()).unwrap();
        store.write_unverified(&digest, &garbage);
        let (got, end) = read_all(&mut bytestream, &digest, 0, 0).await;
        let status = end.expect_err("a corrupt blob's read must not complete");
        assert!(
            got.is_empty(),
            "{function}: served {} corrupt bytes",
            got.len()
        );
        assert_eq!(status.code(), Code::NotFound, "{function}: {status:?}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A large blob is streamed from its file and verified on the way: a
/// corrupt one sends its early pieces but never the last, ends with
/// DATA_LOSS and is deleted; a ranged read of a sound one gets exactly its
/// range.
#[tokio::test]
async fn a_corrupt_large_blob_never_completes_a_read_and_ranges_read_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path()).unwrap());
    let (channel, stop, server) = start(&store).await;
    let mut bytestream = ByteStreamClient::new(channel);
    for function in DigestFunction::ALL {
        let data: Vec<u8> = (0..5 << 20)
            .map(|i: u32| (i % 251) as u8 ^ function as u8)
            .collect();
        let digest = Digest::of_with(function, &data);
        store.put(&digest, Bytes::from(data.clone())).unwrap();

        let (got, end) = read_all(&mut bytestream, &digest, 3_000_000, 1_500_000).await;
        end.unwrap();
        assert_eq!(got, &data[3_000_000..4_500_000], "{function}: the range");
        let (got, end) = read_all(&mut bytestream, &digest, 0, 0).await;
        end.unwrap();
        assert!(got == data, "{function}: the whole blob");

        let mut garbage = data.clone();
        garbage[data.len() - 10] ^= 0x55;
        store.write_unverified(&digest, &garbage);
        let (got, end) = read_all(&mut bytestream, &digest, 0, 0).await;
        let status = end.expect_err("a corrupt blob's read must not complete");
        assert_eq!(status.code(), Code::DataLoss, "{function}: {status:?}");
        assert!(status.message().contains("corrupt"), "{status:?}");
        assert!(
            (got.len() as u64) < digest.size_bytes,
            "{function}: the last piece was held back ({} bytes sent)",
            got.len()
        );
        assert_eq!(
            store.contains_many(&[digest]).unwrap(),
            vec![false],
            "deleted"
        );
        assert_eq!(store.total_bytes(), 0, "{function}: size accounting fixed");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
