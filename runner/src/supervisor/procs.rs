//! The process table as the supervisor needs it: who descends from whom,
//! and killing every descendant until none is left.
//!
//! A shard's processes are found by ancestry rather than by process group
//! alone, because a process can leave the group (`setsid`, `setpgid`) but not
//! its ancestry: the supervisor is a child subreaper, so even a
//! double-forked daemon is re-parented to it and stays its descendant.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nix::libc;

/// One line of `/proc/PID/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// `Z` for a zombie: dead, only waiting to be reaped.
    pub state: char,
    /// Clock ticks after boot: with the pid, the identity of a process
    /// (a pid can be reused; a pid and its start time cannot).
    pub start: u64,
}

/// Parses `/proc/PID/stat`. The command name is in parentheses and may
/// itself contain spaces and parentheses, so fields are read after the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // After the name: state(3) ppid(4) pgrp(5) … starttime(22).
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn stat_of(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process visible in `/proc` (processes that exit while it is read
/// are simply missing).
pub fn table() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat_of)
        .collect()
}

/// Live (not zombie) descendants of `root`, and members of process group
/// `group`, other than `root` itself.
pub fn shard_processes(procs: &[ProcStat], root: i32, group: i32) -> Vec<ProcStat> {
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
    found.remove(&root);
    procs
        .iter()
        .filter(|p| found.contains(&p.pid) && p.state != 'Z')
        .copied()
        .collect()
}

/// How a child ended, from the raw wait status: every signal number the
/// kernel can report, real-time ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signalled(i32),
}

/// Reaps every exited child without blocking; returns each one's pid and
/// end, so the caller can recognise its own shell among them.
pub fn reap() -> Vec<(i32, Ended)> {
    let mut out = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return out;
        }
        if libc::WIFEXITED(status) {
            out.push((pid, Ended::Exited(libc::WEXITSTATUS(status))));
        } else if libc::WIFSIGNALED(status) {
            out.push((pid, Ended::Signalled(libc::WTERMSIG(status))));
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

/// SIGKILLs the process `p` describes, and only that process: through a
/// pidfd, after checking the pid still belongs to the same process (start
/// time), so a pid reused since the table was read is never hit.
fn kill_exactly(p: &ProcStat) -> Result<(), i32> {
    // SAFETY: plain syscalls on integers; the fd is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid, 0) } as i32;
    if fd < 0 {
        let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        return match err {
            libc::ESRCH => Ok(()),
            // A kernel without pidfds (< 5.3): the plain signal.
            libc::ENOSYS => signal(p.pid),
            e => Err(e),
        };
    }
    let same = stat_of(p.pid).is_some_and(|now| now.start == p.start);
    let result = if same {
        // SAFETY: `fd` is the pidfd opened above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match r {
            0 => Ok(()),
            _ => match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                libc::ESRCH => Ok(()),
                e => Err(e),
            },
        }
    } else {
        Ok(())
    };
    // SAFETY: closing the fd we own.
    unsafe { libc::close(fd) };
    result
}

fn signal(pid: i32) -> Result<(), i32> {
    // SAFETY: kill(2) with a pid and a signal number.
    match unsafe { libc::kill(pid, libc::SIGKILL) } {
        0 => Ok(()),
        _ => match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
            libc::ESRCH => Ok(()),
            e => Err(e),
        },
    }
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Processes sent SIGKILL.
    pub killed: BTreeSet<i32>,
    /// Of those, how many had left the shard's process group.
    pub outside_group: usize,
    /// Processes we may not signal (another user's: `sudo`, setuid).
    pub not_ours: BTreeSet<i32>,
    /// Still alive when the bound ran out (a fork bomb outrunning us).
    pub survivors: usize,
    /// Exits reaped along the way, for the caller's own bookkeeping.
    pub reaped: Vec<(i32, Ended)>,
}

/// SIGKILLs every descendant of `me` and every member of group `group`,
/// pass after pass, until a pass finds none (or `bound` runs out), then
/// reaps them: nothing is left for whoever inherits our children.
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
        let live: Vec<ProcStat> = shard_processes(&table(), me, group)
            .into_iter()
            .filter(|p| !swept.not_ours.contains(&p.pid))
            .collect();
        if live.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            swept.survivors = live.len();
            return swept;
        }
        for p in &live {
            match kill_exactly(p) {
                Err(libc::EPERM) => {
                    swept.not_ours.insert(p.pid);
                }
                _ => {
                    if swept.killed.insert(p.pid) && p.pgrp != group {
                        swept.outside_group += 1;
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Killed, possibly not yet reaped: wait for them (bounded), so no
    // zombie passes to the runner when we exit.
    while has_children(me) != Some(false) && Instant::now() < deadline {
        swept.reaped.extend(reap());
        if has_children(me).is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    swept.reaped.extend(reap());
    swept
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
            start: 1,
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
        let stat = stat_of(child).unwrap();
        kill_exactly(&stat).unwrap();
        parent.wait().unwrap();
    }

    #[test]
    fn a_reused_pid_is_not_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut stat = stat_of(child.id() as i32).unwrap();
        stat.start += 1; // as if the pid now belonged to another process
        kill_exactly(&stat).unwrap();
        assert!(
            child.try_wait().unwrap().is_none(),
            "the process is untouched"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (my (odd) cmd) S 17 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 98765 1000 20";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.pid, s.ppid, s.pgrp, s.state, s.start),
            (4242, 17, 4242, 'S', 98765)
        );
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
        let found: Vec<i32> = shard_processes(&procs, 10, 10)
            .into_iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(found, [11, 12, 13, 21]);
    }

    #[test]
    fn a_shell_killed_by_a_real_time_signal_is_reaped_with_it() {
        let child = std::process::Command::new("bash")
            .args(["-c", "kill -s RTMIN+3 $$"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let rt = libc::SIGRTMIN() + 3;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((_, ended)) = reap().into_iter().find(|(p, _)| *p == pid) {
                assert_eq!(ended, Ended::Signalled(rt));
                break;
            }
            assert!(Instant::now() < deadline, "the child did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::mem::forget(child);
    }
}
