//! Per-shard cgroups: each shard in a cgroup of its own, so that it can be
//! killed as a unit (nothing escapes a cgroup the way `setsid` escapes a
//! process group), its OOM kills are counted apart from its neighbours',
//! and a step's `resources:` become real limits.
//!
//! cgroup v2 gives all three where the runner's cgroup is writable and its
//! memory and cpu controllers are delegated. Hybrid hosts (v2 mounted
//! without controllers, v1 holding `memory` and `cpu`) still get kill-as-a-
//! unit from v2 and limits and OOM counts from v1. Whatever is missing is
//! said once, when the runner starts, in its log and in `ListRunners`; a
//! step asking for a limit the runner cannot enforce is told so in its log.

mod detect;
mod setup;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::warn;

pub use buildfleet_model::Resources;

/// The scheduler period cpu quotas are expressed in (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// What this runner can do for its shards, found once at start.
#[derive(Debug, Default)]
pub struct Isolation {
    /// cgroup v2 directory holding one child per running shard.
    v2: Option<PathBuf>,
    /// Whether this kernel kills a v2 cgroup at once (`cgroup.kill`, 5.14+).
    v2_kill: bool,
    v2_memory: bool,
    v2_cpu: bool,
    /// v1 directories for the same, where v2 lacks the controller.
    v1_memory: Option<PathBuf>,
    v1_cpu: Option<PathBuf>,
    /// One sentence per capability that is missing, and why.
    gaps: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A name usable as a cgroup directory (runner names are free text).
fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Isolation {
    /// One line for the runner's log and `ListRunners`.
    pub fn describe(&self) -> String {
        let mut have = Vec::new();
        if let Some(d) = &self.v2 {
            have.push(format!(
                "a cgroup per shard under {} (killed as a unit)",
                d.display()
            ));
        }
        let source = |v2: bool, v1: &Option<PathBuf>| match (v2, v1) {
            (true, _) => Some("cgroup v2"),
            (false, Some(_)) => Some("cgroup v1"),
            _ => None,
        };
        if let Some(s) = source(self.v2_memory, &self.v1_memory) {
            have.push(format!("memory limits and OOM counts per shard ({s})"));
        }
        if let Some(s) = source(self.v2_cpu, &self.v1_cpu) {
            have.push(format!("cpu limits per shard ({s})"));
        }
        let mut line = if have.is_empty() {
            "no per-shard cgroups".to_owned()
        } else {
            have.join("; ")
        };
        if !self.gaps.is_empty() {
            line.push_str(&format!(" — missing: {}", self.gaps.join("; ")));
        }
        line
    }

    /// A fresh cgroup (in every usable hierarchy) for one shard, with its
    /// limits set. The notes say which requested limits are not enforced.
    pub fn shard(&self, id: &str, resources: &Resources) -> (ShardCgroup, Vec<String>) {
        let mut cg = ShardCgroup::default();
        let mut notes = Vec::new();
        let name = format!("shard-{}", dir_name(id));
        let mut make = |base: &Option<PathBuf>, what: &str| -> Option<PathBuf> {
            let dir = base.as_ref()?.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => Some(dir),
                Err(e) => {
                    notes.push(format!(
                        "no {what} cgroup for this shard ({}: {e})",
                        dir.display()
                    ));
                    None
                }
            }
        };
        cg.v2 = make(&self.v2, "cgroup v2");
        // Joining a cgroup costs the shell a migration (an RCU grace period
        // at worst): memory is worth it for every shard (OOM kills counted
        // per shard), a v1 cpu cgroup only for a step that asks for a limit.
        if !self.v2_memory {
            cg.v1_memory = make(&self.v1_memory, "memory");
        }
        if !self.v2_cpu && resources.cpu_millis.is_some() {
            cg.v1_cpu = make(&self.v1_cpu, "cpu");
        }
        if let Some(bytes) = resources.memory_bytes {
            let set = match (&cg.v2, self.v2_memory, &cg.v1_memory) {
                (Some(d), true, _) => write(&d.join("memory.max"), &bytes.to_string()),
                (_, _, Some(d)) => write(&d.join("memory.limit_in_bytes"), &bytes.to_string()),
                _ => Err(std::io::Error::other(
                    "this runner has no memory controller",
                )),
            };
            if let Err(e) = set {
                notes.push(format!(
                    "resources: memory {} is NOT enforced: {e}",
                    bytesize::ByteSize(bytes).display().iec()
                ));
            }
        }
        if let Some(millis) = resources.cpu_millis {
            let quota = u64::from(millis) * CPU_PERIOD_US / 1000;
            let set = match (&cg.v2, self.v2_cpu, &cg.v1_cpu) {
                (Some(d), true, _) => {
                    write(&d.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))
                }
                (_, _, Some(d)) => write(&d.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())
                    .and_then(|_| write(&d.join("cpu.cfs_quota_us"), &quota.to_string())),
                _ => Err(std::io::Error::other("this runner has no cpu controller")),
            };
            if let Err(e) = set {
                notes.push(format!(
                    "resources: cpus {} is NOT enforced: {e}",
                    f64::from(millis) / 1000.0
                ));
            }
        }
        cg.memory_events = match (&cg.v2, self.v2_memory, &cg.v1_memory) {
            (Some(d), true, _) => Some(d.join("memory.events")),
            (_, _, Some(d)) => Some(d.join("memory.oom_control")),
            _ => None,
        };
        (cg, notes)
    }

    /// Removes this runner's directories (empty by now) when it stops.
    pub fn remove(&self) {
        for dir in [&self.v2, &self.v1_memory, &self.v1_cpu]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::fs::remove_dir(dir) {
                warn!(dir = %dir.display(), error = %e, "runner cgroup not removed");
            }
        }
    }
}

