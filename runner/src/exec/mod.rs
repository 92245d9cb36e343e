//! Running one shard's command as its own process group.
//!
//! A shard is `bash -euo pipefail -c <command>`: strict mode so a failing
//! step fails the shard instead of being silently ignored. It runs under
//! the shard supervisor ([`crate::supervisor`]), which leads a fresh process
//! group, so that timeouts, cancellation and the final cleanup can signal
//! everything it started (background jobs, grandchildren) at once; the
//! supervisor also reaches what left the group, and outlives the runner
//! just long enough to end the shard if the runner dies.
//!
//! The environment is cleared except for a few variables needed to run at
//! all, so a shard's result does not depend on what the runner process
//! happened to inherit.

mod kill;
mod output;
mod supervised;
#[cfg(test)]
mod tests;

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

pub use kill::become_subreaper;
use kill::{clear_group, signal_group, GroupGuard, Leftovers};
use output::Notes;

/// The shell every command runs under.
const SHELL: &str = "bash";

/// Variables passed through from the runner's environment; everything else
/// is cleared so runs are deterministic across runner hosts.
const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "USER", "LANG", "TMPDIR", "TERM"];

/// How long the output pipes may stay open after the process group is gone.
///
/// Normally they hit EOF immediately; if they don't, a process that left the
/// group (e.g. via `setsid`) still holds them and we cannot wait for it.
const DRAIN_PERIOD: Duration = Duration::from_millis(500);

/// What to run for one shard.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Run as `bash -euo pipefail -c <command>`.
    pub command: String,
    /// Working directory; must exist.
    pub cwd: PathBuf,
    /// Added on top of the minimal inherited environment (PATH, HOME, USER,
    /// LANG, TMPDIR, TERM); these win over inherited values.
    pub env: Vec<(String, String)>,
    /// Wall-clock limit measured from spawn; `None` means no limit.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL when stopping the group.
    pub kill_grace: Duration,
    /// The program holding the shard supervisor (this binary, see
    /// [`crate::supervisor`]), which leads the process group and ends the
    /// shard's whole tree if the runner dies. `None` runs the shell
    /// directly: only this module's own tests do, as they cannot name the
    /// binary.
    pub supervisor: Option<PathBuf>,
    /// cgroup directories the shell joins before it starts anything.
    pub cgroups: Vec<PathBuf>,
    /// The step user the shell runs as (the supervisor stays the
    /// runner's); `None`: the runner's own user.
    pub user: Option<crate::step_users::Identity>,
}

/// Where an [`OutputChunk`] came from (`System`: notes from the runner
/// itself — timeouts, signals, cleanup, split lines).
pub use buildfleet_model::LogStream;

/// A piece of output.
///
/// `data` holds whole lines ending in `'\n'`, except for a final unterminated
/// line at EOF and the parts of a line longer than 64 KiB, which is split (a
/// `System` chunk announces the split). `System` chunks are single lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: LogStream,
    pub data: bytes::Bytes,
}

/// How the shard ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// The shell exited on its own with this status.
    Exited { code: i32 },
    /// The shell was killed by this signal (not sent by us).
    Signalled { signal: i32 },
    /// We stopped the group because [`ExecSpec::timeout`] elapsed.
    TimedOut { after: Duration },
    /// We stopped the group because cancellation was requested.
    Cancelled { reason: String },
}

/// Result of [`execute`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecReport {
    pub outcome: ExecOutcome,
    /// From spawn until the shell (the group leader) was reaped; excludes the
    /// cleanup of leftovers and the final output drain.
    pub duration: Duration,
    /// The shard's process group id (the supervisor's pid; the shell's when
    /// run directly).
    pub pgid: i32,
}

