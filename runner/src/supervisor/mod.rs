//! The shard supervisor: a small process between the runner and each
//! shard's shell, started as a hidden subcommand of the same binary (like
//! containerd's shim).
//!
//! Why it exists: a parent-death signal only reaches the one process it is
//! set on. When a runner is `kill -9`ed, its shells can be told to die, but
//! their children — a backgrounded subshell, the `docker push` in a
//! pipeline — would live on while the coordinator leases the shard again
//! elsewhere, and the push would happen twice. The supervisor is what
//! outlives the runner just long enough to end the shard's whole tree:
//!
//! - it leads the shard's process group (the runner signals the group for
//!   timeouts and cancels, as before) and is a child subreaper, so every
//!   process the shard starts stays its descendant, even a double-forked
//!   daemon that left the group;
//! - it gets SIGUSR1 when the runner dies (parent-death signal), checks the
//!   runner is really gone, and kills the shard's cgroup (where the runner
//!   made one) and every descendant, repeating until none is left;
//! - SIGUSR2 from the runner means "kill the shard now" (the SIGKILL stage
//!   of a timeout), which reaches processes outside the group as well;
//! - when the shell exits on its own, it kills what the shell left behind,
//!   says so, and exits with the shell's own status.
//!
//! It stays the runner's user (so it can kill whatever the shard becomes),
//! and starts the shell as the shard's step user when given one
//! (`--uid`/`--gid`, see [`crate::step_users`]): after joining the cgroups
//! (which needs the runner's rights), supplementary groups dropped, group
//! then user set, and only then the parent-death signal, which a change of
//! credentials clears.
//!
//! It reports to the runner on file descriptor 3: one line per message,
//! `note TEXT` for the shard's log and `error TEXT` when it could not start
//! the shell at all.

pub mod procs;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::libc;
use nix::sys::signal::{SigSet, Signal};

use procs::Ended;

/// The hidden subcommand that runs [`main`].
pub const SUBCOMMAND: &str = "__shard-supervisor";

/// The file descriptor the runner reads the supervisor's messages from.
pub const REPORT_FD: i32 = 3;

/// How long a kill sweep may take before it gives up on a process that
/// keeps forking faster than it is killed (it says so).
const SWEEP_BOUND: Duration = Duration::from_secs(5);

/// Exit status when the runner vanished before the shell could start.
const ORPHANED: i32 = 125;

/// What the runner asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    /// The runner's pid: if our parent is ever someone else, it died.
    pub parent: i32,
    /// cgroup directories the shell joins before it runs anything.
    pub cgroups: Vec<PathBuf>,
    /// The uid and gid the shell runs as; `None`: the supervisor's own.
    pub user: Option<(u32, u32)>,
    /// The shell and its arguments.
    pub program: Vec<OsString>,
}

/// A command line the supervisor cannot work with (only a runner starts
/// it; a person running it by hand gets told).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("missing `--` before the program")]
    NoSeparator,
    #[error("{0} needs a value")]
    NoValue(&'static str),
    #[error("--parent {0:?} is not a pid")]
    BadPid(OsString),
    #[error("{0} {1:?} is not a number")]
    BadId(&'static str, OsString),
    #[error("--uid and --gid go together")]
    HalfUser,
    #[error("unknown argument {0:?}")]
    Unknown(OsString),
    #[error("no program after `--`")]
    NoProgram,
    #[error("--parent is required")]
    NoParent,
}

impl Args {
    pub fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, UsageError> {
        let mut parent = None;
        let mut cgroups = Vec::new();
        let (mut uid, mut gid) = (None, None);
        let id = |flag: &'static str, args: &mut dyn Iterator<Item = OsString>| {
            let value = args.next().ok_or(UsageError::NoValue(flag))?;
            value
                .to_str()
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or(UsageError::BadId(flag, value))
        };
        loop {
            let arg = args.next().ok_or(UsageError::NoSeparator)?;
            match arg.to_str() {
                Some("--") => break,
                Some("--parent") => {
                    let value = args.next().ok_or(UsageError::NoValue("--parent"))?;
                    parent = Some(
                        value
                            .to_str()
                            .and_then(|v| v.parse().ok())
                            .ok_or(UsageError::BadPid(value))?,
                    );
                }
                Some("--cgroup") => {
                    cgroups.push(args.next().ok_or(UsageError::NoValue("--cgroup"))?.into())
                }
                Some("--uid") => uid = Some(id("--uid", &mut args)?),
                Some("--gid") => gid = Some(id("--gid", &mut args)?),
                _ => return Err(UsageError::Unknown(arg)),
            }
        }
        let program: Vec<OsString> = args.collect();
        if program.is_empty() {
            return Err(UsageError::NoProgram);
        }
        let user = match (uid, gid) {
            (Some(uid), Some(gid)) => Some((uid, gid)),
            (None, None) => None,
            _ => return Err(UsageError::HalfUser),
        };
        Ok(Args {
            parent: parent.ok_or(UsageError::NoParent)?,
            cgroups,
            user,
            program,
        })
    }
}

