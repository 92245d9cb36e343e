//! The embedded fleet: cache, coordinator and runners in one process, talking
//! real gRPC over loopback ports the OS assigns — the same code paths as a
//! fleet of machines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use buildfleet_cache::{BlobStore, LocalCas, RocksStore, StoreLimits};
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_runner::step_users::{RootSteps, StepUserPool, StepUsers};
use buildfleet_runner::RunnerConfig;
use buildfleet_trust::{new_token, ClientTrust, Grant, Guard, Reloading, Role, TokenSet};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info_span, warn, Instrument};

pub struct FleetOptions {
    pub data_dir: PathBuf,
    pub cache_limits: StoreLimits,
    pub runners: u32,
    pub coordinator: CoordinatorConfig,
    pub kill_grace: Duration,
    /// Runners below this much free disk take no leases (0 = no floor).
    pub min_free_disk: u64,
    pub runner_labels: Vec<String>,
    /// The binary holding the shard supervisor: this one
    /// (`/proc/self/exe`), or the built `buildfleet` when a test embeds the
    /// fleet in its own binary.
    pub supervisor: PathBuf,
    /// Who steps run as. The embedded fleet runs on one person's machine,
    /// so without a step user its steps run as that person (root
    /// included), and the runners say so.
    pub step_users: StepUsers,
    /// Where the coordinator serves its dashboard (and `/metrics`), bound
    /// by the caller once the configuration checked out.
    pub dashboard: Option<TcpListener>,
}

/// A running embedded fleet. Dropping it without `shutdown` aborts nothing
/// gracefully; call `shutdown` to stop runners first, then the servers.
pub struct EmbeddedFleet {
    pub coordinator_url: String,
    pub cache_url: String,
    /// The fleet's own admin token: what this process presents, and what
    /// `token_file` holds for other commands (`buildfleet approve`).
    pub client: ClientTrust,
    /// The admin token in a file only this user can read, removed at
    /// shutdown.
    pub token_file: PathBuf,
    /// Stops the coordinator and the cache.
    stop: CancellationToken,
    /// Stops the runners, which are stopped (and gone) first.
    stop_runners: CancellationToken,
    tasks: Vec<(String, JoinHandle<()>)>,
    runner_tasks: Vec<(String, JoinHandle<()>)>,
    /// The runners' shared cgroups, removed once they have stopped.
    isolation: Option<Arc<buildfleet_runner::cgroup::Isolation>>,
}

/// The embedded fleet's own tokens, made fresh for each start: one per
/// runner (named as the runner, so its name is its token's) and an admin
/// token for the process that started it. Loopback ports are reachable by
/// every user of the machine; these keep them out.
struct OwnTokens {
    guard: Guard,
    admin: String,
    runners: Vec<(String, String)>,
}

impl OwnTokens {
    fn make(runners: u32) -> Result<OwnTokens> {
        let mut set = TokenSet::default();
        let admin = new_token().context("making the embedded fleet's tokens")?;
        set.insert(
            &admin,
            Grant {
                name: "embedded-admin".into(),
                role: Role::Admin,
                cache_write: true,
            },
        );
        let mut named = Vec::new();
        for i in 1..=runners {
            let name = format!("runner-{i}");
            let token = new_token().context("making the embedded fleet's tokens")?;
            set.insert(
                &token,
                Grant {
                    name: name.clone(),
                    role: Role::Runner,
                    cache_write: false,
                },
            );
            named.push((name, token));
        }
        Ok(OwnTokens {
            guard: Guard::tokens(Reloading::fixed(set)),
            admin,
            runners: named,
        })
    }

    /// Writes the admin token where only this user can read it.
    fn save_admin(&self, data_dir: &Path) -> Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = data_dir.join("embedded-token");
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing the embedded fleet's token to {}", path.display()))?;
        writeln!(f, "{}", self.admin)?;
        Ok(path)
    }
}

async fn bind_loopback() -> Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding a loopback port")?;
    let addr = l.local_addr()?;
    Ok((l, addr))
}