/// Why a shard could not be run (as opposed to running and failing, which is
/// an [`ExecOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("working directory {} is not accessible: {source}", cwd.display())]
    Cwd {
        cwd: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("working directory {} is not a directory", cwd.display())]
    CwdNotDirectory { cwd: PathBuf },
    #[error("failed to start the shard (its supervisor or `{SHELL}`) in {}: {source}", cwd.display())]
    Spawn {
        cwd: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spawned `{SHELL}` in {} but it has no pid", cwd.display())]
    NoPid { cwd: PathBuf },
    #[error("waiting for process group {pgid} leader failed: {source}")]
    Wait {
        pgid: i32,
        #[source]
        source: io::Error,
    },
    #[error("cannot become child subreaper: {0}")]
    Subreaper(#[source] nix::errno::Errno),
    #[error("cannot create the supervisor's report pipe: {0}")]
    ReportPipe(#[source] io::Error),
    #[error("the shard supervisor could not start the shell: {0}")]
    Supervisor(String),
}

/// Why we stopped the group ourselves.
enum Interruption {
    TimedOut(Duration),
    Cancelled(String),
}

/// Run `spec`, streaming its output to `output`, until it exits, times out,
/// or `cancel` becomes `Some(reason)`.
///
/// Whatever the outcome, the whole process group is gone when this returns
/// (given a reaping parent: see [`become_subreaper`]). Output is sent with
/// backpressure: a slow receiver slows the command down; nothing is dropped.
/// If the future is dropped early, the group is SIGKILLed.
pub async fn execute(
    spec: ExecSpec,
    output: mpsc::Sender<OutputChunk>,
    mut cancel: watch::Receiver<Option<String>>,
) -> Result<ExecReport, ExecError> {
    check_cwd(&spec).await?;
    let supervised = spec.supervisor.is_some();
    let (mut cmd, report_pipe) = command(&spec)?;
    let spawned = cmd.spawn().map_err(|source| ExecError::Spawn {
        cwd: spec.cwd.clone(),
        source,
    });
    // Our copy of the write end goes now, so the pipe ends with the child.
    let report_read = report_pipe.map(|(read, write)| {
        drop(write);
        read
    });
    let mut child = spawned?;
    let started = Instant::now();
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| ExecError::NoPid {
            cwd: spec.cwd.clone(),
        })?;
    let mut guard = GroupGuard::new(pgid, supervised);
    tracing::debug!(pgid, command = %spec.command, supervised, "shard started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut readers = JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        readers.spawn(
            output::pump(stdout, LogStream::Stdout, output.clone(), stop_rx.clone())
                .instrument(tracing::info_span!("stdout", pgid)),
        );
    }
    if let Some(stderr) = child.stderr.take() {
        readers.spawn(
            output::pump(stderr, LogStream::Stderr, output.clone(), stop_rx)
                .instrument(tracing::info_span!("stderr", pgid)),
        );
    }
    let (notes, forwarder) = Notes::start(output);
    let reports = report_read.map(|read| supervised::read_reports(read, notes.clone()));

    let wait_error = |source| ExecError::Wait { pgid, source };
    let finished = tokio::select! {
        status = child.wait() => Ok(status.map_err(wait_error)?),
        () = timeout_elapsed(spec.timeout) => {
            Err(Interruption::TimedOut(spec.timeout.unwrap_or_default()))
        }
        reason = cancel_requested(&mut cancel) => Err(Interruption::Cancelled(reason)),
    };
    let (status, interruption) = match finished {
        Ok(status) => (status, None),
        Err(why) => {
            let stop = Stop {
                pgid,
                supervised,
                grace: spec.kill_grace,
            };
            let status = terminate(&mut child, &stop, &why, &notes)
                .await
                .map_err(wait_error)?;
            (status, Some(why))
        }
    };
    let duration = started.elapsed();

    match clear_group(pgid).await {
        Leftovers::None => {}
        Leftovers::Killed => notes.note(format!(
            "shell exited but process group {pgid} still had running processes \
             (background jobs?): sent SIGKILL to process group {pgid}; all gone"
        )),
        Leftovers::Lingering => notes.note(format!(
            "process group {pgid} still exists after SIGKILL \
             (unreaped zombies? run the runner as child subreaper)"
        )),
        Leftovers::SignalFailed(e) => notes.note(format!(
            "could not SIGKILL leftover processes in group {pgid}: {e}"
        )),
    }
    guard.disarm();

    if tokio::time::timeout(DRAIN_PERIOD, join_all(&mut readers))
        .await
        .is_err()
    {
        notes.note(format!(
            "output pipes still open {DRAIN_PERIOD:?} after process group {pgid} ended \
             (held by a process that left the group?): stopped reading"
        ));
        // Receivers are gone only if `execute` itself is; ignore.
        let _ = stop_tx.send(true);
        join_all(&mut readers).await;
    }
    // The supervisor is gone, so its report pipe is at EOF.
    let supervisor_errors = match reports {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    drop(notes);
    if let Err(e) = forwarder.await {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    if !supervisor_errors.is_empty() {
        return Err(ExecError::Supervisor(supervisor_errors.join("; ")));
    }

    let outcome = match interruption {
        Some(Interruption::TimedOut(after)) => ExecOutcome::TimedOut { after },
        Some(Interruption::Cancelled(reason)) => ExecOutcome::Cancelled { reason },
        None => outcome_of(status),
    };
    tracing::debug!(pgid, ?outcome, ?duration, "shard finished");
    Ok(ExecReport {
        outcome,
        duration,
        pgid,
    })
}

/// Checked up front because a missing cwd and a missing shell both surface
/// from spawn as the same ENOENT, which would be misleading.
async fn check_cwd(spec: &ExecSpec) -> Result<(), ExecError> {
    let meta = tokio::fs::metadata(&spec.cwd)
        .await
        .map_err(|source| ExecError::Cwd {
            cwd: spec.cwd.clone(),
            source,
        })?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(ExecError::CwdNotDirectory {
            cwd: spec.cwd.clone(),
        })
    }
}

/// The read and write ends of the supervisor's report pipe.
type ReportPipe = (std::os::fd::OwnedFd, std::os::fd::OwnedFd);

fn command(spec: &ExecSpec) -> Result<(Command, Option<ReportPipe>), ExecError> {
    let (mut cmd, pipe) = match &spec.supervisor {
        Some(program) => {
            let (cmd, read, write) =
                supervised::command(spec, program).map_err(ExecError::ReportPipe)?;
            (cmd, Some((read, write)))
        }
        None => {
            let mut cmd = Command::new(SHELL);
            cmd.args(["-euo", "pipefail", "-c", spec.command.as_str()]);
            // If the runner itself dies (kill -9, OOM), its shell dies with
            // it. Only the shell: the supervisor is what reaches the rest.
            // SAFETY: prctl is async-signal-safe and touches no memory of ours.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(io::Error::from)
                });
            }
            cmd.kill_on_drop(true);
            if let Some(id) = &spec.user {
                cmd.uid(id.uid).gid(id.gid);
            }
            (cmd, None)
        }
    };
    cmd.current_dir(&spec.cwd).env_clear();
    for key in INHERITED_ENV {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    Ok((cmd, pipe))
}

