//! The command line. Names here are stable: CI scripts depend on them.

use std::path::PathBuf;
use std::time::Duration;

use buildfleet_runner::step_users::StepUsers;
use clap::{Args, Parser, Subcommand};

mod observe;
pub use observe::{ListingArgs, LogsArgs, Output, RunsArgs, RunsCommand, TraceArgs};

#[derive(Parser, Debug)]
#[command(
    name = "buildfleet",
    version,
    about = "A distributed build runner fleet with a content-addressed cache"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// A file holding the token this client or runner presents to the
    /// fleet (else `BUILDFLEET_TOKEN`; none for a fleet without tokens).
    #[arg(long, global = true, env = "BUILDFLEET_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA that signed the fleet's server certificates, for `https://`
    /// URLs (default: the web PKI).
    #[arg(long, global = true, env = "BUILDFLEET_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for servers that require one (mutual TLS).
    #[arg(
        long,
        global = true,
        env = "BUILDFLEET_TLS_CLIENT_CERT",
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "BUILDFLEET_TLS_CLIENT_KEY",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
}

impl Cli {
    /// What this process presents to the fleet: its token and TLS files,
    /// read now so a bad file is an error before anything connects.
    pub fn client_trust(&self) -> anyhow::Result<buildfleet_trust::ClientTrust> {
        let trust = buildfleet_trust::ClientTrust::from_file_or_env(self.token_file.as_deref())?;
        let tls = buildfleet_trust::ClientTls::from_files(
            self.tls_ca.as_deref(),
            self.tls_client_cert.as_deref(),
            self.tls_client_key.as_deref(),
        )?;
        Ok(trust.with_tls(tls))
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline on an embedded fleet (cache, coordinator, runners) in this process.
    Run(RunArgs),
    /// Parse and check a pipeline file; errors name file:line:column.
    Validate { file: PathBuf },
    /// Serve the coordinator.
    Coordinator(CoordinatorArgs),
    /// Serve the content-addressed cache (REAPI v2), or inspect it (`cache explain`).
    Cache(CacheArgs),
    /// Run a runner node that takes shards from a coordinator.
    Runner(RunnerArgs),
    /// Upload inputs, submit a pipeline to a running fleet, and watch it.
    Submit(SubmitArgs),
    /// Print a run's logs: whole, from the cache (also what a log cap
    /// cut), or followed live with `-f`.
    Logs(LogsArgs),
    /// List runs, newest first; `runs show RUN` shows one.
    Runs(RunsArgs),
    /// List the runners: labels, slots, leases, disk, availability.
    Runners(ListingArgs),
    /// Download a run's artifacts (its steps' declared outputs) to a directory.
    Artifacts(ArtifactsArgs),
    /// Run one step of an earlier run again, with that run's inputs, context
    /// and artifacts (a redeploy of a known-good version), and watch it.
    Rerun(RerunArgs),
    /// Approve a step waiting for approval: it runs.
    Approve(DecideArgs),
    /// Reject a step waiting for approval: it fails with the reason.
    Reject(RejectArgs),
    /// Make tokens for the servers' token file.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a token: written to `--token-out` (mode 0600), and the token
    /// file's entry for it (name, role, hash) printed on stdout, so
    /// `buildfleet token new … >> tokens.yaml` adds it.
    New(TokenNewArgs),
}

#[derive(Args, Debug)]
pub struct TokenNewArgs {
    /// The identity the token stands for (a runner pool, a CI system, a person).
    #[arg(long)]
    pub name: String,
    /// `runner`, `client` or `admin`.
    #[arg(long)]
    pub role: buildfleet_trust::Role,
    /// A client token that may also write the action cache (Bazel-family
    /// clients uploading their own results); runners and admins always may.
    #[arg(long)]
    pub cache_write: bool,
    /// Where the token goes (created, mode 0600; an existing file is not overwritten).
    #[arg(long)]
    pub token_out: PathBuf,
}

/// How a server decides who may call it.
#[derive(Args, Debug)]
pub struct ServerAuthArgs {
    /// The token file (names, roles and hashes; reloaded on change).
    #[arg(long, env = "BUILDFLEET_TOKENS", required_unless_present = "no_auth")]
    pub tokens: Option<PathBuf>,
    /// Serve without tokens: every caller is an admin. Only for a fleet on
    /// a network nobody else can reach.
    #[arg(long, conflicts_with = "tokens")]
    pub no_auth: bool,
    /// Serve TLS with this certificate chain (PEM; re-read on change).
    #[arg(long, env = "BUILDFLEET_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; re-read on change).
    #[arg(long, env = "BUILDFLEET_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long, env = "BUILDFLEET_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ArtifactsArgs {
    pub run: String,
    /// Only this step's artifacts.
    pub step: Option<String>,
    /// Where to put them: `DIR/STEP/PATH`.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: String,
    #[arg(long, env = "BUILDFLEET_CACHE")]
    pub cache: String,
}

/// A step of a run, and who acts on it: what `rerun`, `approve` and
/// `reject` all take.
#[derive(Args, Debug)]
pub struct StepOfRun {
    pub run: String,
    pub step: String,
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: String,
    /// Who acts, recorded with what they did (default: $USER).
    #[arg(long)]
    pub actor: Option<String>,
}

#[derive(Args, Debug)]
pub struct RerunArgs {
    #[command(flatten)]
    pub target: StepOfRun,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    #[command(flatten)]
    pub target: StepOfRun,
    /// Why, recorded with the decision.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct RejectArgs {
    #[command(flatten)]
    pub target: StepOfRun,
    /// Why it is rejected: required, and kept with the decision.
    #[arg(long)]
    pub reason: String,
}

/// Coordinator policies shared by `coordinator` and the embedded `run`.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// The secret store: one file per secret (`NAME`), with an optional
    /// `NAME.expires` holding an RFC 3339 expiry.
    #[arg(long)]
    pub secrets_dir: Option<PathBuf>,
    /// Secrets shorter than this many characters are refused (a run that
    /// needs one fails before it starts).
    #[arg(long, default_value_t = buildfleet_coordinator::secrets::DEFAULT_MIN_SECRET_LENGTH)]
    pub secret_min_length: usize,
    /// Warn (in the run, and by notification) about secrets expiring this soon.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub secret_warning: Duration,
    /// Output streamed per shard before the head/tail cut (a step's
    /// `log_cap` wins); the whole log is always kept in the cache.
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub log_cap: u64,
    /// Send notifications to `[EVENT,...=]URL` (repeatable). Events:
    /// run-failed, run-recovered, secret-expiring, run-stalled, runner-lost,
    /// approval-needed
    /// (default: all).
    #[arg(long = "webhook", value_parser = buildfleet_coordinator::notify::Webhook::parse)]
    pub webhooks: Vec<buildfleet_coordinator::notify::Webhook>,
    /// Attempts per webhook delivery before it is reported as not delivered.
    #[arg(long, default_value_t = 5)]
    pub webhook_attempts: u32,
    /// Wait before the second attempt; doubled after each failure.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub webhook_backoff: Duration,
    /// How long a run's artifacts (its steps' declared outputs) are pinned
    /// in the cache, kept from eviction so a deploy can be re-done
    /// (`buildfleet rerun`); 0 pins nothing.
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration)]
    pub artifact_retention: Duration,
    /// A run with no state change or log line for this long is `stalled`.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub stall_after: Duration,
    /// Finished runs kept, in memory and across restarts; older ones are
    /// forgotten.
    #[arg(long, default_value_t = 200)]
    pub keep_runs: usize,
    /// A protected ref pattern (repeatable; globs, e.g. `main`,
    /// `refs/tags/*`): its runs write the shared cache scope, every other
    /// ref an overlay of its own. Default: main, master and tags.
    #[arg(long = "protected-ref")]
    pub protected_refs: Vec<String>,
    /// The cache's `/metrics` URL: the dashboard's cache page shows the
    /// store's size and evictions from it.
    #[arg(long, value_name = "URL")]
    pub cache_metrics_url: Option<String>,
}

