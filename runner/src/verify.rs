//! `verify:` commands: run after a step exited 0 and its outputs were
//! stored, in the same directory and environment. A push that "succeeded"
//! is checked from the outside (`docker manifest inspect …`); if any check
//! fails, the step fails as `verify-failed`, whatever the step itself said.

use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::exec::{self, ExecOutcome, ExecSpec, OutputChunk};
use crate::shard::log::LogSender;

pub struct Checks<'a> {
    pub commands: &'a [String],
    pub dir: &'a Path,
    pub env: &'a [(String, String)],
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

/// Runs each check in order; the first failure is the step's reason.
pub async fn run(
    checks: Checks<'_>,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Result<(), String> {
    for command in checks.commands {
        log.system(format!("verify: running `{command}`")).await;
        let spec = ExecSpec {
            command: command.clone(),
            cwd: checks.dir.to_path_buf(),
            env: checks.env.to_vec(),
            timeout: checks.timeout,
            kill_grace: checks.kill_grace,
        };
        let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
        let exec = exec::execute(spec, tx, cancel.clone());
        tokio::pin!(exec);
        let report = loop {
            tokio::select! {
                biased;
                Some(chunk) = rx.recv() => crate::shard::forward(log, chunk, None).await,
                r = &mut exec => break r,
            }
        };
        while let Some(chunk) = rx.recv().await {
            crate::shard::forward(log, chunk, None).await;
        }
        let why = match report.map(|r| r.outcome) {
            Ok(ExecOutcome::Exited { code: 0 }) => continue,
            Ok(ExecOutcome::Exited { code }) => format!("exited with code {code}"),
            Ok(ExecOutcome::Signalled { signal }) => format!("was killed by signal {signal}"),
            Ok(ExecOutcome::TimedOut { after }) => {
                format!("timed out after {}", humantime::format_duration(after))
            }
            Ok(ExecOutcome::Cancelled { reason }) => format!("was cancelled: {reason}"),
            Err(e) => format!("could not start: {e}"),
        };
        let reason = format!("verify-failed: `{command}` {why}");
        log.system(reason.clone()).await;
        return Err(reason);
    }
    Ok(())
}
