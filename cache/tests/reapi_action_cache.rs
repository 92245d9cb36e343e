//! The REAPI ActionCache: round trips, partitioning by instance, and never
//! serving an entry whose outputs are gone.

mod support;

use buildfleet_proto::convert::to_reapi;
use std::sync::Arc;

use buildfleet_cache::{
    precondition_violations, read_resource_name, Digest, DigestFunction, MemoryStore, RocksStore,
    StoreLimits,
};
use buildfleet_proto::reapi::action_cache_client::ActionCacheClient;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::reapi::{
    batch_update_blobs_request, digest_function, ActionResult, BatchUpdateBlobsRequest, Directory,
    DirectoryNode, FileNode, FindMissingBlobsRequest, GetActionResultRequest, OutputDirectory,
    OutputFile, OutputSymlink, Tree, UpdateActionResultRequest,
};
use prost::Message;
use support::{blob, TestServer};
use tonic::transport::Channel;
use tonic::Code;

const SHA256: i32 = digest_function::Value::Sha256 as i32;
const BLAKE3: i32 = digest_function::Value::Blake3 as i32;

fn wire_function(function: DigestFunction) -> i32 {
    match function {
        DigestFunction::Sha256 => SHA256,
        DigestFunction::Blake3 => BLAKE3,
    }
}

async fn upload(
    cas: &mut ContentAddressableStorageClient<Channel>,
    function: DigestFunction,
    blobs: &[&[u8]],
) -> Vec<Digest> {
    let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of_with(function, b)).collect();
    let response = cas
        .batch_update_blobs(BatchUpdateBlobsRequest {
            instance_name: String::new(),
            requests: blobs
                .iter()
                .zip(&digests)
                .map(|(b, d)| batch_update_blobs_request::Request {
                    digest: Some(to_reapi(*d)),
                    data: b.to_vec().into(),
                    compressor: 0,
                })
                .collect(),
            digest_function: wire_function(function),
        })
        .await
        .unwrap()
        .into_inner();
    for r in response.responses {
        assert_eq!(r.status.unwrap().code, 0);
    }
    digests
}