impl EmbeddedFleet {
    pub async fn start(opts: FleetOptions) -> Result<EmbeddedFleet> {
        opts.coordinator.validate()?;
        anyhow::ensure!(opts.runners >= 1, "--runners must be at least 1");
        let work_base = opts.data_dir.join("work");
        let work_root = |i: u32| work_base.join(format!("runner-{i}-{}", std::process::id()));
        // One pool for the machine's runners (one slot each); proven usable
        // before anything starts.
        let step_users = Arc::new(StepUserPool::new(opts.step_users, RootSteps::Allow)?);
        step_users.check_slots(opts.runners)?;
        if step_users.separates() {
            let first = work_root(1);
            std::fs::create_dir_all(&first)
                .with_context(|| format!("creating {}", first.display()))?;
            step_users.admit(&first)?;
        }
        step_users.say_once(1);
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        // One process, one set of cgroups to find, for all its runners;
        // found (it moves a process about, some ms) while the servers start.
        let isolation = tokio::task::spawn_blocking(|| {
            buildfleet_runner::cgroup::Isolation::detect("embedded")
        });
        let tokens = OwnTokens::make(opts.runners)?;
        let client = ClientTrust::with_token(&tokens.admin)?;
        let cache_url = start_cache(
            &opts.data_dir,
            opts.cache_limits,
            tokens.guard.clone(),
            &stop,
            &mut tasks,
        )
        .await?;
        // After the cache opened its database: a second fleet on this data
        // directory stops there, before touching the first one's token.
        let token_file = tokens.save_admin(&opts.data_dir)?;

        let mut config = opts.coordinator.clone();
        // The dashboard's artifact links read the embedded cache.
        config.artifact_cache = Some(buildfleet_coordinator::config::CacheAccess {
            url: cache_url.clone(),
            trust: client.clone(),
        });
        if config.history_dir.is_none() {
            config.history_dir = Some(opts.data_dir.join("coordinator"));
        }
        // Runs of an embedded fleet end with it; only history is kept.
        config.persist_runs = false;
        let db = buildfleet_coordinator::db::Db::open(config.history_dir.as_deref()).context(
            "opening the coordinator's history (is another buildfleet using it? pass --data DIR)",
        )?;
        let (coord_l, coord_addr) = bind_loopback().await?;
        let s = stop.clone();
        let guard = tokens.guard.clone();
        let dashboard = opts.dashboard;
        tasks.push((
            "coordinator".to_string(),
            tokio::spawn(
                async move {
                    if let Err(e) = buildfleet_coordinator::grpc::serve_with_metrics(
                        coord_l,
                        dashboard,
                        config,
                        db,
                        guard,
                        s.cancelled_owned(),
                    )
                    .await
                    {
                        tracing::error!(error = %e, "coordinator stopped");
                    }
                }
                .instrument(info_span!("coordinator_server")),
            ),
        ));

        let coordinator_url = format!("http://{coord_addr}");
        // One local blob cache for all embedded runners: they share a disk,
        // and one index keeps its accounting right.
        let cas_dir = opts.data_dir.join("runner-cas");
        let local_cas = LocalCas::open(&cas_dir, None).with_context(|| {
            format!("opening the runners' local cache at {}", cas_dir.display())
        })?;
        let stop_runners = CancellationToken::new();
        let mut runner_tasks = Vec::new();
        let isolation = Arc::new(isolation.await.context("finding the runners' cgroups")?);
        for (i, (name, token)) in (1..).zip(&tokens.runners) {
            let name = name.clone();
            let config = RunnerConfig {
                coordinator_url: coordinator_url.clone(),
                cache_url: cache_url.clone(),
                name: name.clone(),
                labels: opts.runner_labels.clone(),
                slots: 1,
                work_root: work_root(i),
                kill_grace: opts.kill_grace,
                local_cas: Some(local_cas.clone()),
                min_free_disk: opts.min_free_disk,
                // The embedded fleet stops when its run has ended.
                drain_grace: Duration::from_secs(5),
                supervisor: opts.supervisor.clone(),
                isolation: Some(isolation.clone()),
                trust: ClientTrust::with_token(token)?,
                step_users: step_users.clone(),
                metrics: Default::default(),
            };
            let s = stop_runners.clone();
            runner_tasks.push((
                name.clone(),
                tokio::spawn(
                    async move {
                        if let Err(e) = buildfleet_runner::run(config, s.cancelled_owned()).await {
                            warn!(error = %e, "runner stopped");
                        }
                    }
                    .instrument(info_span!("runner", runner = %name)),
                ),
            ));
        }
        let fleet = EmbeddedFleet {
            coordinator_url,
            cache_url,
            client,
            token_file,
            stop,
            stop_runners,
            tasks,
            runner_tasks,
            isolation: Some(isolation),
        };
        fleet.wait_for_runners(opts.runners).await?;
        Ok(fleet)
    }

