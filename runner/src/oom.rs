//! Telling an OOM kill from any other SIGKILL: the kernel counts its kills
//! in the cgroup's `memory.events` (cgroup v2) or `memory.oom_control`
//! (v1), as `oom_kill N`. The count is
//! read before and after a shard; if it rose while the shard died of
//! SIGKILL that buildfleet did not send, the shard is reported as killed
//! by the OOM killer rather than as an unexplained signal.

use std::path::PathBuf;

/// The runner's `memory.events` and its `oom_kill` count when read.
pub struct OomWatch {
    path: Option<PathBuf>,
    before: u64,
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Where this process's cgroup counts OOM kills: `memory.events` (v2) or
/// `memory.oom_control` (v1), both with an `oom_kill N` line.
fn events_path() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut candidates = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, rel) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = rel.trim_start_matches('/');
        if controllers.is_empty() {
            for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
                candidates.push(PathBuf::from(root).join(rel).join("memory.events"));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            candidates.push(
                PathBuf::from("/sys/fs/cgroup/memory")
                    .join(rel)
                    .join("memory.oom_control"),
            );
        }
    }
    candidates
        .into_iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| parse_oom_kill(&t).is_some()))
}

impl OomWatch {
    pub fn start() -> OomWatch {
        let path = events_path();
        let before = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| parse_oom_kill(&t))
            .unwrap_or(0);
        OomWatch { path, before }
    }

    /// OOM kills in the cgroup since `start`; `None` if they cannot be read.
    pub fn kills_since(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.path.as_ref()?).ok()?;
        Some(parse_oom_kill(&text)?.saturating_sub(self.before))
    }
}

/// The reason a shard killed by `signal` gets, when buildfleet did not send it.
pub fn explain_signal(signal: i32, watch: &OomWatch) -> String {
    if signal != 9 {
        return String::new();
    }
    match watch.kills_since() {
        Some(n) if n > 0 => format!(
            "killed by the kernel's OOM killer (oom_kill +{n} in the runner's cgroup): the step ran out of memory"
        ),
        Some(_) => "killed by SIGKILL from outside buildfleet (no OOM kill was counted in the runner's cgroup)".into(),
        None => "killed by SIGKILL from outside buildfleet (OOM kills cannot be counted here: no cgroup v2 memory.events)".into(),
    }
}

/// For a shell that exited 137 (its child died of SIGKILL): the OOM
/// reason if the cgroup counted a kill meanwhile, else nothing (137 may be
/// the program's own exit code).
pub fn explain_exit(code: i32, watch: &OomWatch) -> Option<String> {
    (code == 128 + 9 && watch.kills_since().is_some_and(|n| n > 0))
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
        let watch = OomWatch::start();
        if std::path::Path::new("/sys/fs/cgroup").exists() {
            assert!(watch.kills_since().is_some(), "no oom_kill counter found");
        }
    }

    #[test]
    fn a_sigkill_is_explained_either_way_and_other_signals_are_left_alone() {
        let watch = OomWatch::start();
        let why = explain_signal(9, &watch);
        assert!(why.contains("SIGKILL") || why.contains("OOM"), "{why}");
        assert_eq!(explain_signal(15, &watch), "");
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "oom_kill 1\n").unwrap();
        let fake = OomWatch {
            path: Some(file.path().to_path_buf()),
            before: 1,
        };
        assert!(explain_signal(9, &fake).contains("no OOM kill"));
        std::fs::write(file.path(), "oom_kill 3\n").unwrap();
        assert!(explain_signal(9, &fake).contains("OOM killer (oom_kill +2"));
    }
}
