//! The cache's durability choice, across a `kill -9`: blobs are written
//! without RocksDB's write-ahead log (content-addressed, they can be
//! uploaded again), action results with it. So a crash may lose recent
//! blobs — and the cache then says they are missing — but never an action
//! result, and never serves a result whose blobs it lost.

mod procs;

use buildfleet_cache::{Digest, DigestFunction};
use buildfleet_proto::convert::to_reapi;
use buildfleet_proto::reapi::action_cache_client::ActionCacheClient;
use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use buildfleet_proto::reapi::{
    batch_update_blobs_request, digest_function, ActionResult, BatchUpdateBlobsRequest,
    FindMissingBlobsRequest, GetActionResultRequest, OutputFile, UpdateActionResultRequest,
};
use tonic::transport::Channel;

const BLAKE3: i32 = digest_function::Value::Blake3 as i32;

async fn channel(url: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn upload(channel: Channel, blobs: &[Vec<u8>]) {
    let response = ContentAddressableStorageClient::new(channel)
        .batch_update_blobs(BatchUpdateBlobsRequest {
            requests: blobs
                .iter()
                .map(|b| batch_update_blobs_request::Request {
                    digest: Some(to_reapi(Digest::of(b))),
                    data: b.clone().into(),
                    compressor: 0,
                })
                .collect(),
            digest_function: BLAKE3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(response
        .responses
        .iter()
        .all(|r| r.status.as_ref().unwrap().code == 0));
}

async fn missing(channel: Channel, digests: &[Digest]) -> usize {
    ContentAddressableStorageClient::new(channel)
        .find_missing_blobs(FindMissingBlobsRequest {
            blob_digests: digests.iter().map(|d| to_reapi(*d)).collect(),
            digest_function: BLAKE3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .missing_blob_digests
        .len()
}

async fn result(channel: Channel, action: Digest) -> Result<ActionResult, tonic::Status> {
    ActionCacheClient::new(channel)
        .get_action_result(GetActionResultRequest {
            action_digest: Some(to_reapi(action)),
            digest_function: BLAKE3,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[test]
fn after_kill_9_lost_blobs_are_reported_missing_and_their_result_is_kept_but_not_served() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blobs: Vec<Vec<u8>> = (0..200u32)
        .map(|i| format!("output file {i} ").repeat(100).into_bytes())
        .collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
    // Two actions with the same outputs: asking for one while its outputs
    // are missing deletes it (it cannot be served); the other is asked for
    // after they are back.
    let asked_early = Digest::of_with(DigestFunction::Blake3, b"asked while blobs are missing");
    let asked_later = Digest::of_with(DigestFunction::Blake3, b"asked once they are back");
    let stored = ActionResult {
        output_files: digests
            .iter()
            .enumerate()
            .map(|(i, d)| OutputFile {
                path: format!("out/{i}"),
                digest: Some(to_reapi(*d)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };

    let (mut cache, url) = procs::server(&["cache", "--data", d]);
    rt.block_on(async {
        upload(channel(&url).await, &blobs).await;
        for action in [asked_early, asked_later] {
            ActionCacheClient::new(channel(&url).await)
                .update_action_result(UpdateActionResultRequest {
                    action_digest: Some(to_reapi(action)),
                    action_result: Some(stored.clone()),
                    digest_function: BLAKE3,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert!(result(channel(&url).await, action).await.is_ok());
        }
    });
    cache.0.kill().unwrap(); // SIGKILL: no flush, no goodbye
    cache.0.wait().unwrap();

    let (cache, url) = procs::server(&["cache", "--data", d]);
    rt.block_on(async {
        let lost = missing(channel(&url).await, &digests).await;
        assert_eq!(
            lost,
            digests.len(),
            "blobs written since the last flush were lost with the process, and the cache says so"
        );
        let status = result(channel(&url).await, asked_early)
            .await
            .expect_err("a result whose outputs are gone is not served");
        assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

        upload(channel(&url).await, &blobs).await;
        let served = result(channel(&url).await, asked_later)
            .await
            .expect("the result itself survived the crash");
        assert_eq!(served.output_files, stored.output_files);
    });

    // A clean stop (SIGTERM, as Kubernetes sends) flushes: nothing is lost.
    let mut cache = cache;
    cache.terminate();
    cache.wait_exit(
        std::time::Duration::from_secs(30),
        "the cache after SIGTERM",
    );
    let (_cache, url) = procs::server(&["cache", "--data", d]);
    rt.block_on(async {
        assert_eq!(
            missing(channel(&url).await, &digests).await,
            0,
            "every blob survived a clean stop"
        );
    });
}
