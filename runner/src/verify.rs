//! `verify:` commands: checks of the world after a step, in the same
//! directory and environment. A push that "succeeded" is checked from the
//! outside (`docker manifest inspect …`); if any check fails, the step fails
//! as `verify-failed`, whatever the step itself said. They run after a
//! successful exit (once its outputs are stored), after an exit the
//! quarantine mutes, and after a step-cache hit: a post-condition of the
//! world can stop holding while a cached result stays the same.

use tokio::sync::{mpsc, watch};

use buildfleet_model::Check;

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
    OutputsGone(#[source] crate::shard::PlaceError),
    #[error("{VERIFY_FAILED}: cached result no longer holds: `{}` {}", .0.command, .0.why)]
    Check(VerifyFailed),
}

/// Runs each check in order with `base`'s directory, environment, limits
/// and supervision, trying a failing one again while it has retries (each
/// failed attempt said in the log); the first check that never passes is
/// the step's reason. A cancel stops the waiting too.
pub async fn run(
    checks: &[Check],
    base: &ExecSpec,
    mut cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Result<(), VerifyFailed> {
    for check in checks {
        let attempts = check.retries + 1;
        let mut attempt = 1;
        loop {
            let why = match attempt_once(&check.command, base, cancel.clone(), log).await {
                None => break,
                Some(why) => why,
            };
            let cancelled = cancel.borrow().is_some();
            if attempt >= attempts || cancelled {
                let failed = VerifyFailed {
                    command: check.command.clone(),
                    why: match attempts {
                        1 => why,
                        n => format!("{why} (attempt {attempt} of {n})"),
                    },
                };
                log.system(failed.to_string()).await;
                return Err(failed);
            }
            log.system(format!(
                "verify: `{}` {why} (attempt {attempt} of {attempts}); again in {}",
                check.command,
                humantime::format_duration(check.interval)
            ))
            .await;
            tokio::select! {
                _ = tokio::time::sleep(check.interval) => {}
                _ = cancel.changed() => {}
            }
            attempt += 1;
        }
    }
    Ok(())
}

/// Runs `command` once; `None` when it passed, else how it failed.
async fn attempt_once(
    command: &str,
    base: &ExecSpec,
    cancel: watch::Receiver<Option<String>>,
    log: &mut LogSender,
) -> Option<String> {
    log.system(format!("verify: running `{command}`")).await;
    let spec = ExecSpec {
        command: command.to_owned(),
        ..base.clone()
    };
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let exec = exec::execute(spec, tx, cancel);
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
    match report.map(|r| r.outcome) {
        Ok(ExecOutcome::Exited { code: 0 }) => None,
        Ok(ExecOutcome::Exited { code }) => Some(format!("exited with code {code}")),
        Ok(ExecOutcome::Signalled { signal }) => Some(format!("was killed by signal {signal}")),
        Ok(ExecOutcome::TimedOut { after }) => Some(format!(
            "timed out after {}",
            humantime::format_duration(after)
        )),
        Ok(ExecOutcome::Cancelled { reason }) => Some(format!("was cancelled: {reason}")),
        Err(e) => Some(format!("could not start: {e}")),
    }
}
