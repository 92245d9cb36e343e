//! `buildfleet.v1.CacheIndex`: exact keys, prefix fallback, newest wins,
//! completeness, and instance partitioning.

mod support;

use std::sync::Arc;

use buildfleet_cache::{snapshot, CasClient, Digest, MemoryStore, StoreLimits};
use buildfleet_proto::v1::cache_index_client::CacheIndexClient;
use buildfleet_proto::v1::{IndexEntry, IndexLookupRequest, IndexLookupResponse, IndexPutRequest};
use bytes::Bytes;
use support::{blob, TestServer};
use tonic::transport::Channel;
use tonic::Code;

fn entry(key: &str, payload: &str) -> IndexEntry {
    IndexEntry {
        key: key.into(),
        payload: payload.as_bytes().to_vec(),
        ..Default::default()
    }
}

async fn put(index: &mut CacheIndexClient<Channel>, instance: &str, entry: IndexEntry) {
    index
        .put(IndexPutRequest {
            instance_name: instance.into(),
            entry: Some(entry),
        })
        .await
        .unwrap();
}

async fn lookup(
    index: &mut CacheIndexClient<Channel>,
    instance: &str,
    exact: &str,
    prefixes: &[&str],
    require_complete: bool,
) -> IndexLookupResponse {
    index
        .lookup(IndexLookupRequest {
            instance_name: instance.into(),
            exact: exact.into(),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            require_complete,
        })
        .await
        .unwrap()
        .into_inner()
}

/// (payload, matched prefix, complete) of a hit, or `None`.
fn hit(response: &IndexLookupResponse) -> Option<(String, String, bool)> {
    response.entry.as_ref().map(|e| {
        (
            String::from_utf8(e.payload.clone()).unwrap(),
            response.matched_prefix.clone(),
            response.complete,
        )
    })
}

fn h(payload: &str, prefix: &str, complete: bool) -> Option<(String, String, bool)> {
    Some((payload.into(), prefix.into(), complete))
}

#[tokio::test]
async fn exact_then_prefixes_in_order_newest_first() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut index = CacheIndexClient::new(server.channel().await);
    put(&mut index, "", entry("deps/main/aaa", "main-old")).await;
    put(&mut index, "", entry("deps/feature/bbb", "feature")).await;
    put(&mut index, "", entry("deps/main/ccc", "main-new")).await;

    // Exact wins over any prefix, and reports matched_prefix "".
    let r = lookup(&mut index, "", "deps/main/aaa", &["deps/"], false).await;
    assert_eq!(hit(&r), h("main-old", "", true));
    let stamp = r.entry.unwrap().created_unix_ms;
    assert!(stamp > 0, "server stamps creation time");

    // No exact match: the first prefix that matches, newest entry within it.
    let r = lookup(
        &mut index,
        "",
        "deps/main/zzz",
        &["deps/main/", "deps/"],
        false,
    )
    .await;
    assert_eq!(hit(&r), h("main-new", "deps/main/", true));
    let r = lookup(
        &mut index,
        "",
        "",
        &["deps/nope/", "deps/feature/", "deps/"],
        false,
    )
    .await;
    assert_eq!(hit(&r), h("feature", "deps/feature/", true));
    let r = lookup(&mut index, "", "", &["deps/"], false).await;
    assert_eq!(
        hit(&r),
        h("main-new", "deps/", true),
        "newest across the prefix"
    );

    // Re-putting an old key makes it the newest.
    put(&mut index, "", entry("deps/main/aaa", "main-again")).await;
    let r = lookup(&mut index, "", "", &["deps/main/"], false).await;
    assert_eq!(hit(&r), h("main-again", "deps/main/", true));
    assert!(r.entry.unwrap().created_unix_ms > stamp);

    // Nothing matches: no entry.
    let r = lookup(&mut index, "", "x", &["y"], false).await;
    assert_eq!(hit(&r), None);
    assert!(!r.complete);
    server.stop().await;
}

