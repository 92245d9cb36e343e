//! A client that speaks only standard REAPI: ByteStream Write/Read and
//! BatchUpdateBlobs/BatchReadBlobs from the generated stubs, the way a
//! Bazel-family client does, with nothing of buildfleet's own client.

use buildfleet_cache::{read_resource_name, write_resource_name, Digest, DigestFunction};
use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
use buildfleet_proto::bytestream::{ReadRequest, WriteRequest};
use buildfleet_proto::convert::to_reapi;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::reapi::{
    batch_update_blobs_request, digest_function, BatchReadBlobsRequest, BatchUpdateBlobsRequest,
};
use bytes::Bytes;
use tonic::transport::{Channel, Endpoint};

/// ByteStream chunk size: what most clients send (Bazel's is 16 KiB by
/// default, others 1 MiB; larger chunks favour every server alike).
const CHUNK: usize = 1 << 20;
const MAX_MESSAGE: usize = 16 << 20;

/// One connection, as a separate client would have: default HTTP/2
/// settings, Nagle off.
pub async fn connect(url: &str) -> Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("url")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect")
}

fn wire(function: DigestFunction) -> i32 {
    match function {
        DigestFunction::Sha256 => digest_function::Value::Sha256 as i32,
        DigestFunction::Blake3 => digest_function::Value::Blake3 as i32,
    }
}

pub async fn write(channel: Channel, digest: Digest, data: Bytes) {
    let name = write_resource_name("", uuid::Uuid::new_v4(), &digest);
    let len = data.len();
    let requests = (0..len.div_ceil(CHUNK).max(1)).map(move |i| {
        let (start, stop) = (i * CHUNK, ((i + 1) * CHUNK).min(len));
        WriteRequest {
            resource_name: if i == 0 { name.clone() } else { String::new() },
            write_offset: start as i64,
            finish_write: stop == len,
            data: data.slice(start..stop),
        }
    });
    let committed = ByteStreamClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .write(futures::stream::iter(requests))
        .await
        .expect("ByteStream write")
        .into_inner()
        .committed_size;
    assert_eq!(committed, len as i64, "write committed");
}

/// Reads a whole blob; returns how many bytes came.
pub async fn read(channel: Channel, digest: Digest) -> u64 {
    let mut stream = ByteStreamClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .read(ReadRequest {
            resource_name: read_resource_name("", &digest),
            read_offset: 0,
            read_limit: 0,
        })
        .await
        .expect("ByteStream read")
        .into_inner();
    let mut got = 0u64;
    while let Some(chunk) = stream.message().await.expect("read stream") {
        got += chunk.data.len() as u64;
    }
    assert_eq!(got, digest.size_bytes, "read whole");
    got
}

pub async fn batch_update(channel: Channel, function: DigestFunction, blobs: &[(Digest, Bytes)]) {
    let response = ContentAddressableStorageClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .max_decoding_message_size(MAX_MESSAGE)
        .batch_update_blobs(BatchUpdateBlobsRequest {
            requests: blobs
                .iter()
                .map(|(d, data)| batch_update_blobs_request::Request {
                    digest: Some(to_reapi(*d)),
                    data: data.clone(),
                    compressor: 0,
                })
                .collect(),
            digest_function: wire(function),
            ..Default::default()
        })
        .await
        .expect("BatchUpdateBlobs")
        .into_inner();
    assert!(
        response
            .responses
            .iter()
            .all(|r| r.status.as_ref().is_some_and(|s| s.code == 0)),
        "every blob stored"
    );
}

pub async fn batch_read(channel: Channel, function: DigestFunction, digests: &[Digest]) {
    let response = ContentAddressableStorageClient::new(channel)
        .max_encoding_message_size(MAX_MESSAGE)
        .max_decoding_message_size(MAX_MESSAGE)
        .batch_read_blobs(BatchReadBlobsRequest {
            digests: digests.iter().map(|d| to_reapi(*d)).collect(),
            digest_function: wire(function),
            ..Default::default()
        })
        .await
        .expect("BatchReadBlobs")
        .into_inner();
    assert!(
        response
            .responses
            .iter()
            .all(|r| r.status.as_ref().is_some_and(|s| s.code == 0)
                && r.data.len() as u64 == r.digest.as_ref().map_or(0, |d| d.size_bytes as u64)),
        "every blob read"
    );
}