    /// Only the cache, on the same data directory a `run` uses: for
    /// commands that inspect the cache (`buildfleet cache explain`).
    pub async fn start_cache_only(data_dir: &Path) -> Result<EmbeddedFleet> {
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let tokens = OwnTokens::make(0)?;
        let cache_url = start_cache(
            data_dir,
            StoreLimits::unlimited(),
            tokens.guard.clone(),
            &stop,
            &mut tasks,
        )
        .await?;
        let token_file = tokens.save_admin(data_dir)?;
        Ok(EmbeddedFleet {
            coordinator_url: String::new(),
            cache_url,
            client: ClientTrust::with_token(&tokens.admin)?,
            token_file,
            stop,
            stop_runners: CancellationToken::new(),
            tasks,
            runner_tasks: Vec::new(),
            isolation: None,
        })
    }

    /// Waits until every runner has registered, so the first shards spread
    /// over the whole fleet instead of piling onto the first to connect.
    async fn wait_for_runners(&self, n: u32) -> Result<()> {
        let mut coordinator =
            crate::wire::Coordinator::connect(&self.coordinator_url, &self.client).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = coordinator.runner_count().await? as u32;
            if got >= n {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {got} of {n} embedded runners registered within 30s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the fleet in order: runners drain and leave the coordinator
    /// first (so none of them sees its coordinator vanish and tries to
    /// reconnect), then the coordinator and the cache.
    pub async fn shutdown(self) {
        self.stop_runners.cancel();
        for (name, t) in self.runner_tasks {
            if let Err(e) = t.await {
                warn!(task = %name, error = %e, "fleet task ended abnormally");
            }
        }
        if let Some(isolation) = &self.isolation {
            isolation.remove();
        }
        self.stop.cancel();
        for (name, t) in self.tasks {
            if let Err(e) = t.await {
                warn!(task = %name, error = %e, "fleet task ended abnormally");
            }
        }
        // The token is worthless now the fleet is gone; don't leave it about.
        if let Err(e) = std::fs::remove_file(&self.token_file) {
            warn!(path = %self.token_file.display(), error = %e, "the embedded fleet's token file was not removed");
        }
    }
}

type Tasks = Vec<(String, JoinHandle<()>)>;

/// Opens the RocksDB cache under `data_dir` and serves it on a loopback port.
async fn start_cache(
    data_dir: &Path,
    limits: StoreLimits,
    guard: Guard,
    stop: &CancellationToken,
    tasks: &mut Tasks,
) -> Result<String> {
    let cache_dir = data_dir.join("cache");
    std::fs::create_dir_all(&cache_dir)
        .with_context(|| format!("creating cache directory {}", cache_dir.display()))?;
    let store = RocksStore::open_with_limits(&cache_dir, limits);
    let store: Arc<dyn BlobStore> = Arc::new(store.with_context(|| {
        format!(
            "opening the cache at {} (is another buildfleet using it? pass --data DIR)",
            cache_dir.display()
        )
    })?);
    let (cache_l, cache_addr) = bind_loopback().await?;
    let s = stop.clone();
    tasks.push((
        "cache".to_string(),
        tokio::spawn(
            async move {
                if let Err(e) =
                    buildfleet_cache::serve(cache_l, store, guard, s.cancelled_owned()).await
                {
                    tracing::error!(error = %e, "cache server stopped");
                }
            }
            .instrument(info_span!("cache_server")),
        ),
    ));
    Ok(format!("http://{cache_addr}"))
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("buildfleet")
}

/// Checks a data directory is usable before anything is started.
pub fn check_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))
}

/// The cache's own files must never become pipeline inputs: the snapshot
/// would hash a database that changes while it is read.
pub fn data_inside_inputs(data_dir: &Path, work_dir: &Path) -> Option<String> {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (data, work) = (abs(data_dir), abs(work_dir));
    data.starts_with(&work).then(|| {
        format!(
            "error: the data directory {} is inside the input directory {}; pass --data DIR outside it (or --dir)",
            data.display(),
            work.display()
        )
    })
}