#[tokio::test]
async fn incomplete_entries_are_passed_over_when_completeness_is_required() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let client = CasClient::connect(server.url()).await.unwrap();
    let mut index = CacheIndexClient::new(server.channel().await);

    // A tree uploaded in full, and one whose file blob never was.
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/file"), blob(1, 100)).unwrap();
    let full = snapshot(src.path()).unwrap();
    client.upload_snapshot(&full).await.unwrap();
    std::fs::write(src.path().join("sub/file"), blob(2, 100)).unwrap();
    let partial = snapshot(src.path()).unwrap();
    for (digest, _) in partial.blobs() {
        if digest.size_bytes != 100 {
            upload_directory(&client, &partial, digest).await;
        }
    }
    let present_blob = client
        .upload_blob(Bytes::from_static(b"manifest"))
        .await
        .unwrap();
    let absent_blob = Digest::of(b"never uploaded");

    let with = |key: &str, payload: &str, blobs: &[Digest], trees: &[Digest]| IndexEntry {
        blobs: blobs.iter().map(|d| (*d).into()).collect(),
        trees: trees.iter().map(|d| (*d).into()).collect(),
        ..entry(key, payload)
    };
    put(
        &mut index,
        "",
        with("k/1", "complete", &[present_blob], &[full.root]),
    )
    .await;
    put(
        &mut index,
        "",
        with("k/2", "missing-blob", &[absent_blob], &[]),
    )
    .await;
    put(
        &mut index,
        "",
        with("k/3", "missing-tree-file", &[], &[partial.root]),
    )
    .await;

    // Without the requirement, the newest is served and flagged incomplete.
    let r = lookup(&mut index, "", "", &["k/"], false).await;
    assert_eq!(hit(&r), h("missing-tree-file", "k/", false));
    // With it, both incomplete entries are passed over.
    let r = lookup(&mut index, "", "", &["k/"], true).await;
    assert_eq!(hit(&r), h("complete", "k/", true));
    // An incomplete exact match falls through to the prefixes.
    let r = lookup(&mut index, "", "k/2", &["k/"], true).await;
    assert_eq!(hit(&r), h("complete", "k/", true));
    let r = lookup(&mut index, "", "k/2", &[], false).await;
    assert_eq!(hit(&r), h("missing-blob", "", false));
    // A missing root directory is incomplete too.
    put(
        &mut index,
        "",
        with("k/4", "no-root", &[], &[Digest::of(b"no such dir")]),
    )
    .await;
    let r = lookup(&mut index, "", "k/4", &["k/"], true).await;
    assert_eq!(hit(&r), h("complete", "k/", true));
    server.stop().await;
}

/// Uploads one directory blob of a snapshot (not its files).
async fn upload_directory(client: &CasClient, snap: &buildfleet_cache::Snapshot, digest: &Digest) {
    let Some(buildfleet_cache::BlobSource::Inline(bytes)) = snap.source(digest) else {
        panic!("{digest} is a file");
    };
    client.upload_blob(bytes.clone()).await.unwrap();
}

#[tokio::test]
async fn served_entries_keep_their_content_from_eviction() {
    let server = TestServer::start(Arc::new(MemoryStore::with_limits(StoreLimits::max_bytes(
        1000,
    ))))
    .await;
    let client = CasClient::connect(server.url()).await.unwrap();
    let mut index = CacheIndexClient::new(server.channel().await);
    let kept = client.upload_blob(Bytes::from(blob(1, 300))).await.unwrap();
    let other = client.upload_blob(Bytes::from(blob(2, 300))).await.unwrap();
    put(
        &mut index,
        "",
        IndexEntry {
            blobs: vec![kept.into()],
            ..entry("key", "v")
        },
    )
    .await;
    client.upload_blob(Bytes::from(blob(3, 300))).await.unwrap();
    assert!(lookup(&mut index, "", "key", &[], true).await.complete);
    client.upload_blob(Bytes::from(blob(4, 300))).await.unwrap();
    assert_eq!(
        client.find_missing(&[kept, other]).await.unwrap(),
        vec![other]
    );
    server.stop().await;
}

