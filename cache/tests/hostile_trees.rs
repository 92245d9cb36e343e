//! Trees written to hurt a runner that materialises them: a DAG of a few
//! tiny directory blobs that describes 2^30 directories, and relative
//! symlinks that climb out of the tree. Each is refused with a clear error, in bounded memory (measured) and
//! before anything is written where it should not be.

mod support;

use std::sync::Arc;

use buildfleet_cache::{CasClient, MemoryStore};
use buildfleet_proto::convert::to_reapi;
use buildfleet_proto::reapi::{Directory, DirectoryNode, FileNode, SymlinkNode};
use bytes::Bytes;
use prost::Message;
use support::TestServer;

/// This process's peak resident memory (VmHWM), in bytes: nextest runs
/// each test in a process of its own, so what one test allocates shows.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    let kib: u64 = kib
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    kib * 1024
}

async fn put_dir(client: &CasClient, dir: &Directory) -> buildfleet_cache::Digest {
    client
        .upload_blob(Bytes::from(dir.encode_to_vec()))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dag_describing_a_billion_directories_is_refused_before_anything_is_made() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let client = CasClient::connect(server.url()).await.unwrap();
    let file = client.upload_blob(Bytes::from_static(b"x")).await.unwrap();
    let mut below = put_dir(
        &client,
        &Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: Some(to_reapi(file)),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .await;
    // Each level names the one below twice: 31 blobs, 2^30 leaves.
    for _ in 0..30 {
        let node = |name: &str| DirectoryNode {
            name: name.into(),
            digest: Some(to_reapi(below)),
        };
        below = put_dir(
            &client,
            &Directory {
                directories: vec![node("a"), node("b")],
                ..Default::default()
            },
        )
        .await;
    }
    let out = tempfile::tempdir().unwrap();
    let before = peak_rss();
    let err = client
        .materialise(&below, &out.path().join("bomb"))
        .await
        .unwrap_err();
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 64 << 20,
        "refused before expanding: peak memory grew {} MiB",
        grew >> 20
    );
    assert!(
        err.to_string()
            .contains("the tree describes more than 2000000 files and directories"),
        "{err}"
    );
    assert!(!out.path().join("bomb").exists(), "nothing was written");
    server.stop().await;
}

#[tokio::test]
async fn symlinks_that_leave_the_tree_are_refused() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let client = CasClient::connect(server.url()).await.unwrap();
    for target in ["../../outside", "../a/../../x"] {
        let inner = put_dir(
            &client,
            &Directory {
                symlinks: vec![SymlinkNode {
                    name: "link".into(),
                    target: target.into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await;
        let root = put_dir(
            &client,
            &Directory {
                directories: vec![DirectoryNode {
                    name: "sub".into(),
                    digest: Some(to_reapi(inner)),
                }],
                ..Default::default()
            },
        )
        .await;
        let out = tempfile::tempdir().unwrap();
        let err = client
            .materialise(&root, &out.path().join("t"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("points outside the tree"),
            "{target}: {err}"
        );
        assert!(!out.path().join("t/sub/link").exists());
    }
    server.stop().await;
}