/// Where this process's own cgroup counts OOM kills: `memory.events` (v2)
/// or `memory.oom_control` (v1), whichever has an `oom_kill` line.
pub fn own_oom_counter() -> Option<PathBuf> {
    let own = read(Path::new("/proc/self/cgroup"));
    let mounts = detect::mounts(&read(Path::new("/proc/self/mountinfo")));
    let v2 = detect::own_v2_dir(&own, &mounts).map(|d| d.join("memory.events"));
    let v1 = detect::own_v1_dir(&own, &mounts, "memory").map(|d| d.join("memory.oom_control"));
    [v2, v1]
        .into_iter()
        .flatten()
        .find(|p| crate::oom::parse_oom_kill(&read(p)).is_some())
}

/// A control-file write whose error names the file and the value.
fn write(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", path.display()),
        )
    })
}

/// What [`ShardCgroup::clear`] found and left.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    pub left: usize,
    pub remaining: usize,
}

/// One shard's cgroups; empty where the runner has none.
#[derive(Debug, Default)]
pub struct ShardCgroup {
    v2: Option<PathBuf>,
    v1_memory: Option<PathBuf>,
    v1_cpu: Option<PathBuf>,
    /// Where the kernel counts this shard's OOM kills.
    memory_events: Option<PathBuf>,
}

impl ShardCgroup {
    /// Every directory the shard's shell joins.
    pub fn dirs(&self) -> Vec<PathBuf> {
        [&self.v2, &self.v1_memory, &self.v1_cpu]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// Where this shard's OOM kills are counted, if anywhere.
    pub fn memory_events(&self) -> Option<&Path> {
        self.memory_events.as_deref()
    }

    /// Kills whatever is still in the shard's cgroups and waits (bounded)
    /// until they are empty: how many processes were left, and how many of
    /// them are still there after the kill (none, unless it failed).
    pub async fn clear(&self) -> Cleared {
        let mut cleared = Cleared::default();
        for dir in self.dirs() {
            let pids = procs_in(&dir);
            if pids.is_empty() {
                continue;
            }
            cleared.left = cleared.left.max(pids.len());
            if dir.join("cgroup.kill").exists() {
                if let Err(e) = std::fs::write(dir.join("cgroup.kill"), "1") {
                    warn!(dir = %dir.display(), error = %e, "cgroup.kill failed");
                }
            } else {
                for pid in pids {
                    // Gone already is the goal; a failure shows in `remaining`.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        let remaining = || {
            self.dirs()
                .iter()
                .map(|d| procs_in(d).len())
                .max()
                .unwrap_or(0)
        };
        while remaining() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cleared.remaining = remaining();
        cleared
    }

    /// Removes the shard's directories; a cgroup that still holds a process
    /// cannot be removed and is left (said in the runner's log).
    pub fn remove(self) {
        for dir in self.dirs() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                warn!(dir = %dir.display(), error = %e, "shard cgroup not removed");
            }
        }
    }
}

fn procs_in(dir: &Path) -> Vec<i32> {
    read(&dir.join("cgroup.procs"))
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe_for_directories() {
        assert_eq!(dir_name("runner 1/a"), "runner_1_a");
        assert_eq!(dir_name("r-2"), "r-2");
    }

    #[test]
    fn limits_go_to_the_controller_that_exists_and_missing_ones_are_said() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory");
        std::fs::create_dir(&v1).unwrap();
        let iso = Isolation {
            v1_memory: Some(v1.clone()),
            ..Isolation::default()
        };
        let (cg, notes) = iso.shard(
            "lease/1",
            &Resources {
                memory_bytes: Some(64 << 20),
                cpu_millis: Some(1500),
            },
        );
        let dir = v1.join("shard-lease_1");
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(cg.dirs(), std::slice::from_ref(&dir));
        assert_eq!(
            cg.memory_events(),
            Some(dir.join("memory.oom_control").as_path())
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("cpus 1.5 is NOT enforced") && notes[0].contains("no cpu controller"),
            "{notes:?}"
        );
        let none = Isolation::default();
        assert!(none.describe().starts_with("no per-shard cgroups"));
        assert!(iso
            .describe()
            .contains("memory limits and OOM counts per shard (cgroup v1)"));
    }
}