async fn get(
    ac: &mut ActionCacheClient<Channel>,
    instance: &str,
    function: DigestFunction,
    action: Digest,
) -> Result<ActionResult, tonic::Status> {
    ac.get_action_result(GetActionResultRequest {
        instance_name: instance.into(),
        action_digest: Some(to_reapi(action)),
        digest_function: wire_function(function),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn update(
    ac: &mut ActionCacheClient<Channel>,
    instance: &str,
    function: DigestFunction,
    action: Digest,
    result: ActionResult,
) -> Result<ActionResult, tonic::Status> {
    ac.update_action_result(UpdateActionResultRequest {
        instance_name: instance.into(),
        action_digest: Some(to_reapi(action)),
        action_result: Some(result),
        digest_function: wire_function(function),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

fn output_file(path: &str, digest: Digest) -> OutputFile {
    OutputFile {
        path: path.into(),
        digest: Some(to_reapi(digest)),
        is_executable: false,
        ..Default::default()
    }
}

/// A result with an output file, stdout, an output directory (as a Tree
/// holding one more file) and a symlink, all under `function`.
async fn full_result(
    cas: &mut ContentAddressableStorageClient<Channel>,
    function: DigestFunction,
) -> (ActionResult, Vec<Digest>) {
    let blobs = upload(cas, function, &[b"binary", b"stdout text", b"nested file"]).await;
    let child = Directory {
        files: vec![FileNode {
            name: "nested".into(),
            digest: Some(to_reapi(blobs[2])),
            ..Default::default()
        }],
        ..Default::default()
    };
    let tree = Tree {
        root: Some(Directory {
            directories: vec![DirectoryNode {
                name: "sub".into(),
                digest: Some(to_reapi(Digest::of_with(function, &child.encode_to_vec()))),
            }],
            ..Default::default()
        }),
        children: vec![child],
    };
    let tree_digest = upload(cas, function, &[&tree.encode_to_vec()]).await[0];
    let result = ActionResult {
        output_files: vec![output_file("out/bin", blobs[0])],
        output_symlinks: vec![OutputSymlink {
            path: "out/link".into(),
            target: "bin".into(),
            ..Default::default()
        }],
        output_directories: vec![OutputDirectory {
            path: "out/dir".into(),
            tree_digest: Some(to_reapi(tree_digest)),
            ..Default::default()
        }],
        exit_code: 0,
        stdout_digest: Some(to_reapi(blobs[1])),
        ..Default::default()
    };
    (result, vec![blobs[0], blobs[1], blobs[2], tree_digest])
}

#[tokio::test]
async fn action_results_round_trip_per_instance_and_function() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    for function in DigestFunction::ALL {
        let (result, _) = full_result(&mut cas, function).await;
        let action = Digest::of_with(function, b"the action");
        let stored = update(&mut ac, "team-a", function, action, result.clone())
            .await
            .unwrap();
        assert_eq!(stored, result);
        assert_eq!(
            get(&mut ac, "team-a", function, action).await.unwrap(),
            result
        );

        // Partitioned by instance: team-b has no such entry.
        let status = get(&mut ac, "team-b", function, action).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{function}");
    }
    // One action hash under the two functions is two entries.
    let b3_action = Digest::of(b"the action");
    let as_sha = Digest {
        function: DigestFunction::Sha256,
        ..b3_action
    };
    let status = get(&mut ac, "team-a", DigestFunction::Sha256, as_sha)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn update_with_missing_blobs_fails_precondition_naming_them() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    let present = upload(&mut cas, DigestFunction::Sha256, &[b"here"]).await[0];
    let absent = Digest::of_with(DigestFunction::Sha256, b"never uploaded");
    let absent_tree = Digest::of_with(DigestFunction::Sha256, b"no tree");
    let result = ActionResult {
        output_files: vec![output_file("a", present), output_file("b", absent)],
        output_directories: vec![OutputDirectory {
            path: "d".into(),
            tree_digest: Some(to_reapi(absent_tree)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let action = Digest::of_with(DigestFunction::Sha256, b"action");
    let status = update(&mut ac, "", DigestFunction::Sha256, action, result)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let mut subjects: Vec<String> = precondition_violations(&status)
        .into_iter()
        .map(|v| {
            assert_eq!(v.r#type, "MISSING");
            v.subject
        })
        .collect();
    subjects.sort();
    let mut expected = vec![
        read_resource_name("", &absent),
        read_resource_name("", &absent_tree),
    ];
    expected.sort();
    assert_eq!(subjects, expected);
    // Nothing was stored.
    let status = get(&mut ac, "", DigestFunction::Sha256, action)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn entry_whose_output_was_evicted_is_never_served() {
    let db = tempfile::tempdir().unwrap();
    let store = RocksStore::open_with_limits(db.path(), StoreLimits::max_bytes(1000)).unwrap();
    let server = TestServer::start(Arc::new(store)).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);

    let output = blob(1, 300);
    let out = upload(&mut cas, DigestFunction::Blake3, &[&output]).await[0];
    let result = ActionResult {
        output_files: vec![output_file("out", out)],
        ..Default::default()
    };
    let action = Digest::of(b"step shard 0");
    update(
        &mut ac,
        "runners",
        DigestFunction::Blake3,
        action,
        result.clone(),
    )
    .await
    .unwrap();
    assert_eq!(
        get(&mut ac, "runners", DigestFunction::Blake3, action)
            .await
            .unwrap(),
        result
    );

    // Four more 300-byte blobs push the 1000-byte store over its limit; the
    // output, least recently used, is evicted.
    for seed in 2..6 {
        upload(&mut cas, DigestFunction::Blake3, &[&blob(seed, 300)]).await;
    }
    let status = get(&mut ac, "runners", DigestFunction::Blake3, action)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains(&out.to_string()),
        "{}",
        status.message()
    );
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: vec![to_reapi(out)],
            digest_function: BLAKE3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        missing.missing_blob_digests,
        vec![to_reapi(out)],
        "really evicted"
    );
    assert!(server.store.total_bytes() <= 1000);

    // Re-uploading the output does not resurrect the dropped entry: the
    // client re-runs and updates it.
    upload(&mut cas, DigestFunction::Blake3, &[&output]).await;
    let status = get(&mut ac, "runners", DigestFunction::Blake3, action)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn serving_an_entry_keeps_its_blobs_from_eviction() {
    let server = TestServer::start(Arc::new(MemoryStore::with_limits(StoreLimits::max_bytes(
        1000,
    ))))
    .await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    let kept = upload(&mut cas, DigestFunction::Blake3, &[&blob(1, 300)]).await[0];
    let other = upload(&mut cas, DigestFunction::Blake3, &[&blob(2, 300)]).await[0];
    let result = ActionResult {
        output_files: vec![output_file("kept", kept)],
        ..Default::default()
    };
    let action = Digest::of(b"a");
    update(&mut ac, "", DigestFunction::Blake3, action, result)
        .await
        .unwrap();
    // `other` was uploaded after `kept`, but serving the entry uses `kept`.
    upload(&mut cas, DigestFunction::Blake3, &[&blob(3, 300)]).await;
    get(&mut ac, "", DigestFunction::Blake3, action)
        .await
        .unwrap();
    upload(&mut cas, DigestFunction::Blake3, &[&blob(4, 300)]).await;
    let missing = cas
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: vec![to_reapi(kept), to_reapi(other)],
            digest_function: BLAKE3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(missing.missing_blob_digests, vec![to_reapi(other)]);
    server.stop().await;
}

#[tokio::test]
async fn missing_tree_file_makes_the_entry_not_found() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let channel = server.channel().await;
    let mut cas = ContentAddressableStorageClient::new(channel.clone());
    let mut ac = ActionCacheClient::new(channel);
    let (result, _) = full_result(&mut cas, DigestFunction::Sha256).await;
    let action = Digest::of_with(DigestFunction::Sha256, b"tree action");
    update(&mut ac, "", DigestFunction::Sha256, action, result.clone())
        .await
        .unwrap();
    assert_eq!(
        get(&mut ac, "", DigestFunction::Sha256, action)
            .await
            .unwrap(),
        result
    );

    // A result naming a tree whose nested file is absent is refused.
    let absent = Digest::of_with(DigestFunction::Sha256, b"gone nested");
    let tree = Tree {
        root: Some(Directory {
            files: vec![FileNode {
                name: "f".into(),
                digest: Some(to_reapi(absent)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        children: Vec::new(),
    };
    let tree_digest = upload(&mut cas, DigestFunction::Sha256, &[&tree.encode_to_vec()]).await[0];
    let broken = ActionResult {
        output_directories: vec![OutputDirectory {
            path: "d".into(),
            tree_digest: Some(to_reapi(tree_digest)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let status = update(
        &mut ac,
        "",
        DigestFunction::Sha256,
        Digest::of_with(DigestFunction::Sha256, b"x"),
        broken,
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        precondition_violations(&status)[0].subject,
        read_resource_name("", &absent)
    );
    server.stop().await;
}
