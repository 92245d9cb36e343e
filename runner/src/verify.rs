//! `verify:` commands: checks of the world after a step, in the same
//! directory and environment. A push that "succeeded" is checked from the
//! outside (`docker manifest inspect …`); if any check fails, the step fails
//! as `verify-failed`, whatever the step itself said. They run after a
//! successful exit (once its outputs are stored), after an exit the
//! quarantine mutes, and after a step-cache hit: a post-condition of the
//! world can stop holding while a cached result stays the same.

use tokio::sync::{mpsc, watch};

use crate::exec::{self, ExecOutcome, ExecSpec, OutputChunk};
use crate::shard::log::LogSender;

/// The failure class a failing check gives its step: the first word of
/// the reason, which summaries and people search for.
pub const VERIFY_FAILED: &str = "verify-failed";

/// A check that did not pass, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{VERIFY_FAILED}: `{command}` {why}")]
pub struct VerifyFailed {
    pub command: String,
    pub why: String,
}

/// A result reused from the step cache whose `verify:` no longer holds.
#[derive(Debug, thiserror::Error)]
pub enum NoLongerHolds {
    #[error("{VERIFY_FAILED}: cached result no longer holds: its outputs could not be restored to check it ({0})")]
    OutputsGone(#[source] crate::shard::RestoreError),
    #[error("{VERIFY_FAILED}: cached result no longer holds: `{}` {}", .0.command, .0.why)]
    Check(VerifyFailed),
}

/// Runs each of `commands` in order with `base`'s directory, environment,
/// limits and supervision; the first failure is the step's reason.
pub async fn run(
    commands: &[String],
    base: &ExecSpec,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Result<(), VerifyFailed> {
    for command in commands {
        log.system(format!("verify: running `{command}`")).await;
        let spec = ExecSpec {
            command: command.clone(),
            ..base.clone()
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
        let failed = VerifyFailed {
            command: command.clone(),
            why,
        };
        log.system(failed.to_string()).await;
        return Err(failed);
    }
    Ok(())
}
