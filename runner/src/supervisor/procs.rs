//! The process table as the supervisor needs it: who descends from whom,
//! and killing every descendant until none is left.
//!
//! A shard's processes are found by ancestry rather than by process group
//! alone, because a process can leave the group (`setsid`, `setpgid`) but not
//! its ancestry: the supervisor is a child subreaper, so even a
//! double-forked daemon is re-parented to it and stays its descendant.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// One line of `/proc/PID/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// `Z` for a zombie: dead, only waiting to be reaped.
    pub state: char,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may
/// itself contain spaces and parentheses, so fields are read after the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let mut fields = tail.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat {
        pid,
        ppid,
        pgrp,
        state,
    })
}

/// Every process visible in `/proc` (processes that exit while it is read
/// are simply missing).
pub fn table() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|t| parse_stat(&t))
        .collect()
}

/// Live (not zombie) descendants of `root`, and members of process group
/// `group`, other than `root` itself.
pub fn shard_processes(procs: &[ProcStat], root: i32, group: i32) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            if found.insert(child) {
                stack.push(child);
            }
        }
    }
    found.extend(procs.iter().filter(|p| p.pgrp == group).map(|p| p.pid));
    let zombies: BTreeSet<i32> = procs
        .iter()
        .filter(|p| p.state == 'Z')
        .map(|p| p.pid)
        .collect();
    found.remove(&root);
    found.retain(|p| !zombies.contains(p));
    found
}

/// Reaps every exited child without blocking; returns `(pid, status)` of
/// each, so the caller can recognise its own shell among them.
pub fn reap() -> Vec<(i32, WaitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return out,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    out.push((pid.as_raw(), status));
                }
            }
        }
    }
}

/// Whether process `me` (single-threaded) has any child now, from
/// `/proc/PID/task/PID/children`; `None` where the kernel does not offer
/// that file. Once the shell is reaped, every process the shard left is a
/// descendant of a child of ours (orphans come to us as subreaper), so "no
/// child" means nothing to sweep, without reading the whole process table.
pub fn has_children(me: i32) -> Option<bool> {
    let text = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    Some(!text.trim().is_empty())
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Processes sent SIGKILL.
    pub killed: BTreeSet<i32>,
    /// Of those, how many had left the shard's process group.
    pub outside_group: usize,
    /// Still alive when the bound ran out (a fork bomb outrunning us).
    pub survivors: usize,
    /// Exits reaped along the way, for the caller's own bookkeeping.
    pub reaped: Vec<(i32, WaitStatus)>,
}

/// SIGKILLs every descendant of `me` and every member of group `group`,
/// pass after pass, until a pass finds none (or `bound` runs out). New
/// processes forked during a pass are caught by the next one.
pub fn sweep(me: i32, group: i32, bound: Duration) -> Swept {
    let deadline = Instant::now() + bound;
    let mut swept = Swept::default();
    loop {
        swept.reaped.extend(reap());
        // The common case — the shard left nothing behind — costs one
        // read. (A process that joined the group from elsewhere without
        // descending from us is left to the runner's own group check.)
        if has_children(me) == Some(false) {
            return swept;
        }
        let procs = table();
        let live = shard_processes(&procs, me, group);
        if live.is_empty() {
            return swept;
        }
        if Instant::now() >= deadline {
            swept.survivors = live.len();
            return swept;
        }
        for &pid in &live {
            if swept.killed.insert(pid) {
                let outside = procs.iter().any(|p| p.pid == pid && p.pgrp != group);
                swept.outside_group += usize::from(outside);
            }
            // Already gone is fine: that is the goal.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, pgrp: i32, state: char) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            pgrp,
            state,
        }
    }

    #[test]
    fn children_are_seen_without_the_process_table() {
        use std::io::BufRead;
        // A single-threaded parent (bash) with one child, and that child.
        let mut parent = std::process::Command::new("bash")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(parent.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let child: i32 = line.trim().parse().unwrap();
        assert_eq!(has_children(parent.id() as i32), Some(true));
        assert_eq!(has_children(child), Some(false));
        let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
        parent.wait().unwrap();
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let s = parse_stat("4242 (my (odd) cmd) S 17 4242 4242 0 -1 4194560 ...").unwrap();
        assert_eq!(s, p(4242, 17, 4242, 'S'));
        assert_eq!(parse_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert_eq!(parse_stat(&own).unwrap().pid, std::process::id() as i32);
    }

    #[test]
    fn descendants_and_group_members_count_but_not_zombies_or_strangers() {
        let procs = [
            p(10, 1, 10, 'S'),  // the supervisor
            p(11, 10, 10, 'S'), // its shell
            p(12, 11, 10, 'S'), // a background job
            p(13, 10, 13, 'S'), // a setsid'd daemon re-parented to it
            p(14, 13, 13, 'Z'), // a dead child of the daemon
            p(20, 1, 20, 'S'),  // unrelated
            p(21, 1, 10, 'S'),  // in the group without being a descendant
        ];
        let found: Vec<i32> = shard_processes(&procs, 10, 10).into_iter().collect();
        assert_eq!(found, [11, 12, 13, 21]);
    }
}