#[tokio::test]
async fn instances_are_partitioned_and_empty_keys_rejected() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut index = CacheIndexClient::new(server.channel().await);
    put(&mut index, "team-a", entry("shared/key", "a")).await;
    put(&mut index, "team-b", entry("shared/key", "b")).await;
    put(&mut index, "team-a/sub", entry("shared/other", "a-sub")).await;

    let r = lookup(&mut index, "team-a", "shared/key", &[], false).await;
    assert_eq!(hit(&r), h("a", "", true));
    let r = lookup(&mut index, "team-b", "shared/key", &[], false).await;
    assert_eq!(hit(&r), h("b", "", true));
    // A prefix scan stays inside its instance, even a prefix of another name.
    let r = lookup(&mut index, "team-a", "", &["shared/o", "shared/"], false).await;
    assert_eq!(
        hit(&r),
        h("a", "shared/", true),
        "only team-a's own entry matches \"shared/\""
    );
    let r = lookup(&mut index, "nobody", "", &["shared/"], false).await;
    assert_eq!(hit(&r), None);

    // Keys are arbitrary UTF-8.
    put(&mut index, "", entry("ключ/🔑", "unicode")).await;
    let r = lookup(&mut index, "", "", &["ключ/"], false).await;
    assert_eq!(hit(&r), h("unicode", "ключ/", true));

    let status = index
        .put(IndexPutRequest {
            instance_name: String::new(),
            entry: Some(entry("", "no key")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = index
        .put(IndexPutRequest {
            instance_name: String::new(),
            entry: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn a_pinned_directory_keeps_every_blob_under_it_from_eviction() {
    let server = TestServer::start(Arc::new(MemoryStore::with_limits(StoreLimits::max_bytes(
        5000,
    ))))
    .await;
    let client = CasClient::connect(server.url()).await.unwrap();
    let tree = |seed: u8| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.bin"), blob(seed, 300)).unwrap();
        std::fs::write(dir.path().join("sub/b.bin"), blob(seed + 1, 300)).unwrap();
        dir
    };
    let (kept_dir, lost_dir) = (tree(10), tree(20));
    let kept = snapshot(kept_dir.path()).unwrap();
    let lost = snapshot(lost_dir.path()).unwrap();
    client.upload_snapshot(&kept).await.unwrap();
    client.upload_snapshot(&lost).await.unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let (pinned, missing) = client.pin(&[], &[kept.root], later).await.unwrap();
    assert_eq!((pinned, missing), (4, 0), "root, sub and both files");
    let nowhere = Digest::of(b"never uploaded");
    assert_eq!(client.pin(&[nowhere], &[], later).await.unwrap().1, 1);
    // Far more than the limit goes through the cache.
    for seed in 0..30 {
        client
            .upload_blob(Bytes::from(blob(100 + seed, 300)))
            .await
            .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    client
        .materialise(&kept.root, &out.path().join("kept"))
        .await
        .expect("every blob of the pinned tree is still there");
    assert_eq!(
        std::fs::read(out.path().join("kept/sub/b.bin")).unwrap(),
        blob(11, 300)
    );
    assert!(
        client
            .materialise(&lost.root, &out.path().join("lost"))
            .await
            .is_err(),
        "the unpinned tree was evicted"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_empty_prefix_is_refused_rather_than_scanning_everything() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let mut index = CacheIndexClient::new(server.channel().await);
    put(&mut index, "", entry("deps/a", "a")).await;
    let e = index
        .lookup(IndexLookupRequest {
            prefixes: vec![String::new()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("must not be empty"), "{}", e.message());
    server.stop().await;
}