impl PolicyArgs {
    pub fn apply(&self, config: &mut buildfleet_coordinator::CoordinatorConfig) {
        config.secrets = buildfleet_coordinator::secrets::SecretConfig {
            dir: self.secrets_dir.clone(),
            warn_within: self.secret_warning,
            min_length: self.secret_min_length,
        };
        config.log_cap = self.log_cap;
        config.artifact_retention = self.artifact_retention;
        config.notify = buildfleet_coordinator::notify::NotifyConfig {
            webhooks: self.webhooks.clone(),
            attempts: self.webhook_attempts,
            backoff: self.webhook_backoff,
        };
        config.scheduler.stall_after = self.stall_after;
        config.scheduler.keep_runs = self.keep_runs;
        if !self.protected_refs.is_empty() {
            config.protected_refs = self.protected_refs.clone();
        }
        config.cache_metrics_url = self.cache_metrics_url.clone();
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    pub file: PathBuf,
    /// Number of embedded runners (default: the CPU count).
    #[arg(long)]
    pub runners: Option<u32>,
    /// Serve the dashboard (and `/metrics`) at `http://ADDR/` while the
    /// run lasts, e.g. `127.0.0.1:7780`.
    #[arg(long, value_name = "ADDR")]
    pub dashboard: Option<String>,
    /// Where the cache keeps its data (default: a per-user data directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Embedded runners take no leases below this much free disk (`0` for
    /// no floor).
    #[arg(long, default_value = "256MiB", value_parser = parse_floor)]
    pub min_free_disk: u64,
    /// Keep the embedded cache under this size (e.g. `20GiB`), evicting the
    /// least recently used blobs; default: no limit.
    #[arg(long, value_parser = parse_size)]
    pub cache_max_size: Option<u64>,
    /// Directory to snapshot as the pipeline's inputs (default: the pipeline file's directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Run steps as this unprivileged user, not as you (see `runner
    /// --step-user`; needs root). Without it steps run as you, and the
    /// runners say so.
    #[arg(long, value_name = "USER", value_parser = StepUsers::parse)]
    pub step_user: Option<StepUsers>,
    #[command(flatten)]
    pub sched: SchedArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub flags: SubmitFlags,
}

/// Flags shared by `run` and `submit`.
#[derive(Args, Debug, Clone)]
pub struct SubmitFlags {
    /// Run every step even when an identical earlier result is cached
    /// (dependency caches are still restored and saved).
    #[arg(long)]
    pub no_cache: bool,
    /// Project name for step history, against which cache misses are
    /// explained (default: the input directory's name).
    #[arg(long)]
    pub project: Option<String>,
    /// Write one JUnit XML report for the whole run (every shard's tests,
    /// and each shard without a report as one test case) to FILE.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Fail a shard whose test failed and then passed on a
    /// `retries: { flaky: N }` re-run, instead of only marking it flaky.
    #[arg(long)]
    pub fail_on_flaky: bool,
    /// The ref the run is for (`refs/heads/main`; default: the CI job's,
    /// else the checkout's branch).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// The commit the run is for (default: the CI job's, else HEAD).
    #[arg(long)]
    pub commit: Option<String>,
    /// What started the run: push, pull_request, schedule, manual, …
    /// (default: the CI job's event, else `manual`).
    #[arg(long)]
    pub event: Option<String>,
    /// Who started the run (default: the CI job's actor, else $USER).
    #[arg(long)]
    pub actor: Option<String>,
    /// A value for a variable the pipeline declares in its top-level `env`
    /// (repeatable): `--var ENVIRONMENT=https://staging.example`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

fn parse_var(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(anyhow::anyhow!("`{text}` is not NAME=VALUE")),
    }
}

impl SubmitFlags {
    /// The context flags as given.
    pub fn context(&self) -> crate::context::Given {
        crate::context::Given {
            git_ref: self.git_ref.clone(),
            commit: self.commit.clone(),
            event: self.event.clone(),
            actor: self.actor.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct SchedArgs {
    /// How long a step may wait for a runner with matching labels before it fails.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub label_wait: Duration,
    /// Time between SIGTERM and SIGKILL when a shard times out or is cancelled.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_grace: Duration,
}

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: String,
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub label_wait: Duration,
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Print the bound address as `listening on ADDR` (useful with port 0),
    /// then `metrics on ADDR` when metrics are served.
    #[arg(long)]
    pub print_addr: bool,
    /// The cache the dashboard's artifact links download from (with this
    /// process's `--token-file`); without it the dashboard names the
    /// `buildfleet artifacts` command instead.
    #[arg(long, env = "BUILDFLEET_CACHE")]
    pub cache: Option<String>,
    /// Serve the dashboard at `http://ADDR/` and Prometheus metrics at
    /// `http://ADDR/metrics` (plain HTTP: pages need a token, metrics do
    /// not; put it behind TLS or on a network only people and the
    /// scraper reach).
    #[arg(long, alias = "http-listen", env = "BUILDFLEET_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub traces: TraceArgs,
    /// Where the coordinator keeps duration and flaky-test history
    /// (`coordinator/` inside; default: the per-user data directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
    /// Who approves and rejects: `client` (a client token, on its own
    /// runs, or an admin) or `admin` (admin tokens only).
    #[arg(long, default_value = "client", value_parser = ["client", "admin"])]
    pub approvals: String,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: Option<CacheCommand>,
    #[arg(long, default_value = "127.0.0.1:7701")]
    pub listen: String,
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub print_addr: bool,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (plain HTTP, no
    /// token: put it on a network only the scraper reaches).
    #[arg(long, env = "BUILDFLEET_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub traces: TraceArgs,
    /// Keep stored blobs and metadata (action results, index entries)
    /// under this size (e.g. `50GiB`), evicting the least recently used
    /// blobs; metadata past half of it is refused. Default: no limit.
    #[arg(long, value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// Put a shared S3-compatible bucket behind the local store: writes go
    /// through to it, reads fall back to it, and several cache nodes on
    /// one bucket serve each other's blobs (e.g.
    /// `https://s3.eu-west-1.amazonaws.com`). Credentials come from
    /// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
    #[arg(
        long,
        env = "BUILDFLEET_OBJECT_STORE_URL",
        requires = "object_store_bucket"
    )]
    pub object_store_url: Option<String>,
    /// The bucket (it must exist).
    #[arg(
        long,
        env = "BUILDFLEET_OBJECT_STORE_BUCKET",
        requires = "object_store_url"
    )]
    pub object_store_bucket: Option<String>,
    /// Object names start with this, so one bucket can hold several caches.
    #[arg(
        long,
        env = "BUILDFLEET_OBJECT_STORE_PREFIX",
        default_value = "buildfleet/"
    )]
    pub object_store_prefix: String,
    #[arg(
        long,
        env = "BUILDFLEET_OBJECT_STORE_REGION",
        default_value = "us-east-1"
    )]
    pub object_store_region: String,
    #[command(flatten)]
    pub auth: ServerAuthArgs,
}

