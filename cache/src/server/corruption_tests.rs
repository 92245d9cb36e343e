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

#[tokio::test]
async fn corrupt_blobs_on_disk_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::clone(&store) as Arc<dyn BlobStore>,
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
        let status = match bytestream
            .read(ReadRequest {
                resource_name: read_resource_name("inst", &digest),
                read_offset: 0,
                read_limit: 0,
            })
            .await
        {
            Err(status) => status,
            Ok(response) => {
                let mut stream = response.into_inner();
                let mut got = Vec::new();
                loop {
                    match stream.message().await {
                        Ok(Some(chunk)) => got.extend_from_slice(&chunk.data),
                        Ok(None) => panic!("{function}: served {} corrupt bytes", got.len()),
                        Err(status) => break status,
                    }
                }
            }
        };
        assert_eq!(status.code(), Code::NotFound, "{function}: {status:?}");
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
