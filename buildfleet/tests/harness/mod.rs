//! Test harness: a real embedded fleet (RocksDB cache, coordinator, runners)
//! on 127.0.0.1 with OS-assigned ports, plus helpers to submit and watch.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use buildfleet::fleet::{EmbeddedFleet, FleetOptions};
use buildfleet_cache::CasClient;
use buildfleet_coordinator::scheduler::SchedulerConfig;
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_proto::v1 as pb;
use buildfleet_runner::step_users::StepUsers;
use futures::StreamExt;
use tempfile::TempDir;

pub struct TestFleet {
    pub fleet: EmbeddedFleet,
    pub data: TempDir,
    /// The dashboard's address, when it was asked for.
    pub dashboard: Option<String>,
}

pub async fn start(runners: u32) -> TestFleet {
    start_with(runners, Duration::from_secs(30)).await
}

pub async fn start_with(runners: u32, label_wait: Duration) -> TestFleet {
    start_configured(runners, |c| c.scheduler.label_wait = label_wait).await
}

/// A fleet whose coordinator config `configure` adjusts (secrets, …).
pub async fn start_configured(
    runners: u32,
    configure: impl FnOnce(&mut CoordinatorConfig),
) -> TestFleet {
    start_fleet(runners, configure, StepUsers::Runner, false)
        .await
        .expect("fleet starts")
}

/// [`start_configured`], with the coordinator's dashboard on a port of its own.
pub async fn start_with_dashboard(
    runners: u32,
    configure: impl FnOnce(&mut CoordinatorConfig),
) -> TestFleet {
    start_fleet(runners, configure, StepUsers::Runner, true)
        .await
        .expect("fleet starts")
}

/// A fleet whose steps run as `step_users` (its data directory open to
/// them: traversable, not listable), or the error that stopped it.
pub async fn start_as(runners: u32, step_users: StepUsers) -> anyhow::Result<TestFleet> {
    start_fleet(runners, |_| {}, step_users, false).await
}

