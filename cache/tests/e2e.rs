//! End to end over a real tonic server on loopback.

mod support;

use buildfleet_proto::convert::to_reapi;
use support::{set_mode, write, TestServer};

use std::path::Path;
use std::sync::Arc;

use buildfleet_cache::{
    read_resource_name, snapshot, write_resource_name, CasClient, Digest, DigestFunction,
    MemoryStore, RocksStore,
};
use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
use buildfleet_proto::bytestream::{ReadRequest, WriteRequest};
use buildfleet_proto::reapi::capabilities_client::CapabilitiesClient;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::reapi::{
    batch_update_blobs_request, digest_function, BatchUpdateBlobsRequest, GetCapabilitiesRequest,
    GetTreeRequest,
};
use bytes::Bytes;
use tonic::Code;

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Every path under `root` with what a build cares about: file bytes and
/// mode, or symlink target.
fn describe(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let ft = entry.file_type().unwrap();
            let what = if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else {
                let data = std::fs::read(&path).unwrap();
                format!("{:o} {}", mode(&path), Digest::of(&data))
            };
            out.push((rel, what));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn snapshot_upload_and_materialise_round_trip() {
    let db = tempfile::tempdir().unwrap();
    let server = TestServer::start(Arc::new(RocksStore::open(db.path()).unwrap())).await;
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    write(root, "README.md", b"# project\n");
    write(root, "src/lib.rs", b"pub fn f() {}\n");
    write(root, "src/deep/er/mod.rs", b"// deep\n");
    write(root, "src/deep/copy.rs", b"pub fn f() {}\n");
    write(root, "empty.txt", b"");
    write(root, "scripts/build.sh", b"#!/bin/sh\necho building\n");
    std::fs::create_dir_all(root.join("empty_dir")).unwrap();
    let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    write(root, "assets/big.bin", &big);
    set_mode(&root.join("scripts/build.sh"), 0o755);
    for plain in [
        "README.md",
        "src/lib.rs",
        "src/deep/er/mod.rs",
        "src/deep/copy.rs",
    ] {
        set_mode(&root.join(plain), 0o644);
    }
    set_mode(&root.join("empty.txt"), 0o644);
    set_mode(&root.join("assets/big.bin"), 0o644);
    std::os::unix::fs::symlink("../README.md", root.join("src/readme-link")).unwrap();

    let snap = snapshot(root).unwrap();
    assert_eq!(snap.file_count, 7);
    assert_eq!(snap.symlink_count, 1);
    // README, lib.rs, mod.rs, copy.rs, empty.txt, build.sh, then big.bin.
    let small: u64 = [10u64, 14, 8, 14, 0, 24].iter().sum();
    assert_eq!(snap.total_bytes, small + big.len() as u64);

    let client = CasClient::connect(&server.url).await.unwrap();
    let first = client.upload_snapshot(&snap).await.unwrap();
    // Everything but the well-known empty blob is new.
    assert_eq!(first.uploaded_blobs, snap.blob_count() as u64 - 1);
    assert_eq!(first.skipped_blobs, 1);
    assert!(first.uploaded_bytes > big.len() as u64);

    let second = client.upload_snapshot(&snap).await.unwrap();
    assert_eq!(second.uploaded_blobs, 0);
    assert_eq!(second.uploaded_bytes, 0);
    assert_eq!(second.skipped_blobs, snap.blob_count() as u64);

    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("out");
    let stats = client.materialise(&snap.root, &dest).await.unwrap();
    assert_eq!(stats.files, 7);
    assert_eq!(stats.symlinks, 1);
    // out, src, src/deep, src/deep/er, scripts, empty_dir, assets
    assert_eq!(stats.directories, 7);
    assert_eq!(stats.bytes, snap.total_bytes);
    // lib.rs and copy.rs share a blob; the empty file is never fetched.
    assert_eq!(stats.fetched_blobs, 5);

    assert_eq!(describe(root), describe(&dest));
    assert_eq!(mode(&dest.join("scripts/build.sh")), 0o755);
    assert_eq!(mode(&dest.join("README.md")), 0o644);
    assert_eq!(std::fs::read(dest.join("assets/big.bin")).unwrap(), big);
    assert_eq!(snapshot(&dest).unwrap().root, snap.root);
    server.stop().await;
}

#[tokio::test]
async fn single_blobs_round_trip_through_batch_and_bytestream() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let client = CasClient::connect(&server.url).await.unwrap();
    let small = Bytes::from_static(b"small blob");
    let large = Bytes::from(
        (0..3 * 1024 * 1024u32)
            .map(|i| (i % 13) as u8)
            .collect::<Vec<_>>(),
    );
    let ds = client.upload_blob(small.clone()).await.unwrap();
    let dl = client.upload_blob(large.clone()).await.unwrap();
    assert_eq!(ds, Digest::of(&small));
    assert_eq!(dl, Digest::of(&large));
    assert_eq!(
        server.store.contains_many(&[ds, dl]).unwrap(),
        vec![true, true]
    );
    assert_eq!(client.read_blob(&ds).await.unwrap(), small);
    assert_eq!(client.read_blob(&dl).await.unwrap(), large);
    assert_eq!(
        client.read_blob(&Digest::empty()).await.unwrap(),
        Bytes::new()
    );
    assert!(client.find_missing(&[ds, dl]).await.unwrap().is_empty());

    let absent = Digest::of(b"absent");
    let err = client.read_blob(&absent).await.unwrap_err();
    assert!(
        matches!(err, buildfleet_cache::CacheError::NotFound(d) if d == absent),
        "{err:?}"
    );

    // Ranged ByteStream read crossing a chunk boundary.
    let mut raw = ByteStreamClient::new(server.channel().await);
    let mut stream = raw
        .read(ReadRequest {
            resource_name: read_resource_name("any-instance", &dl),
            read_offset: 1024 * 1024 - 5,
            read_limit: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        got.extend_from_slice(&msg.data);
    }
    assert_eq!(got, large[1024 * 1024 - 5..1024 * 1024 + 5].to_vec());
    server.stop().await;
}

#[tokio::test]
async fn bytestream_write_with_bad_digest_is_rejected() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut raw = ByteStreamClient::new(server.channel().await);
    let data = b"what was actually sent".to_vec();
    let claimed = Digest::of(b"what the name claims, same len");
    let claimed = Digest {
        size_bytes: data.len() as u64,
        ..claimed
    };
    assert_eq!(claimed.function, DigestFunction::Blake3);
    let request = WriteRequest {
        resource_name: write_resource_name("", uuid::Uuid::new_v4(), &claimed),
        write_offset: 0,
        finish_write: true,
        data: data.into(),
    };
    let status = raw
        .write(futures::stream::iter(vec![request]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("mismatch"),
        "{}",
        status.message()
    );
    assert_eq!(server.store.contains_many(&[claimed]).unwrap(), vec![false]);

    // The form without the digest function segment works too; REAPI reads
    // it as SHA-256.
    let good = b"good data".to_vec();
    let digest = Digest::of_with(DigestFunction::Sha256, &good);
    let name = format!(
        "inst/uploads/{}/blobs/{}/{}",
        uuid::Uuid::new_v4(),
        digest.to_hex(),
        digest.size_bytes
    );
    let response = raw
        .write(futures::stream::iter(vec![WriteRequest {
            resource_name: name,
            write_offset: 0,
            finish_write: true,
            data: good.into(),
        }]))
        .await
        .unwrap();
    assert_eq!(response.get_ref().committed_size, 9);
    assert_eq!(server.store.contains_many(&[digest]).unwrap(), vec![true]);

    // A malformed resource name is InvalidArgument, not Internal.
    let status = raw
        .write(futures::stream::iter(vec![WriteRequest {
            resource_name: "not/a/resource".into(),
            write_offset: 0,
            finish_write: true,
            data: vec![1].into(),
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn batch_update_rejects_only_the_bad_blob() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    let good_a = b"good a".to_vec();
    let good_b = b"good b".to_vec();
    let bad_claim = Digest::of(b"bad claim");
    let request = |digest: Digest, data: Vec<u8>| batch_update_blobs_request::Request {
        digest: Some(to_reapi(digest)),
        data: data.into(),
        compressor: 0,
    };
    let response = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: "whatever".into(),
            requests: vec![
                request(Digest::of(&good_a), good_a.clone()),
                request(bad_claim, b"tampered".to_vec()),
                request(Digest::of(&good_b), good_b.clone()),
            ],
            digest_function: digest_function::Value::Blake3 as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = response
        .responses
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(
        codes,
        vec![
            Code::Ok as i32,
            Code::InvalidArgument as i32,
            Code::Ok as i32
        ]
    );
    assert_eq!(
        response.responses[1].digest,
        Some(to_reapi(bad_claim)),
        "the failing entry names its digest"
    );
    assert_eq!(
        server
            .store
            .contains_many(&[Digest::of(&good_a), bad_claim, Digest::of(&good_b)])
            .unwrap(),
        vec![true, false, true]
    );
    server.stop().await;
}

#[tokio::test]
async fn get_tree_pages_and_missing_root() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a/1", b"1");
    write(src.path(), "b/2", b"2");
    write(src.path(), "b/c/3", b"3");
    let snap = snapshot(src.path()).unwrap();
    let client = CasClient::connect(&server.url).await.unwrap();
    client.upload_snapshot(&snap).await.unwrap();

    let mut cas = ContentAddressableStorageClient::new(server.channel().await);
    let mut stream = cas
        .get_tree(GetTreeRequest {
            root_digest: Some(to_reapi(snap.root)),
            page_size: 2,
            digest_function: digest_function::Value::Blake3 as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        pages.push((page.directories.len(), page.next_page_token));
    }
    // root, a, b, b/c: four directories in pages of two.
    assert_eq!(pages, vec![(2, "2".to_owned()), (2, String::new())]);

    let status = cas
        .get_tree(GetTreeRequest {
            root_digest: Some(to_reapi(Digest::of(b"no such dir"))),
            digest_function: digest_function::Value::Blake3 as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // A root that claims to be a gigabyte is refused before it is read.
    let huge = Digest {
        size_bytes: 1 << 30,
        ..Digest::of(b"a gigabyte, it says")
    };
    let status = cas
        .get_tree(GetTreeRequest {
            root_digest: Some(to_reapi(huge)),
            digest_function: digest_function::Value::Blake3 as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("is refused"), "{status:?}");
    server.stop().await;
}

#[tokio::test]
async fn health_and_capabilities_report_serving_both_functions() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "build.bazel.remote.execution.v2.ContentAddressableStorage",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(
            response.get_ref().status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }

    let mut caps = CapabilitiesClient::new(server.channel().await);
    let response = caps
        .get_capabilities(GetCapabilitiesRequest::default())
        .await
        .unwrap()
        .into_inner();
    // 2.0 clients (Bazel 2.x) are served; 2.3 is needed for BLAKE3.
    let (low, high) = (
        response.low_api_version.unwrap(),
        response.high_api_version.unwrap(),
    );
    assert_eq!((low.major, low.minor, high.major, high.minor), (2, 0, 2, 3));
    let cache = response.cache_capabilities.unwrap();
    assert_eq!(
        cache.digest_functions,
        vec![
            digest_function::Value::Sha256 as i32,
            digest_function::Value::Blake3 as i32
        ]
    );
    assert_eq!(cache.max_batch_total_size_bytes, 4 * 1024 * 1024);
    server.stop().await;
}
