//! Starting the shell under the shard supervisor, and reading what the
//! supervisor reports on its file descriptor 3.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tracing::{info_span, Instrument};

use super::output::Notes;
use super::{ExecSpec, SHELL};
use crate::supervisor::{REPORT_FD, SUBCOMMAND};

/// The supervisor's command line, and the pipe it reports on. The write
/// end must stay open until the child is spawned, then be dropped, so the
/// read end sees EOF exactly when the supervisor exits.
pub(super) fn command(spec: &ExecSpec, program: &Path) -> io::Result<(Command, OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut cmd = Command::new(program);
    cmd.arg(SUBCOMMAND)
        .arg("--parent")
        .arg(std::process::id().to_string());
    for dir in &spec.cgroups {
        cmd.arg("--cgroup").arg(dir);
    }
    if let Some(id) = &spec.user {
        cmd.arg("--uid")
            .arg(id.uid.to_string())
            .arg("--gid")
            .arg(id.gid.to_string());
    }
    cmd.arg("--")
        .arg(SHELL)
        .args(["-euo", "pipefail", "-c", spec.command.as_str()]);
    let raw = write.as_raw_fd();
    // SAFETY: dup2 and fcntl are async-signal-safe and only touch the
    // child's descriptor table.
    unsafe {
        cmd.pre_exec(move || {
            if raw == REPORT_FD {
                // dup2 onto itself would leave close-on-exec set.
                nix::fcntl::fcntl(
                    raw,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )?;
            } else if nix::libc::dup2(raw, REPORT_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((cmd, read, write))
}

/// Forwards the supervisor's notes to the shard's log until it exits, and
/// returns the errors it reported (it could not start the shell).
pub(super) fn read_reports(read: OwnedFd, notes: Notes) -> JoinHandle<Vec<String>> {
    tokio::spawn(
        async move {
            let rx = match tokio::net::unix::pipe::Receiver::from_owned_fd(read) {
                Ok(rx) => rx,
                Err(e) => {
                    notes.note(format!(
                        "the shard supervisor's reports cannot be read ({e}); its notes are lost"
                    ));
                    return Vec::new();
                }
            };
            let mut lines = BufReader::new(rx).lines();
            let mut errors = Vec::new();
            loop {
                match lines.next_line().await {
                    Ok(Some(line)) => match line.split_once(' ') {
                        Some(("note", text)) => notes.note(text.to_owned()),
                        Some(("error", text)) => errors.push(text.to_owned()),
                        _ => notes.note(format!("shard supervisor: {line}")),
                    },
                    Ok(None) => return errors,
                    Err(e) => {
                        notes.note(format!(
                            "reading the shard supervisor's reports failed ({e}); later notes are lost"
                        ));
                        return errors;
                    }
                }
            }
        }
        .instrument(info_span!("supervisor_reports")),
    )
}
