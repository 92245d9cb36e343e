//! REAPI CAS, ByteStream and Capabilities as a Bazel-family client sees them:
//! SHA-256 and BLAKE3 side by side, and resumable uploads.

mod support;

use buildfleet_proto::convert::to_reapi;
use std::sync::Arc;

use buildfleet_cache::{
    read_resource_name, write_resource_name, BlobStore, Digest, DigestFunction, MemoryStore,
    RocksStore,
};
use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
use buildfleet_proto::bytestream::{QueryWriteStatusRequest, ReadRequest, WriteRequest};
use buildfleet_proto::reapi::capabilities_client::CapabilitiesClient;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::reapi::{
    batch_update_blobs_request, digest_function, BatchReadBlobsRequest, BatchUpdateBlobsRequest,
    FindMissingBlobsRequest, GetCapabilitiesRequest,
};
use support::{blob, TestServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

const SHA256: i32 = digest_function::Value::Sha256 as i32;
const BLAKE3: i32 = digest_function::Value::Blake3 as i32;

#[tokio::test]
async fn capabilities_list_both_functions_and_action_cache_updates() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let caps = CapabilitiesClient::new(server.channel().await)
        .get_capabilities(GetCapabilitiesRequest {
            instance_name: "any/instance".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let cache = caps.cache_capabilities.unwrap();
    assert!(cache.digest_functions.contains(&SHA256), "{cache:?}");
    assert!(cache.digest_functions.contains(&BLAKE3), "{cache:?}");
    assert!(
        cache
            .action_cache_update_capabilities
            .unwrap()
            .update_enabled
    );
    assert_eq!(cache.max_batch_total_size_bytes, 4 * 1024 * 1024);
    assert!(cache.supported_compressors.is_empty(), "identity only");
    server.stop().await;
}

async fn find_missing(
    cas: &mut ContentAddressableStorageClient<Channel>,
    function: i32,
    digests: &[Digest],
) -> Vec<buildfleet_proto::reapi::Digest> {
    cas.find_missing_blobs(FindMissingBlobsRequest {
        instance_name: "main".into(),
        blob_digests: digests.iter().map(|d| to_reapi(*d)).collect(),
        digest_function: function,
    })
    .await
    .unwrap()
    .into_inner()
    .missing_blob_digests
}

#[tokio::test]
async fn sha256_blobs_upload_read_and_stay_apart_from_blake3() {
    let db = tempfile::tempdir().unwrap();
    let server = TestServer::start(Arc::new(RocksStore::open(db.path()).unwrap())).await;
    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    let data = blob(1, 5000);
    let sha = Digest::of_with(DigestFunction::Sha256, &data);
    let b3 = Digest::of(&data);

    // Uploaded with the function left unset: REAPI says that is SHA-256.
    let response = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: "main".into(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(to_reapi(sha)),
                data: data.clone().into(),
                compressor: 0,
            }],
            digest_function: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.responses[0].status.as_ref().unwrap().code, 0);

    assert!(find_missing(&mut cas, SHA256, &[sha]).await.is_empty());
    assert!(find_missing(&mut cas, 0, &[sha]).await.is_empty());
    // The same bytes were never uploaded under BLAKE3.
    assert_eq!(
        find_missing(&mut cas, BLAKE3, &[b3]).await,
        vec![to_reapi(b3)]
    );

    let read = cas
        .batch_read_blobs(BatchReadBlobsRequest {
            digests: vec![to_reapi(sha)],
            digest_function: SHA256,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.responses[0].data, data);

    // ByteStream: the name without a function segment is SHA-256.
    let mut bytestream = ByteStreamClient::new(server.channel().await);
    assert_eq!(
        read_all(&mut bytestream, &read_resource_name("main", &sha))
            .await
            .unwrap(),
        data
    );
    let blake3_name = read_resource_name("main", &b3);
    assert!(blake3_name.contains("/blake3/"));
    let status = read_all(&mut bytestream, &blake3_name).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // And the other way round: a BLAKE3 upload is invisible to SHA-256.
    let other = blob(2, 700);
    let other_b3 = Digest::of(&other);
    let other_sha = Digest::of_with(DigestFunction::Sha256, &other);
    write_all(
        &mut bytestream,
        &write_resource_name("", uuid::Uuid::new_v4(), &other_b3),
        other.clone(),
    )
    .await
    .unwrap();
    assert!(find_missing(&mut cas, BLAKE3, &[other_b3]).await.is_empty());
    assert_eq!(
        find_missing(&mut cas, SHA256, &[other_sha]).await,
        vec![to_reapi(other_sha)]
    );

    // SHA-256 data is verified with SHA-256: a BLAKE3 hash under a SHA-256
    // name is a mismatch, not accepted.
    let lying = Digest {
        function: DigestFunction::Sha256,
        ..other_b3
    };
    let status = write_all(
        &mut bytestream,
        &write_resource_name("", uuid::Uuid::new_v4(), &lying),
        other,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    server.stop().await;
}

async fn read_all(
    bytestream: &mut ByteStreamClient<Channel>,
    name: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = bytestream
        .read(ReadRequest {
            resource_name: name.to_owned(),
            read_offset: 0,
            read_limit: 0,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

async fn write_all(
    bytestream: &mut ByteStreamClient<Channel>,
    name: &str,
    data: Vec<u8>,
) -> Result<i64, tonic::Status> {
    let request = WriteRequest {
        resource_name: name.to_owned(),
        write_offset: 0,
        finish_write: true,
        data: data.into(),
    };
    Ok(bytestream
        .write(futures::stream::iter(vec![request]))
        .await?
        .into_inner()
        .committed_size)
}

async fn query(bytestream: &mut ByteStreamClient<Channel>, name: &str) -> (i64, bool) {
    let status = bytestream
        .query_write_status(QueryWriteStatusRequest {
            resource_name: name.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    (status.committed_size, status.complete)
}

fn chunk(name: &str, data: &[u8], offset: usize, len: usize, finish: bool) -> WriteRequest {
    WriteRequest {
        resource_name: if offset == 0 {
            name.to_owned()
        } else {
            String::new()
        },
        write_offset: offset as i64,
        finish_write: finish,
        data: data[offset..offset + len].to_vec().into(),
    }
}

#[tokio::test]
async fn interrupted_write_resumes_where_it_broke() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut bytestream = ByteStreamClient::new(server.channel().await);
    let data = blob(3, 3 * 1024 * 1024 + 17);
    let digest = Digest::of_with(DigestFunction::Sha256, &data);
    let name = write_resource_name("ci", uuid::Uuid::new_v4(), &digest);
    const CHUNK: usize = 1024 * 1024;

    assert_eq!(
        query(&mut bytestream, &name).await,
        (0, false),
        "unknown upload"
    );

    // Two chunks, then the stream ends without finish_write.
    let (tx, rx) = mpsc::channel(4);
    let mut writer = bytestream.clone();
    let call = tokio::spawn(async move { writer.write(ReceiverStream::new(rx)).await });
    tx.send(chunk(&name, &data, 0, CHUNK, false)).await.unwrap();
    tx.send(chunk(&name, &data, CHUNK, CHUNK, false))
        .await
        .unwrap();
    drop(tx);
    let status = call.await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("finish_write"),
        "{}",
        status.message()
    );

    assert_eq!(
        query(&mut bytestream, &name).await,
        (2 * CHUNK as i64, false)
    );

    // Resuming at the wrong offset is refused, naming both offsets, and
    // keeps what was committed.
    let mut bad = chunk(&name, &data, 2 * CHUNK, CHUNK, false);
    bad.resource_name = name.clone();
    bad.write_offset = CHUNK as i64;
    let status = bytestream
        .write(futures::stream::iter(vec![bad]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let message = status.message();
    assert!(
        message.contains(&format!("expected write_offset {}", 2 * CHUNK))
            && message.contains(&format!("offset {CHUNK}")),
        "{message}"
    );
    assert_eq!(
        query(&mut bytestream, &name).await,
        (2 * CHUNK as i64, false)
    );

    // The resumed write sends only the rest.
    let mut first = chunk(&name, &data, 2 * CHUNK, CHUNK, false);
    first.resource_name = name.clone();
    let rest = data.len() - 3 * CHUNK;
    let last = chunk(&name, &data, 3 * CHUNK, rest, true);
    let response = bytestream
        .write(futures::stream::iter(vec![first, last]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.committed_size, data.len() as i64);
    assert_eq!(
        query(&mut bytestream, &name).await,
        (data.len() as i64, true)
    );
    assert_eq!(
        read_all(&mut bytestream, &read_resource_name("ci", &digest))
            .await
            .unwrap(),
        data
    );
    assert_eq!(
        server.store.total_bytes(),
        data.len() as u64,
        "counted once"
    );

    // Writing a blob that exists again commits its full size without
    // storing (or counting) it twice.
    let again = write_resource_name("ci", uuid::Uuid::new_v4(), &digest);
    let committed = write_all(&mut bytestream, &again, data.clone())
        .await
        .unwrap();
    assert_eq!(committed, data.len() as i64);
    assert_eq!(server.store.total_bytes(), data.len() as u64);
    server.stop().await;
}

#[tokio::test]
async fn write_cancelled_by_the_client_keeps_its_bytes() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut bytestream = ByteStreamClient::new(server.channel().await);
    let data = blob(4, 2 * 1024 * 1024);
    let digest = Digest::of(&data);
    let name = write_resource_name("", uuid::Uuid::new_v4(), &digest);
    const HALF: usize = 1024 * 1024;

    let (tx, rx) = mpsc::channel(4);
    let mut writer = bytestream.clone();
    let call = tokio::spawn(async move { writer.write(ReceiverStream::new(rx)).await });
    tx.send(chunk(&name, &data, 0, HALF, false)).await.unwrap();
    // Wait (bounded) until the server has the chunk, then kill the call
    // mid-stream: the RPC is reset, not ended.
    let mut seen = 0;
    for _ in 0..1000 {
        seen = query(&mut bytestream, &name).await.0;
        if seen == HALF as i64 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(seen, HALF as i64, "server received the first half");
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    drop(tx);

    // The server may notice the reset a moment later; until then the upload
    // is still live and a second writer is told to retry (ABORTED).
    let mut outcome = None;
    for _ in 0..1000 {
        let mut resume = chunk(&name, &data, HALF, HALF, true);
        resume.resource_name = name.clone();
        match bytestream.write(futures::stream::iter(vec![resume])).await {
            Err(status) if status.code() == Code::Aborted => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            other => {
                outcome = Some(other);
                break;
            }
        }
    }
    let response = outcome.expect("upload released").unwrap().into_inner();
    assert_eq!(response.committed_size, data.len() as i64);
    assert_eq!(
        read_all(&mut bytestream, &read_resource_name("", &digest))
            .await
            .unwrap(),
        data
    );
    server.stop().await;
}

#[tokio::test]
async fn ranged_reads_honour_offset_and_limit() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut bytestream = ByteStreamClient::new(server.channel().await);
    let data = blob(5, 10_000);
    let digest = Digest::of_with(DigestFunction::Sha256, &data);
    write_all(
        &mut bytestream,
        &write_resource_name("", uuid::Uuid::new_v4(), &digest),
        data.clone(),
    )
    .await
    .unwrap();
    let name = read_resource_name("", &digest);
    let read = |offset: i64, limit: i64| {
        let mut client = bytestream.clone();
        let name = name.clone();
        async move {
            let mut stream = client
                .read(ReadRequest {
                    resource_name: name,
                    read_offset: offset,
                    read_limit: limit,
                })
                .await?
                .into_inner();
            let mut out = Vec::new();
            while let Some(c) = stream.message().await? {
                out.extend_from_slice(&c.data);
            }
            Ok::<_, tonic::Status>(out)
        }
    };
    assert_eq!(read(9_000, 0).await.unwrap(), data[9_000..].to_vec());
    assert_eq!(read(100, 50).await.unwrap(), data[100..150].to_vec());
    assert_eq!(read(9_990, 50).await.unwrap(), data[9_990..].to_vec());
    assert_eq!(read(10_001, 0).await.unwrap_err().code(), Code::OutOfRange);
    assert_eq!(read(-1, 0).await.unwrap_err().code(), Code::InvalidArgument);
    server.stop().await;
}

/// A ByteStream write of a blob declared larger than the whole store is
/// refused on its first message, before the client sends the rest: the
/// server answers while the stream is still open, holding one chunk.
#[tokio::test]
async fn a_write_declared_larger_than_the_store_is_refused_before_its_bytes() {
    let store = Arc::new(MemoryStore::with_limits(
        buildfleet_cache::StoreLimits::max_bytes(1 << 20),
    ));
    let server = TestServer::start(store.clone()).await;
    let mut bytestream = ByteStreamClient::new(server.channel().await);
    // A 64 MiB blob the client says it will send; only 64 KiB ever is.
    let declared = Digest {
        function: DigestFunction::Blake3,
        hash: [7; 32],
        size_bytes: 64 << 20,
    };
    let name = write_resource_name("", uuid::Uuid::new_v4(), &declared);
    let (tx, rx) = mpsc::channel(4);
    tx.send(WriteRequest {
        resource_name: name,
        write_offset: 0,
        finish_write: false,
        data: vec![0; 64 << 10].into(),
    })
    .await
    .unwrap();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        bytestream.write(ReceiverStream::new(rx)),
    )
    .await
    .expect("answered without waiting for the rest of the blob");
    let status = answer.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("larger than the store"),
        "{}",
        status.message()
    );
    drop(tx);
    assert_eq!(store.total_bytes(), 0);
    server.stop().await;
}

/// Live uploads may together declare no more than the store may hold: each
/// stages a file of its declared size, so slow streams could otherwise
/// fill the disk. The second is refused while the first is open, and
/// accepted once it is gone.
#[tokio::test]
async fn uploads_in_flight_are_bounded_by_the_store_size() {
    let store = Arc::new(MemoryStore::with_limits(
        buildfleet_cache::StoreLimits::max_bytes(1 << 20),
    ));
    let server = TestServer::start(store.clone()).await;
    let data = bytes::Bytes::from(blob(9, 800 << 10));
    let digest = Digest::of(&data);
    let mut first = ByteStreamClient::new(server.channel().await);
    let (tx, rx) = mpsc::channel(4);
    let first_name = write_resource_name("", uuid::Uuid::new_v4(), &digest);
    tx.send(WriteRequest {
        resource_name: first_name.clone(),
        write_offset: 0,
        finish_write: false,
        data: data.slice(..1024),
    })
    .await
    .unwrap();
    let open = tokio::spawn(async move { first.write(ReceiverStream::new(rx)).await });
    // The second asks once the server holds the first's bytes (and so has
    // counted its declared size as in flight).
    let mut status_client = ByteStreamClient::new(server.channel().await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = status_client
            .query_write_status(QueryWriteStatusRequest {
                resource_name: first_name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if status.committed_size == 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first upload's bytes never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let other = bytes::Bytes::from(blob(10, 800 << 10));
    let other_digest = Digest::of(&other);
    let mut second = ByteStreamClient::new(server.channel().await);
    let write_other = |second: &mut ByteStreamClient<Channel>| {
        let request = WriteRequest {
            resource_name: write_resource_name("", uuid::Uuid::new_v4(), &other_digest),
            write_offset: 0,
            finish_write: true,
            data: other.clone(),
        };
        let mut second = second.clone();
        async move { second.write(futures::stream::iter([request])).await }
    };
    let status = write_other(&mut second).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("in flight"), "{status:?}");
    drop(tx); // the first stream ends unfinished
    let _ = open.await.unwrap();
    write_other(&mut second)
        .await
        .expect("accepted once the first upload is gone");
    server.stop().await;
}
