//! The long-running roles as separate processes. Each validates its config,
//! then binds, then serves until SIGTERM or Ctrl-C.

use std::sync::Arc;

use anyhow::{Context, Result};
use buildfleet_cache::{BlobStore, LocalCas, RocksStore, StoreLimits};
use buildfleet_coordinator::scheduler::SchedulerConfig;
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_runner::step_users::{RootSteps, StepUserPool, StepUsers};
use buildfleet_runner::RunnerConfig;
use tokio::net::TcpListener;

use crate::cli::{CacheArgs, CoordinatorArgs, RunnerArgs, ServerAuthArgs};
use buildfleet_trust::{ClientTrust, Guard, Reloading, TokenSet};

/// The server's guard, from its token file (read now: a bad file stops
/// start-up before any port is bound), or open when told `--no-auth`.
fn guard(auth: &ServerAuthArgs, role: &str) -> Result<Guard> {
    let guard = tokens_guard(auth, role)?;
    let (Some(cert), Some(key)) = (&auth.tls_cert, &auth.tls_key) else {
        return Ok(guard);
    };
    let tls = buildfleet_trust::tls::watch_server(buildfleet_trust::ServerTlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: auth.tls_client_ca.clone(),
    })?;
    tracing::info!(
        cert = %cert.display(),
        mutual = auth.tls_client_ca.is_some(),
        "{role}: serving TLS"
    );
    Ok(guard.with_tls(tls))
}

fn tokens_guard(auth: &ServerAuthArgs, role: &str) -> Result<Guard> {
    match &auth.tokens {
        Some(path) => {
            let p = path.clone();
            let tokens =
                Reloading::watch("tokens", vec![path.clone()], move || TokenSet::load(&p))?;
            tracing::info!(file = %path.display(), tokens = tokens.get().len(), "{role}: checking bearer tokens");
            Ok(Guard::tokens(tokens))
        }
        None => {
            tracing::warn!("{role}: --no-auth: every caller is an admin; only for a network nobody else can reach");
            Ok(Guard::open())
        }
    }
}

/// The shard supervisor is this very binary, under a hidden subcommand.
/// `/proc/self/exe` still names it if the file was replaced (an upgrade)
/// while the runner runs.
pub fn supervisor() -> std::path::PathBuf {
    std::path::PathBuf::from("/proc/self/exe")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler; only Ctrl-C stops this process");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
    }
}

async fn bind(addr: &str, print: bool) -> Result<TcpListener> {
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    if print {
        println!("listening on {}", l.local_addr()?);
    }
    Ok(l)
}

/// The metrics listener, when asked for; bound after the role's config
/// is checked, like its gRPC port.
async fn bind_metrics(addr: Option<&str>, print: bool) -> Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint {addr}"))?;
    if print {
        println!("metrics on {}", l.local_addr()?);
    }
    Ok(Some(l))
}

/// `trust` is what the coordinator presents to the cache (`--cache`, for
/// the dashboard's artifact downloads).
pub async fn coordinator(args: CoordinatorArgs, trust: ClientTrust) -> Result<()> {
    let mut config = CoordinatorConfig {
        scheduler: SchedulerConfig {
            label_wait: args.label_wait,
            ..SchedulerConfig::default()
        },
        heartbeat_interval: args.heartbeat_interval,
        history_dir: Some(
            args.data
                .unwrap_or_else(crate::fleet::default_data_dir)
                .join("coordinator"),
        ),
        ..CoordinatorConfig::default()
    };
    args.policy.apply(&mut config);
    config.approvals_by_admins_only = args.approvals == "admin";
    config.artifact_cache = args
        .cache
        .map(|url| buildfleet_coordinator::config::CacheAccess { url, trust });
    config.validate()?;
    let guard = guard(&args.auth, "coordinator")?;
    let db = buildfleet_coordinator::db::Db::open(config.history_dir.as_deref())
        .context("opening the coordinator's history (pass --data DIR for another location)")?;
    let listener = bind(&args.listen, args.print_addr).await?;
    let metrics = bind_metrics(args.metrics_listen.as_deref(), args.print_addr).await?;
    let traces = args.traces.start("buildfleet-coordinator")?;
    let served = buildfleet_coordinator::grpc::serve_with_metrics(
        listener,
        metrics,
        config,
        db,
        guard,
        shutdown_signal(),
    )
    .await;
    if let Some(t) = traces {
        t.shutdown().await;
    }
    served?;
    Ok(())
}