/// Messages to the runner; silently absent when fd 3 was not passed (run
/// by hand), since there is nobody to tell.
struct Report(Option<File>);

impl Report {
    fn open() -> Report {
        // SAFETY: fcntl on a descriptor number that may not exist only
        // returns an error; we take ownership only if it is open.
        let open = unsafe { nix::libc::fcntl(REPORT_FD, nix::libc::F_GETFD) } >= 0;
        if !open {
            return Report(None);
        }
        // SAFETY: the descriptor is open and nobody else in this process owns it.
        let file = unsafe { File::from_raw_fd(REPORT_FD) };
        // The shell must not inherit it: a leftover holding it open would
        // keep the runner waiting for our last message.
        let _ = nix::fcntl::fcntl(
            file.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        Report(Some(file))
    }

    fn send(&mut self, kind: &str, text: &str) {
        if let Some(f) = &mut self.0 {
            // A runner that is gone cannot read it; that is not our failure.
            let _ = writeln!(f, "{kind} {}", text.replace('\n', " "));
        }
    }
}

/// The signals the supervisor takes synchronously. Blocked here, and
/// unblocked again in the shell before it starts.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
        // Job-control stops sent to the group must not freeze the one
        // process that cleans up after it.
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        set.add(s);
    }
    set
}

/// The supervisor's whole life; returns only when it must exit with this
/// code (a shell killed by a signal is mirrored by dying of it instead).
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let mut report = Report::open();
    let args = match Args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            report.send("error", &format!("shard supervisor: {e}"));
            eprintln!("buildfleet {SUBCOMMAND}: {e}");
            return 2;
        }
    };
    let set = handled();
    if let Err(e) = set.thread_block() {
        report.send(
            "error",
            &format!("shard supervisor cannot block signals: {e}"),
        );
        return 2;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        report.send(
            "error",
            &format!("shard supervisor cannot become a subreaper: {e}"),
        );
        return 2;
    }
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Some(Signal::SIGUSR1)) {
        report.send(
            "error",
            &format!("shard supervisor cannot watch its runner: {e}"),
        );
        return 2;
    }
    // The runner may have died between fork and the line above.
    if nix::unistd::getppid().as_raw() != args.parent {
        return ORPHANED;
    }
    let me = std::process::id() as i32;
    let shell = match spawn(&args) {
        Ok(pid) => pid,
        Err(e) => {
            let program = args.program[0].to_string_lossy();
            report.send("error", &format!("could not start {program}: {e}"));
            return 127;
        }
    };
    supervise(&args, me, shell, &set, &mut report)
}

/// Starts the shell in our process group, with default signal handling,
/// inside the shard's cgroups, as the step user if there is one, and dying
/// if we die.
fn spawn(args: &Args) -> std::io::Result<i32> {
    let mut cmd = std::process::Command::new(&args.program[0]);
    cmd.args(&args.program[1..]);
    let cgroups: Vec<PathBuf> = args
        .cgroups
        .iter()
        .map(|d| d.join("cgroup.procs"))
        .collect();
    let user = args.user;
    // SAFETY: the supervisor is single-threaded, so the child may allocate
    // between fork and exec; everything here only affects the child.
    unsafe {
        cmd.pre_exec(move || {
            SigSet::empty().thread_set_mask()?;
            for procs in &cgroups {
                // "0" is the writing process: the shell joins before it
                // can start anything, so nothing escapes the cgroup.
                std::fs::write(procs, "0").map_err(|e| {
                    std::io::Error::new(e.kind(), format!("joining {}: {e}", procs.display()))
                })?;
            }
            if let Some((uid, gid)) = user {
                become_user(uid, gid)?;
            }
            // After the switch: a change of credentials clears it.
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL))?;
            Ok(())
        });
    }
    Ok(cmd.spawn()?.id() as i32)
}

/// Drops to the step user for good: no supplementary groups, then the
/// group, then the user (after which nothing can be changed back), checked.
fn become_user(uid: u32, gid: u32) -> std::io::Result<()> {
    use nix::unistd::{Gid, Uid};
    let fail = |what: &str, e: nix::errno::Errno| {
        std::io::Error::new(
            std::io::Error::from(e).kind(),
            format!("{what} (uid {uid}, gid {gid}): {e}"),
        )
    };
    nix::unistd::setgroups(&[]).map_err(|e| fail("dropping supplementary groups", e))?;
    nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| fail("switching group", e))?;
    nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| fail("switching user", e))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() && uid != 0 {
        return Err(std::io::Error::other(format!(
            "switched to uid {uid} but could become root again"
        )));
    }
    Ok(())
}

/// Kills every process of a cgroup v2 directory at once (`cgroup.kill`);
/// v1 directories have no such file and are covered by the sweep.
fn kill_cgroups(args: &Args) {
    for dir in &args.cgroups {
        let file = dir.join("cgroup.kill");
        if file.exists() {
            let _ = std::fs::write(file, "1");
        }
    }
}