async fn start_fleet(
    runners: u32,
    configure: impl FnOnce(&mut CoordinatorConfig),
    step_users: StepUsers,
    with_dashboard: bool,
) -> anyhow::Result<TestFleet> {
    let data = tempfile::tempdir().unwrap();
    if step_users != StepUsers::Runner {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let mut coordinator = CoordinatorConfig {
        scheduler: SchedulerConfig {
            label_wait: Duration::from_secs(30),
            ..SchedulerConfig::default()
        },
        ..CoordinatorConfig::default()
    };
    configure(&mut coordinator);
    let (dashboard, dashboard_addr) = match with_dashboard {
        true => {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = l.local_addr()?.to_string();
            (Some(l), Some(addr))
        }
        false => (None, None),
    };
    let fleet = EmbeddedFleet::start(FleetOptions {
        data_dir: data.path().to_path_buf(),
        cache_limits: buildfleet_cache::StoreLimits::unlimited(),
        runners,
        coordinator,
        kill_grace: Duration::from_millis(500),
        min_free_disk: 0,
        runner_labels: vec!["linux".into()],
        supervisor: env!("CARGO_BIN_EXE_buildfleet").into(),
        step_users,
        dashboard,
    })
    .await?;
    Ok(TestFleet {
        fleet,
        data,
        dashboard: dashboard_addr,
    })
}

impl TestFleet {
    pub async fn client(
        &self,
    ) -> pb::pipelines_client::PipelinesClient<buildfleet_trust::AuthChannel> {
        buildfleet::wire::pipelines(&self.fleet.coordinator_url, &self.fleet.client)
            .await
            .unwrap()
    }

    /// Writes `files` into a fresh directory, uploads it, and submits `yaml`.
    pub async fn submit(&self, yaml: &str, files: &[(&str, &str)]) -> String {
        self.submit_keyed(yaml, files, "").await.run_id
    }

    pub async fn submit_keyed(
        &self,
        yaml: &str,
        files: &[(&str, &str)],
        key: &str,
    ) -> pb::SubmitResponse {
        let dir = write_files(files);
        let root = upload(&self.fleet, dir.path()).await;
        self.submit_root(yaml, root, key)
            .await
            .expect("submit accepted")
    }

    /// Submits `yaml` against an input tree already in the cache.
    pub async fn submit_root(
        &self,
        yaml: &str,
        root: pb::Digest,
        key: &str,
    ) -> Result<pb::SubmitResponse, tonic::Status> {
        self.client()
            .await
            .submit(pb::SubmitRequest {
                pipeline_yaml: yaml.to_string(),
                pipeline_path: "test.yaml".into(),
                input_root: Some(root),
                idempotency_key: key.to_string(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Every event of the run, from the start until it ends.
    pub async fn watch_all(&self, run_id: &str) -> Vec<pb::RunEvent> {
        let mut stream = self
            .client()
            .await
            .watch(pb::WatchRequest {
                run_id: run_id.into(),
                after_seq: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .expect("run ends within 120s");
            match next {
                Some(ev) => out.push(ev.unwrap()),
                None => return out,
            }
        }
    }

    pub async fn get(&self, run_id: &str) -> pb::RunStatus {
        self.client()
            .await
            .get(pb::GetRequest {
                run_id: run_id.into(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    /// Like [`run`](Self::run), with `--no-cache` set as asked.
    pub async fn run_with(
        &self,
        yaml: &str,
        files: &[(&str, &str)],
        no_cache: bool,
    ) -> (pb::RunStatus, Vec<pb::RunEvent>) {
        let req = pb::SubmitRequest {
            pipeline_yaml: yaml.to_string(),
            no_cache,
            ..Default::default()
        };
        self.run_request(req, files).await
    }

    /// Submits `req` (pipeline text and options) against `files`, under its
    /// project or "tests", and waits for the end.
    pub async fn run_request(
        &self,
        req: pb::SubmitRequest,
        files: &[(&str, &str)],
    ) -> (pb::RunStatus, Vec<pb::RunEvent>) {
        let dir = write_files(files);
        let root = upload(&self.fleet, dir.path()).await;
        let project = match req.project.as_str() {
            "" => "tests".to_owned(),
            p => p.to_owned(),
        };
        let id = self
            .client()
            .await
            .submit(pb::SubmitRequest {
                pipeline_path: "test.yaml".into(),
                input_root: Some(root),
                project,
                ..req
            })
            .await
            .expect("submit accepted")
            .into_inner()
            .run_id;
        let events = self.watch_all(&id).await;
        (self.get(&id).await, events)
    }

    /// Submits, waits for the end, returns the final status and all events.
    pub async fn run(
        &self,
        yaml: &str,
        files: &[(&str, &str)],
    ) -> (pb::RunStatus, Vec<pb::RunEvent>) {
        let id = self.submit(yaml, files).await;
        let events = self.watch_all(&id).await;
        (self.get(&id).await, events)
    }

    pub async fn stop(self) {
        self.fleet.shutdown().await;
    }
}

/// A fresh directory holding `files` (relative path, contents).
pub fn write_files(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    dir
}

pub async fn upload(fleet: &EmbeddedFleet, dir: &Path) -> pb::Digest {
    let snap = buildfleet_cache::snapshot(dir).unwrap();
    let cas = CasClient::connect_with(&fleet.cache_url, &fleet.client)
        .await
        .unwrap();
    cas.upload_snapshot(&snap).await.unwrap();
    snap.root.into()
}

pub fn kind(s: &Option<pb::State>) -> pb::StateKind {
    pb::StateKind::try_from(s.as_ref().expect("state present").kind).unwrap()
}

pub fn step<'a>(status: &'a pb::RunStatus, name: &str) -> &'a pb::StepStatus {
    status
        .steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

/// All text a shard wrote to one stream, in event order.
pub fn log_of(events: &[pb::RunEvent], step: &str, shard: u32, stream: pb::LogStream) -> String {
    let mut text = Vec::new();
    for e in events {
        if let Some(pb::run_event::Event::Log(l)) = &e.event {
            if l.step == step && l.shard == shard && l.stream == stream as i32 {
                text.extend_from_slice(&l.data);
            }
        }
    }
    String::from_utf8(text).unwrap()
}

pub fn stdout_of(events: &[pb::RunEvent], step: &str, shard: u32) -> String {
    log_of(events, step, shard, pb::LogStream::Stdout)
}

/// buildfleet's own notes about a shard (kills, uploads, missing outputs).
pub fn system_of(events: &[pb::RunEvent], step: &str, shard: u32) -> String {
    log_of(events, step, shard, pb::LogStream::System)
}

/// The cache reports of one shard, in the order the runner made them.
pub fn cache_reports<'a>(
    status: &'a pb::RunStatus,
    step_name: &str,
    shard: u32,
) -> &'a [pb::CacheReport] {
    &step(status, step_name).shards[shard as usize].cache
}

/// The single report for `cache` on a shard.
pub fn cache_report<'a>(
    status: &'a pb::RunStatus,
    step_name: &str,
    shard: u32,
    cache: &str,
) -> &'a pb::CacheReport {
    let reports = cache_reports(status, step_name, shard);
    let mut matching = reports.iter().filter(|r| r.cache == cache);
    let first = matching
        .next()
        .unwrap_or_else(|| panic!("no `{cache}` report for {step_name}#{shard}: {reports:?}"));
    first
}

pub fn outcome(r: &pb::CacheReport) -> pb::CacheOutcome {
    pb::CacheOutcome::try_from(r.outcome).unwrap()
}

/// Sequence number of the first state event matching step/shard/kind.
pub fn seq_of(events: &[pb::RunEvent], step: &str, shard: Option<u32>, k: pb::StateKind) -> u64 {
    events
        .iter()
        .find_map(|e| match &e.event {
            Some(pb::run_event::Event::State(c))
                if c.step == step && c.shard == shard && kind(&c.state) == k =>
            {
                Some(e.seq)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {k:?} event for {step} {shard:?}"))
}

/// The lines a test's steps appended to `trace` (each line one real run).
pub fn trace_lines(trace: &Path) -> Vec<String> {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