pub async fn cache(args: CacheArgs) -> Result<()> {
    let guard = guard(&args.auth, "cache")?;
    let dir = args
        .data
        .unwrap_or_else(crate::fleet::default_data_dir)
        .join("cache");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let bucket = match (&args.object_store_url, &args.object_store_bucket) {
        (Some(endpoint), Some(bucket)) => {
            let credential = |name: &str| {
                std::env::var(name).with_context(|| {
                    format!("--object-store-url needs {name} in the environment (the bucket's credentials)")
                })
            };
            Some(buildfleet_cache::BucketConfig {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: args.object_store_region.clone(),
                access_key_id: credential("AWS_ACCESS_KEY_ID")?,
                secret_access_key: credential("AWS_SECRET_ACCESS_KEY")?,
                prefix: args.object_store_prefix.clone(),
            })
        }
        _ => None,
    };
    let local = RocksStore::open_with_limits(
        &dir,
        StoreLimits {
            max_bytes: args.max_size,
        },
    )
    .with_context(|| format!("opening the cache at {}", dir.display()))?;
    let store: Arc<dyn BlobStore> = match bucket {
        Some(config) => {
            tracing::info!(?config, "the local store fronts a shared bucket");
            Arc::new(
                buildfleet_cache::TieredStore::new(local, &config)
                    .with_context(|| format!("using the bucket {config:?}"))?,
            )
        }
        None => Arc::new(local),
    };
    let listener = bind(&args.listen, args.print_addr).await?;
    let metrics = bind_metrics(args.metrics_listen.as_deref(), args.print_addr).await?;
    let traces = args.traces.start("buildfleet-cache")?;
    let served =
        buildfleet_cache::serve_with_metrics(listener, metrics, store, guard, shutdown_signal())
            .await;
    if let Some(t) = traces {
        t.shutdown().await;
    }
    served?;
    Ok(())
}

pub async fn runner(args: RunnerArgs, trust: ClientTrust) -> Result<()> {
    // Who steps run as is decided before anything is created or connected:
    // a root runner with no step user stops here unless told otherwise.
    let root = if args.allow_root_steps {
        RootSteps::Allow
    } else {
        RootSteps::Refuse
    };
    let users = args.step_user.clone().unwrap_or(StepUsers::Runner);
    let step_users = Arc::new(StepUserPool::new(users, root)?);
    step_users.check_slots(args.slots)?;
    let name = args
        .name
        .unwrap_or_else(|| format!("runner-{}", std::process::id()));
    let work_root = args
        .work_dir
        .unwrap_or_else(|| crate::fleet::default_data_dir().join("work").join(&name));
    let cas_dir = args
        .local_cache_dir
        .unwrap_or_else(|| crate::fleet::default_data_dir().join("runner-cas"));
    let local_cas = LocalCas::open(&cas_dir, args.local_cache_max_size)
        .with_context(|| format!("opening the runner's local cache at {}", cas_dir.display()))?;
    let config = RunnerConfig {
        coordinator_url: args.coordinator,
        cache_url: args.cache,
        name,
        labels: args.labels,
        slots: args.slots,
        work_root,
        kill_grace: args.kill_grace,
        local_cas: Some(local_cas),
        min_free_disk: args.min_free_disk,
        drain_grace: args.drain_grace,
        supervisor: supervisor(),
        isolation: None,
        trust,
        step_users,
        metrics: buildfleet_runner::RunnerMetrics::new(),
    };
    config.validate()?;
    if let Some(listener) = bind_metrics(args.metrics_listen.as_deref(), false).await? {
        buildfleet_metrics::spawn(
            listener,
            config.metrics.clone(),
            std::future::pending(),
            tracing::info_span!("runner_metrics"),
        );
    }
    let traces = args.traces.start("buildfleet-runner")?;
    let ran = buildfleet_runner::run(config, shutdown_signal()).await;
    if let Some(t) = traces {
        t.shutdown().await;
    }
    ran?;
    Ok(())
}