async fn timeout_elapsed(timeout: Option<Duration>) {
    match timeout {
        Some(after) => tokio::time::sleep(after).await,
        None => std::future::pending().await,
    }
}

/// Resolves with the reason once cancellation is requested. A dropped sender
/// without a request means nobody can cancel any more, so it never resolves.
async fn cancel_requested(cancel: &mut watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(reason) = cancel.borrow_and_update().clone() {
            return reason;
        }
        if cancel.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// How to stop one shard's processes.
struct Stop {
    pgid: i32,
    supervised: bool,
    grace: Duration,
}

/// How long the supervisor may take to kill everything after SIGUSR2
/// before the group is SIGKILLed directly.
const SUPERVISOR_KILL_BOUND: Duration = Duration::from_secs(10);

/// SIGTERM the group, give the leader `grace` to exit, then kill the
/// shard: through its supervisor, which also reaches processes that left
/// the group, else (or if it does not answer) by SIGKILL to the group.
/// Returns the leader's exit status.
async fn terminate(
    child: &mut Child,
    stop: &Stop,
    why: &Interruption,
    notes: &Notes,
) -> io::Result<ExitStatus> {
    let Stop {
        pgid,
        supervised,
        grace,
    } = *stop;
    let what = match why {
        Interruption::TimedOut(after) => format!("timed out after {after:?}"),
        Interruption::Cancelled(reason) => format!("cancelled ({reason})"),
    };
    match signal_group(pgid, Signal::SIGTERM) {
        Ok(_) => notes.note(format!("{what}: sent SIGTERM to process group {pgid}")),
        Err(e) => notes.note(format!(
            "{what}: SIGTERM to process group {pgid} failed: {e}"
        )),
    }
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status;
    }
    if supervised {
        let sent = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pgid), Signal::SIGUSR2);
        if sent.is_ok() {
            notes.note(format!(
                "process group {pgid} still running {grace:?} after SIGTERM: sent SIGKILL to every process of the shard"
            ));
            if let Ok(status) = tokio::time::timeout(SUPERVISOR_KILL_BOUND, child.wait()).await {
                return status;
            }
            notes.note(format!(
                "the shard supervisor did not finish within {SUPERVISOR_KILL_BOUND:?}: sending SIGKILL to process group {pgid}"
            ));
        }
    }
    match signal_group(pgid, Signal::SIGKILL) {
        Ok(_) => notes.note(format!(
            "process group {pgid} still running {grace:?} after SIGTERM: sent SIGKILL"
        )),
        Err(e) => notes.note(format!("SIGKILL to process group {pgid} failed: {e}")),
    }
    child.wait().await
}

/// Wait for all output readers, propagating a reader panic (a bug) as is.
async fn join_all(readers: &mut JoinSet<()>) {
    while let Some(joined) = readers.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

fn outcome_of(status: ExitStatus) -> ExecOutcome {
    match (status.code(), status.signal()) {
        (_, Some(signal)) => ExecOutcome::Signalled { signal },
        (Some(code), None) => ExecOutcome::Exited { code },
        // wait(2) reports either an exit code or a terminating signal; stop
        // and continue notifications are not requested, so this is unreachable.
        (None, None) => ExecOutcome::Exited { code: -1 },
    }
}
