//! The runner session over real gRPC: a hand-driven runner shows that a
//! malformed result ends its shard as a failure instead of leaving it running,
//! and the largest legitimate message (a 16 MiB listing) passes both ways.

use std::time::Duration;

use buildfleet_coordinator::{grpc, CoordinatorConfig};
use buildfleet_proto::v1 as pb;
use pb::runner_message::Msg;

fn msg(m: Msg) -> pb::RunnerMessage {
    pb::RunnerMessage { msg: Some(m) }
}

/// A coordinator on a loopback port, a hand-driven runner registered on
/// it (sending on `tx`, reading `inbound`, both allowing the largest
/// legitimate message), and a Pipelines client.
struct Session {
    tx: tokio::sync::mpsc::Sender<pb::RunnerMessage>,
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
    pipelines: pb::pipelines_client::PipelinesClient<tonic::transport::Channel>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), grpc::ServeError>>,
}

impl Session {
    async fn start() -> Session {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(grpc::serve(
            listener,
            CoordinatorConfig::default(),
            buildfleet_coordinator::db::Db::in_memory(),
            buildfleet_trust::Guard::open(),
            async {
                let _ = stop_rx.await;
            },
        ));
        let channel = loop {
            match tonic::transport::Endpoint::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
            {
                Ok(c) => break c,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tx.send(msg(Msg::Register(pb::Register {
            name: "hand".into(),
            labels: vec![],
            slots: 1,
            isolation: String::new(),
        })))
        .await
        .unwrap();
        let limit = buildfleet_proto::MAX_MESSAGE_BYTES;
        let mut runner = pb::runner_service_client::RunnerServiceClient::new(channel.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let inbound = runner
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Session {
            tx,
            inbound,
            pipelines: pb::pipelines_client::PipelinesClient::new(channel),
            stop,
            server,
        }
    }

    /// Submits `yaml` (on an empty input tree); the run's id.
    async fn submit(&mut self, yaml: &str) -> String {
        self.pipelines
            .submit(pb::SubmitRequest {
                pipeline_yaml: yaml.into(),
                pipeline_path: "t.yaml".into(),
                input_root: Some(pb::Digest {
                    hash: "0".repeat(64),
                    size_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .run_id
    }

    async fn next_lease(&mut self) -> pb::Lease {
        loop {
            match self.inbound.message().await.unwrap().unwrap().msg {
                Some(pb::coordinator_message::Msg::Lease(l)) => break l,
                _ => continue,
            }
        }
    }

    async fn send(&self, result: pb::ShardResult) {
        self.tx.send(msg(Msg::Result(result))).await.unwrap();
    }

    async fn stop(self) {
        drop(self.tx);
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_without_a_state_fails_the_shard_with_the_reason() {
    let mut session = Session::start().await;
    let run_id = session
        .submit("version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true' }\n")
        .await;
    let lease = session.next_lease().await;
    session
        .send(pb::ShardResult {
            lease_id: lease.lease_id,
            state: None,
            duration_ms: 1,
            ..Default::default()
        })
        .await;
    let mut status = pb::RunStatus::default();
    for _ in 0..200 {
        status = session
            .pipelines
            .get(pb::GetRequest {
                run_id: run_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if status.state.as_ref().unwrap().kind != pb::StateKind::Running as i32
            && status.state.as_ref().unwrap().kind != pb::StateKind::Pending as i32
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shard = status.steps[0].shards[0].state.clone().unwrap();
    assert_eq!(shard.kind, pb::StateKind::Failed as i32, "{shard:?}");
    assert_eq!(shard.reason, "runner reported a result without a state");
    assert_eq!(status.state.unwrap().kind, pb::StateKind::Failed as i32);
    session.stop().await;
}

/// The largest legitimate message: a listing of 16 MiB of items, reported
/// by a runner and sent back out in the shards' leases. Both directions
/// accept it (gRPC's 4 MiB default would refuse it one way only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16_mib_listing_goes_up_the_runner_stream_and_back_down_in_leases() {
    let mut session = Session::start().await;
    session
        .submit("version: 1\nstages:\n  - name: s\n    steps:\n      - name: t\n        run: 'true'\n        shards: 1\n        split: { list: ls }\n")
        .await;
    let listing = session.next_lease().await;
    assert!(listing.list_items, "the listing comes first");
    // 200,000 items of 94 bytes: 18.8 MB in one result.
    let items: Vec<String> = (0..200_000)
        .map(|i| format!("tests/test_{i:06}.py::{}", "x".repeat(70)))
        .collect();
    let bytes: usize = items.iter().map(String::len).sum();
    assert!(bytes > 16 << 20, "{bytes}");
    session
        .send(pb::ShardResult {
            lease_id: listing.lease_id,
            state: Some(pb::State {
                kind: pb::StateKind::Succeeded as i32,
                ..Default::default()
            }),
            duration_ms: 1,
            items: items.clone(),
            ..Default::default()
        })
        .await;
    let shard = session.next_lease().await;
    assert_eq!(
        shard.items.len(),
        items.len(),
        "every item reached the shard's lease"
    );
    session.stop().await;
}
