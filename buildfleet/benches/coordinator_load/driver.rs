//! One coordinator under a fleet of simulated runners: each runner is a
//! real gRPC session on loopback (registered, heartbeating, answering
//! every lease at once), the coordinator a real `buildfleet coordinator`
//! process with its RocksDB. Shared by the on-demand benchmark and the
//! bounded test in CI.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildfleet_proto::v1 as pb;
use parking_lot::Mutex;
use pb::runner_message::Msg;
use tokio::sync::mpsc;

/// What one load run measured.
#[derive(Debug)]
pub struct LoadReport {
    pub runners: usize,
    pub shards: usize,
    /// From submission to the last run's end.
    pub wall: Duration,
    pub leases_per_second: f64,
    /// From a runner's result to its next lease, while work was queued.
    pub lease_p50: Duration,
    pub lease_p99: Duration,
    pub lease_max: Duration,
    /// Shards leased more than once, and lease ids seen twice: both must
    /// be 0 (no runner is lost here, so nothing is leased again).
    pub duplicate_leases: usize,
    /// Shards not `succeeded` in the runs' final status: must be 0.
    pub not_succeeded: usize,
    /// The coordinator process's peak resident memory.
    pub peak_rss_mb: f64,
}

/// The coordinator as its own process (so its memory is its own).
pub struct Coordinator {
    child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Coordinator {
    pub fn start(bin: &std::path::Path) -> Coordinator {
        let data = tempfile::tempdir().expect("a data directory");
        let mut child = Command::new(bin)
            .args([
                "coordinator",
                "--no-auth",
                "--listen",
                "127.0.0.1:0",
                "--print-addr",
            ])
            .arg("--data")
            .arg(data.path())
            .env_remove("BUILDFLEET_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the buildfleet binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the coordinator prints its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Coordinator {
            child,
            url: format!("http://{addr}"),
            _data: data,
        }
    }

    /// VmHWM of the process, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tally {
    /// Leases per (run, step, shard).
    per_shard: HashMap<(String, String, u32), u32>,
    lease_ids: HashMap<String, u32>,
    latencies: Vec<Duration>,
}

/// Runs `runs` pipelines of one step with `shards_per_run` shards on
/// `runners` simulated runners sharing `connections` HTTP/2 connections.
pub async fn drive(
    url: &str,
    runners: usize,
    runs: usize,
    shards_per_run: usize,
    connections: usize,
) -> (LoadReport, Duration) {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
            .expect("a URL")
            .tcp_nodelay(true);
        channels.push(endpoint.connect().await.expect("the coordinator accepts"));
    }
    let total = runs * shards_per_run;
    let results = Arc::new(AtomicUsize::new(0));
    let registered = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally {
        per_shard: HashMap::new(),
        lease_ids: HashMap::new(),
        latencies: Vec::with_capacity(total),
    }));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(runners);
    for i in 0..runners {
        let channel = channels[i % connections].clone();
        let (results, registered, tally) = (results.clone(), registered.clone(), tally.clone());
        let mut done = done_rx.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel::<pb::RunnerMessage>(8);
            let send = |m: Msg| pb::RunnerMessage { msg: Some(m) };
            tx.send(send(Msg::Register(pb::Register {
                name: format!("load-{i}"),
                labels: vec![],
                slots: 1,
                isolation: String::new(),
            })))
            .await
            .expect("register");
            let mut inbound = pb::runner_service_client::RunnerServiceClient::new(channel)
                .session(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("a runner session")
                .into_inner();
            let mut beat = tokio::time::interval(Duration::from_secs(1));
            let mut sent_at: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = done.changed() => break,
                    _ = beat.tick() => {
                        let _ = tx.send(send(Msg::Heartbeat(pb::Heartbeat::default()))).await;
                    }
                    msg = inbound.message() => {
                        let Ok(Some(msg)) = msg else { break };
                        match msg.msg {
                            Some(pb::coordinator_message::Msg::Registered(_)) => {
                                registered.fetch_add(1, Ordering::SeqCst);
                            }
                            Some(pb::coordinator_message::Msg::Lease(lease)) => {
                                let now = Instant::now();
                                {
                                    let mut t = tally.lock();
                                    if let Some(at) = sent_at.take() {
                                        t.latencies.push(now - at);
                                    }
                                    *t.per_shard
                                        .entry((lease.run_id.clone(), lease.step.clone(), lease.shard_index))
                                        .or_default() += 1;
                                    *t.lease_ids.entry(lease.lease_id.clone()).or_default() += 1;
                                }
                                let result = pb::ShardResult {
                                    lease_id: lease.lease_id,
                                    state: Some(pb::State {
                                        kind: pb::StateKind::Succeeded as i32,
                                        ..Default::default()
                                    }),
                                    duration_ms: 1,
                                    ..Default::default()
                                };
                                if tx.send(send(Msg::Result(result))).await.is_err() {
                                    break;
                                }
                                sent_at = Some(Instant::now());
                                results.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    while registered.load(Ordering::SeqCst) < runners {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {runners} runners registered",
            registered.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let registration = started.elapsed();
    // Sessions wait between a result and the next lease from here on.
    let mut pipelines = pb::pipelines_client::PipelinesClient::new(channels[0].clone())
        .max_decoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES);
    let yaml = format!(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - {{ name: work, shards: {shards_per_run}, run: 'true' }}\n"
    );
    let submitted = Instant::now();
    let mut ids = Vec::with_capacity(runs);
    for r in 0..runs {
        let id = pipelines
            .submit(pb::SubmitRequest {
                pipeline_yaml: yaml.clone(),
                pipeline_path: format!("load-{r}.yaml"),
                input_root: Some(pb::Digest {
                    hash: "0".repeat(64),
                    size_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .expect("submit")
            .into_inner()
            .run_id;
        ids.push(id);
    }
    let mut not_succeeded = 0;
    for id in &ids {
        let status = loop {
            let status = pipelines
                .get(pb::GetRequest { run_id: id.clone() })
                .await
                .expect("get")
                .into_inner();
            let kind = status.state.as_ref().map_or(0, |s| s.kind);
            if kind != pb::StateKind::Running as i32
                && kind != pb::StateKind::Pending as i32
                && kind != pb::StateKind::Waiting as i32
            {
                break status;
            }
            assert!(
                submitted.elapsed() < Duration::from_secs(900),
                "runs not finished after 15 minutes ({} results)",
                results.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        not_succeeded += status
            .steps
            .iter()
            .flat_map(|s| &s.shards)
            .filter(|sh| sh.state.as_ref().map(|s| s.kind) != Some(pb::StateKind::Succeeded as i32))
            .count();
        let shards: usize = status.steps.iter().map(|s| s.shards.len()).sum();
        not_succeeded += shards_per_run.saturating_sub(shards);
    }
    let wall = submitted.elapsed();
    let _ = done_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let t = tally.lock();
    let mut latencies = t.latencies.clone();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let duplicate_leases = t.per_shard.values().filter(|&&n| n > 1).count()
        + t.lease_ids.values().filter(|&&n| n > 1).count();
    let report = LoadReport {
        runners,
        shards: total,
        wall,
        leases_per_second: t.per_shard.values().map(|&n| n as f64).sum::<f64>()
            / wall.as_secs_f64(),
        lease_p50: at(0.50),
        lease_p99: at(0.99),
        lease_max: latencies.last().copied().unwrap_or_default(),
        duplicate_leases,
        not_succeeded,
        peak_rss_mb: 0.0,
    };
    (report, registration)
}