fn supervise(args: &Args, me: i32, shell: i32, set: &SigSet, report: &mut Report) -> i32 {
    let mut status: Option<Ended> = None;
    let mut kill_now = false;
    loop {
        // Other signals need no action of their own: SIGCHLD (reaped
        // below), the parent-death signal (checked below), and the group's
        // SIGTERM/SIGINT/SIGHUP, which the shell got as well.
        if wait_signal(set, Duration::from_secs(1)) == Some(Signal::SIGUSR2) {
            kill_now = true;
        }
        for (pid, st) in procs::reap() {
            if pid == shell {
                status = Some(st);
            }
        }
        if nix::unistd::getppid().as_raw() != args.parent {
            // The runner is gone and its lease with it: nothing of this
            // shard may go on working behind the retry that replaces it.
            kill_cgroups(args);
            procs::sweep(me, me, SWEEP_BOUND);
            return ORPHANED;
        }
        if kill_now {
            kill_cgroups(args);
            let swept = procs::sweep(me, me, SWEEP_BOUND);
            status = status.or_else(|| shell_status(&swept, shell));
            if status.is_none() {
                continue;
            }
        }
        let Some(st) = status else { continue };
        let swept = procs::sweep(me, me, SWEEP_BOUND);
        if !kill_now && !swept.killed.is_empty() {
            let mut text = format!(
                "the shell exited but {} process(es) it started were still running (background jobs?): killed",
                swept.killed.len()
            );
            if swept.outside_group > 0 {
                text.push_str(&format!(
                    "; {} of them had left the shard's process group (setsid?)",
                    swept.outside_group
                ));
            }
            report.send("note", &text);
        }
        if !swept.not_ours.is_empty() {
            report.send(
                "note",
                &format!(
                    "{} process(es) started by the shard could not be killed: they are not ours to signal (another user's, e.g. through sudo)",
                    swept.not_ours.len()
                ),
            );
        }
        if swept.survivors > 0 {
            report.send(
                "note",
                &format!(
                    "{} process(es) of the shard were still being created after {SWEEP_BOUND:?} of killing (a fork bomb?)",
                    swept.survivors
                ),
            );
        }
        return mirror(st);
    }
}

fn shell_status(swept: &procs::Swept, shell: i32) -> Option<Ended> {
    swept
        .reaped
        .iter()
        .find(|(pid, _)| *pid == shell)
        .map(|(_, st)| *st)
}

/// The next of `set`'s signals, or `None` after `timeout`.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = nix::libc::timespec {
        tv_sec: timeout.as_secs() as nix::libc::time_t,
        tv_nsec: timeout.subsec_nanos() as nix::libc::c_long,
    };
    // SAFETY: `set` is a valid sigset_t and `ts` lives across the call.
    let n = unsafe { nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    Signal::try_from(n).ok()
}

/// Ends this process the way the shell ended, so the runner reads the
/// shell's own exit code or signal (any signal number, real-time included).
fn mirror(ended: Ended) -> i32 {
    match ended {
        Ended::Exited(code) => code,
        Ended::Signalled(signal) => {
            // No core file of ours for a shell that dumped core.
            let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
            // SAFETY: restoring a signal's default action, unblocking it and
            // raising it only affect this process, which is about to end.
            unsafe {
                libc::signal(signal, libc::SIG_DFL);
                let mut only: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut only);
                libc::sigaddset(&mut only, signal);
                libc::pthread_sigmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
                libc::raise(signal);
            }
            128 + signal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> impl Iterator<Item = OsString> {
        args.iter()
            .map(OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn arguments_parse_and_mistakes_are_named() {
        let a = Args::parse(os(&[
            "--parent", "42", "--cgroup", "/cg/a", "--cgroup", "/cg/b", "--", "bash", "-c", "true",
        ]))
        .unwrap();
        assert_eq!(a.parent, 42);
        assert_eq!(a.cgroups, [PathBuf::from("/cg/a"), PathBuf::from("/cg/b")]);
        assert_eq!(a.user, None);
        let u = Args::parse(os(&[
            "--parent", "1", "--uid", "100000", "--gid", "7", "--", "bash",
        ]))
        .unwrap();
        assert_eq!(u.user, Some((100000, 7)));
        assert_eq!(
            Args::parse(os(&["--parent", "1", "--uid", "5", "--", "bash"])),
            Err(UsageError::HalfUser)
        );
        assert_eq!(
            Args::parse(os(&["--parent", "1", "--gid", "x", "--", "bash"])),
            Err(UsageError::BadId("--gid", "x".into()))
        );
        assert_eq!(
            a.program,
            [OsString::from("bash"), "-c".into(), "true".into()]
        );
        assert_eq!(Args::parse(os(&["--", "bash"])), Err(UsageError::NoParent));
        assert_eq!(
            Args::parse(os(&["--parent", "x", "--", "bash"])),
            Err(UsageError::BadPid("x".into()))
        );
        assert_eq!(
            Args::parse(os(&["--parent", "1", "--"])),
            Err(UsageError::NoProgram)
        );
        assert_eq!(
            Args::parse(os(&["--bogus"])),
            Err(UsageError::Unknown("--bogus".into()))
        );
        assert_eq!(
            UsageError::NoValue("--parent").to_string(),
            "--parent needs a value"
        );
    }
}
