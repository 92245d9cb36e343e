//! Process-group signalling and reaping.
//!
//! Every shard runs as the leader of its own process group, so "the shard" is
//! the group, not just the `bash` we spawned: background jobs and
//! grandchildren share the group id and can be signalled together with
//! `killpg`. The leader's exit is not the end of the shard; anything still in
//! the group afterwards is a leftover that would keep consuming CPU, hold
//! output pipes open, or interfere with the next shard, so it is killed.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::ExecError;

/// How long to wait for killed leftovers to disappear from the process table.
///
/// SIGKILL is delivered immediately, but a killed process is only gone once
/// its parent reaps it; this bounds how long we wait for that.
const GONE_BOUND: Duration = Duration::from_secs(2);

/// Polling interval while waiting for a group to empty; there is no
/// notification for "process group became empty".
const GONE_POLL: Duration = Duration::from_millis(10);

/// Make this process the child subreaper for its descendants (Linux only).
///
/// When a shard's `bash` exits, its background jobs are re-parented. Without a
/// subreaper they go to PID 1, and if PID 1 does not reap zombies (common in
/// containers) the killed leftovers stay in the process table forever, so the
/// group never looks empty. As subreaper, the runner inherits them and
/// [`execute`](super::execute) reaps them itself. Call once at runner startup.
pub fn become_subreaper() -> Result<(), ExecError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(ExecError::Subreaper)
}

/// Send `signal` to every process in group `pgid`.
///
/// Returns `Ok(false)` if the group no longer exists: that is the goal of
/// every signal we send, so it is not an error.
pub(crate) fn signal_group(pgid: i32, signal: Signal) -> Result<bool, Errno> {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether any process (including an unreaped zombie) is still in the group.
///
/// Signal 0 performs the existence check without delivering anything. EPERM
/// means the group exists but is not ours to signal, so it counts as present.
pub(crate) fn group_exists(pgid: i32) -> bool {
    !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Reap every exited child of ours whose process group is `pgid`.
///
/// Only valid after the group leader itself has been reaped by tokio:
/// otherwise this could steal the leader's exit status. Restricting the wait
/// to one group keeps us away from other shards' children. Returns how many
/// processes were reaped.
fn reap_group(pgid: i32) -> usize {
    let mut reaped = 0;
    loop {
        match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return reaped,
            Ok(_) => reaped += 1,
        }
    }
}

/// What [`clear_group`] found and did after the leader exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftovers {
    /// Nothing was left in the group.
    None,
    /// Processes were still running; they were SIGKILLed and are gone.
    Killed,
    /// Processes were still present after SIGKILL and [`GONE_BOUND`]; most
    /// likely zombies whose (non-subreaper) parent does not reap them.
    Lingering,
    /// The group could not be signalled at all.
    SignalFailed(Errno),
}

/// Kill and reap whatever is left in group `pgid` once its leader is reaped.
pub(crate) async fn clear_group(pgid: i32) -> Leftovers {
    reap_group(pgid);
    if !group_exists(pgid) {
        return Leftovers::None;
    }
    if let Err(e) = signal_group(pgid, Signal::SIGKILL) {
        return Leftovers::SignalFailed(e);
    }
    let deadline = Instant::now() + GONE_BOUND;
    loop {
        reap_group(pgid);
        if !group_exists(pgid) {
            return Leftovers::Killed;
        }
        if Instant::now() >= deadline {
            return Leftovers::Lingering;
        }
        tokio::time::sleep(GONE_POLL).await;
    }
}

/// Kills the whole shard if [`execute`](super::execute) is abandoned.
///
/// `kill_on_drop` only kills the leader; if the caller drops the future (or
/// an error returns early) the rest of the group would otherwise live on.
/// A supervised shard is told to kill itself (SIGUSR2), which reaches
/// processes that left the group too; SIGKILLing the supervisor would
/// leave exactly those behind.
pub(crate) struct GroupGuard {
    pgid: Option<i32>,
    supervised: bool,
}

impl GroupGuard {
    pub(crate) fn new(pgid: i32, supervised: bool) -> Self {
        Self {
            pgid: Some(pgid),
            supervised,
        }
    }

    /// The group has been cleaned up deliberately; nothing to do on drop.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid else { return };
        let result = if self.supervised {
            nix::sys::signal::kill(Pid::from_raw(pgid), Signal::SIGUSR2).map(|_| true)
        } else {
            signal_group(pgid, Signal::SIGKILL)
        };
        if let Err(e) = result {
            tracing::warn!(pgid, error = %e, "could not kill abandoned process group");
        }
    }
}