/// Sizes as people write them: `500MB`, `50GiB`, `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .parse()
        .map_err(|e| format!("`{text}` is not a size like 500MB or 50GiB: {e}"))?;
    if size.as_u64() == 0 {
        return Err("the size must be above zero".into());
    }
    Ok(size.as_u64())
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Say, for each shard of a step, whether its result and dependency
    /// caches would be reused — and for every miss, what changed.
    Explain(ExplainArgs),
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    pub file: PathBuf,
    pub step: String,
    /// Only this shard (default: every shard of the step).
    #[arg(long)]
    pub shard: Option<u32>,
    /// A running cache to ask (default: the embedded cache under --data).
    #[arg(long, env = "BUILDFLEET_CACHE")]
    pub cache: Option<String>,
    /// The embedded cache's data directory (default: the per-user data directory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long)]
    pub project: Option<String>,
    /// The ref whose cache scope to read (default: as `run` detects it,
    /// from the CI's variables or git).
    #[arg(long = "ref")]
    pub git_ref: Option<String>,
}

#[derive(Args, Debug)]
pub struct RunnerArgs {
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: String,
    #[arg(long, env = "BUILDFLEET_CACHE")]
    pub cache: String,
    #[arg(long)]
    pub name: Option<String>,
    /// A label this runner offers (repeatable), matched against a step's `labels`.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    #[arg(long, default_value_t = 1)]
    pub slots: u32,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (plain HTTP, no
    /// token: put it on a network only the scraper reaches).
    #[arg(long, env = "BUILDFLEET_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub traces: TraceArgs,
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_grace: Duration,
    /// The runner's local blob cache, from which inputs and dependency
    /// caches are hard-linked; keep it on the work directory's filesystem
    /// (default: `runner-cas` in the per-user data directory).
    #[arg(long)]
    pub local_cache_dir: Option<PathBuf>,
    /// Size cap of the local blob cache (e.g. `20GiB`); default: no cap.
    #[arg(long, value_parser = parse_size)]
    pub local_cache_max_size: Option<u64>,
    /// Take no new leases while the work directory's disk has less free
    /// space than this (`0` for no floor); `ListRunners` says why.
    #[arg(long, default_value = "1GiB", value_parser = parse_floor)]
    pub min_free_disk: u64,
    /// On SIGTERM, how long running shards may go on; after that they are
    /// handed back and leased again elsewhere.
    #[arg(long, default_value = "25s", value_parser = humantime::parse_duration)]
    pub drain_grace: Duration,
    /// Run steps as an unprivileged user, not the runner's: `UID[:GID]` or
    /// `NAME[:GID]` for one user, or `FIRST-LAST[:GID]` for a uid per
    /// running shard (at least --slots of them), which also keeps shards
    /// from reading each other's environment. Steps then cannot write the
    /// runner's local cache. Needs root.
    #[arg(long, value_name = "USER", value_parser = StepUsers::parse)]
    pub step_user: Option<StepUsers>,
    /// Let a runner running as root run steps as root when no --step-user
    /// is given (it refuses to start otherwise); said in its log and in
    /// `ListRunners`.
    #[arg(long, conflicts_with = "step_user")]
    pub allow_root_steps: bool,
}

fn parse_floor(text: &str) -> Result<u64, String> {
    if text == "0" {
        return Ok(0);
    }
    parse_size(text)
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    pub file: PathBuf,
    #[arg(long, env = "BUILDFLEET_COORDINATOR")]
    pub coordinator: String,
    /// The cache the fleet's runners read inputs from.
    #[arg(long, env = "BUILDFLEET_CACHE")]
    pub cache: String,
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Submitting again with the same key returns the same run.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub flags: SubmitFlags,
}
