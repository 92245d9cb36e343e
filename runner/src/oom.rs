//! Telling an OOM kill from any other SIGKILL: the kernel counts its kills
//! in the cgroup's `memory.events` (cgroup v2) or `memory.oom_control`
//! (v1), as `oom_kill N`. The count is
//! read before and after a shard; if it rose while the shard died of
//! SIGKILL that buildfleet did not send, the shard is reported as killed
//! by the OOM killer rather than as an unexplained signal.
//!
//! Where the shard has a memory cgroup of its own, its counter is the one
//! read: a kill in a neighbouring shard of the same runner is not this
//! shard's. Without one, the runner's cgroup is all there is, and the
//! explanation says so.

use std::path::{Path, PathBuf};

/// Where a counter is and what it read when the shard started.
#[derive(Debug)]
struct Counter {
    path: PathBuf,
    before: u64,
}

impl Counter {
    fn at(path: PathBuf) -> Option<Counter> {
        let before = parse_oom_kill(&std::fs::read_to_string(&path).ok()?)?;
        Some(Counter { path, before })
    }

    fn since(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        Some(parse_oom_kill(&text)?.saturating_sub(self.before))
    }
}

/// The OOM counters of a shard's cgroup and of the runner's.
#[derive(Debug)]
pub struct OomWatch {
    shard: Option<Counter>,
    runner: Option<Counter>,
}

pub(crate) fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// The runner's own counter, found once: reading it is per shard, finding
/// it (mountinfo, cgroup paths) need not be. Found after the runner settled
/// its cgroup at start.
fn runner_counter() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND.get_or_init(crate::cgroup::own_oom_counter).clone()
}

impl OomWatch {
    /// Reads the counters now; `shard` is the shard cgroup's counter file.
    pub fn start(shard: Option<&Path>) -> OomWatch {
        OomWatch {
            shard: shard.and_then(|p| Counter::at(p.to_path_buf())),
            runner: runner_counter().and_then(Counter::at),
        }
    }

    /// OOM kills since `start`, and whose cgroup counted them; `None` if
    /// no counter can be read.
    pub fn kills_since(&self) -> Option<(u64, &'static str)> {
        if let Some(n) = self.shard.as_ref().and_then(Counter::since) {
            return Some((n, "the shard's cgroup"));
        }
        self.runner
            .as_ref()
            .and_then(Counter::since)
            .map(|n| (n, "the runner's cgroup"))
    }
}

/// The reason a shard killed by `signal` gets, when buildfleet did not send it.
pub fn explain_signal(signal: i32, watch: &OomWatch) -> String {
    if signal != 9 {
        return String::new();
    }
    match watch.kills_since() {
        Some((n, whose)) if n > 0 => format!(
            "killed by the kernel's OOM killer (oom_kill +{n} in {whose}): the step ran out of memory"
        ),
        Some((_, whose)) => format!("killed by SIGKILL from outside buildfleet (no OOM kill was counted in {whose})"),
        None => "killed by SIGKILL from outside buildfleet (OOM kills cannot be counted here: no cgroup memory counter)".into(),
    }
}

/// For a shell that exited 137 (its child died of SIGKILL): the OOM
/// reason if the cgroup counted a kill meanwhile, else nothing (137 may be
/// the program's own exit code).
pub fn explain_exit(code: i32, watch: &OomWatch) -> Option<String> {
    (code == 128 + 9 && watch.kills_since().is_some_and(|(n, _)| n > 0))
        .then(|| explain_signal(9, watch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counts_are_read_from_memory_events() {
        let text = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(text), Some(2));
        assert_eq!(parse_oom_kill("low 0\n"), None);
    }

    #[test]
    fn this_machines_cgroup_counter_is_found() {
        // Every Linux host this runs on has one or the other; a runner that
        // cannot find it says so in each explanation instead.
        let watch = OomWatch::start(None);
        if std::path::Path::new("/sys/fs/cgroup").exists() {
            assert!(watch.kills_since().is_some(), "no oom_kill counter found");
        }
    }

    #[test]
    fn a_sigkill_is_explained_either_way_and_other_signals_are_left_alone() {
        let watch = OomWatch::start(None);
        assert_eq!(explain_signal(15, &watch), "");
        let shard = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(shard.path(), "oom_kill 1\n").unwrap();
        let watch = OomWatch::start(Some(shard.path()));
        assert!(
            explain_signal(9, &watch).contains("no OOM kill was counted in the shard's cgroup"),
            "a neighbour's kill in the runner's cgroup does not count"
        );
        std::fs::write(shard.path(), "oom_kill 3\n").unwrap();
        assert!(
            explain_signal(9, &watch).contains("OOM killer (oom_kill +2 in the shard's cgroup)")
        );
    }
}
