//! The coordinator's settings, parsed and validated before any port is
//! bound: a bad value stops start-up with what is wrong, not a half-started
//! fleet.

use std::time::Duration;

use crate::scheduler::SchedulerConfig;

/// Settings checked before any port is bound.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub scheduler: SchedulerConfig,
    /// How often runners must send heartbeats.
    pub heartbeat_interval: Duration,
    /// Missed-heartbeat multiple after which a silent runner counts as lost.
    pub heartbeat_misses: u32,
    /// Where duration and flaky history persist (a RocksDB directory);
    /// `None` keeps it in memory for the process's life.
    pub history_dir: Option<std::path::PathBuf>,
    pub notify: crate::notify::NotifyConfig,
    /// Store runs and restore them after a restart. Off for the embedded
    /// fleet of `buildfleet run`: its runs end with the process, and a
    /// later `run` must not pick up and execute an interrupted one.
    pub persist_runs: bool,
    pub secrets: crate::secrets::SecretConfig,
    /// Output streamed live per shard before the head/tail cut, unless a
    /// step sets `log_cap`.
    pub log_cap: u64,
    /// How long a run's artifacts are pinned in the cache (zero: not at
    /// all), so a deploy can be re-done.
    pub artifact_retention: Duration,
    /// `--approvals admin`: only admin tokens approve or reject; otherwise
    /// a client token may decide its own runs' approvals.
    pub approvals_by_admins_only: bool,
    /// Refs whose runs write the shared cache scope (globs, e.g. `main`,
    /// `refs/tags/*`); other refs write an overlay only they read.
    pub protected_refs: Vec<String>,
    /// The cache's `/metrics` URL, read by the dashboard's cache page for
    /// the store's size and evictions (only the cache knows them).
    pub cache_metrics_url: Option<String>,
    /// The cache the dashboard downloads artifacts from, and what the
    /// coordinator presents to it (`None`: no download links).
    pub artifact_cache: Option<CacheAccess>,
}

/// Protected unless configured otherwise: the usual default branches and
/// tags, by full ref or short name.
pub fn default_protected_refs() -> Vec<String> {
    [
        "main",
        "master",
        "refs/heads/main",
        "refs/heads/master",
        "refs/tags/*",
    ]
    .map(String::from)
    .to_vec()
}

/// 16 MiB: enough for nearly every step, small enough that a runaway loop
/// does not flood watchers.
pub const DEFAULT_LOG_CAP: u64 = 16 << 20;

/// A cache to read from, and the token and TLS to read it with.
#[derive(Debug, Clone)]
pub struct CacheAccess {
    pub url: String,
    pub trust: buildfleet_trust::ClientTrust,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            scheduler: SchedulerConfig::default(),
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_misses: 5,
            history_dir: None,
            notify: Default::default(),
            persist_runs: true,
            secrets: Default::default(),
            log_cap: DEFAULT_LOG_CAP,
            artifact_retention: Duration::from_secs(30 * 24 * 3600),
            approvals_by_admins_only: false,
            protected_refs: default_protected_refs(),
            cache_metrics_url: None,
            artifact_cache: None,
        }
    }
}

impl CoordinatorConfig {
    pub fn validate(&self) -> Result<(), crate::error::CoordinatorError> {
        let bad = |m: &str| Err(crate::error::CoordinatorError::InvalidConfig(m.to_string()));
        if self.heartbeat_interval < Duration::from_millis(10) {
            return bad("heartbeat interval must be at least 10ms");
        }
        if self.heartbeat_misses == 0 {
            return bad("heartbeat misses must be at least 1");
        }
        if self.scheduler.label_wait.is_zero() {
            return bad("label wait must be positive");
        }
        if self.scheduler.stall_after.is_zero() {
            return bad("the stall time must be positive");
        }
        if self.notify.attempts == 0 {
            return bad("webhook attempts must be at least 1");
        }
        if let Err(e) = self.protected_set() {
            return bad(&format!("protected ref pattern: {e}"));
        }
        Ok(())
    }

    fn protected_set(&self) -> Result<globset::GlobSet, globset::Error> {
        let mut set = globset::GlobSetBuilder::new();
        for p in &self.protected_refs {
            set.add(
                globset::GlobBuilder::new(p)
                    .literal_separator(true)
                    .build()?,
            );
        }
        set.build()
    }

    /// The cache scope of a run on `git_ref` (checked patterns: `validate`
    /// ran before any run is submitted).
    pub fn cache_scope(&self, git_ref: &str) -> buildfleet_model::CacheScope {
        let protected =
            !git_ref.is_empty() && self.protected_set().is_ok_and(|s| s.is_match(git_ref));
        buildfleet_model::CacheScope::for_ref(git_ref, protected)
    }

    pub(crate) fn runner_deadline(&self) -> Duration {
        self.heartbeat_interval * self.heartbeat_misses
    }
}
