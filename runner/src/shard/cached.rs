//! Reusing and storing step results: a hit replays the stored log, marked
//! as cached, and names the outputs the cache vouched for; a success stores
//! its log, outputs and record.

use buildfleet_cache::{CasClient, OutputDirectory, OutputFile, StepResult};
use bytes::Bytes;

use super::log::LogSender;
use crate::caching::action::{self, ActionKey, ActionSpec, STEP_CACHE};
use crate::caching::{Outcome, Report};
use crate::outputs::{OutputKind, Uploaded};

/// Replays a stored result. The server only serves results whose blobs
/// are all present, and the log is verified on download.
pub async fn replay(
    cas: &CasClient,
    key: &ActionKey,
    result: &StepResult,
    log: &mut LogSender,
) -> Result<(), String> {
    if result.exit_code != 0 {
        return Err(format!("stored result has exit code {}", result.exit_code));
    }
    let bytes = cas
        .read_blob(&result.log)
        .await
        .map_err(|e| format!("stored log {} unreadable: {e}", result.log))?;
    // Checked before anything is sent: a log that cannot be replayed whole
    // means the step runs instead.
    super::framed::read(&bytes).map_err(|e| format!("stored log {}: {e}", result.log))?;
    log.system(format!(
        "cached: reusing the result of action {} — the command did not run; its log follows",
        key.digest
    ))
    .await;
    log.replay(&bytes)
        .await
        .map_err(|e| format!("stored log {}: {e}", result.log))?;
    log.system("cached: end of the reused log".to_owned()).await;
    for f in &result.output_files {
        log.system(format!(
            "output {} (file) in the cache as {}",
            f.path, f.digest
        ))
        .await;
    }
    for d in &result.output_directories {
        log.system(format!(
            "output {} (directory) in the cache as {}",
            d.path, d.root
        ))
        .await;
    }
    Ok(())
}

/// Stores a successful result. Failing to store never fails the step; it
/// is reported as `cache-save-failed`.
pub async fn store(
    cas: &CasClient,
    spec: &ActionSpec,
    key: &ActionKey,
    uploaded: &[Uploaded],
    log: &LogSender,
) -> Report {
    let report = |outcome, detail: String| Report {
        cache: STEP_CACHE.to_owned(),
        outcome,
        key: key.digest.to_string(),
        detail,
    };
    let Some(captured) = log.captured() else {
        return report(
            Outcome::SaveFailed,
            format!(
                "log larger than {} MiB; the result is not cached rather than replayed cut",
                super::log::CAPTURE_LIMIT / (1024 * 1024)
            ),
        );
    };
    let log_digest = match cas.upload_blob(Bytes::copy_from_slice(captured)).await {
        Ok(d) => d,
        Err(e) => return report(Outcome::SaveFailed, format!("log upload failed: {e}")),
    };
    let mut result = StepResult {
        exit_code: 0,
        output_files: Vec::new(),
        output_directories: Vec::new(),
        log: log_digest,
    };
    for u in uploaded {
        match u.kind {
            OutputKind::File { executable } => result.output_files.push(OutputFile {
                path: u.path.clone(),
                digest: u.digest,
                executable,
            }),
            OutputKind::Directory { tree } => result.output_directories.push(OutputDirectory {
                path: u.path.clone(),
                tree,
                root: u.digest,
            }),
        }
    }
    match action::store(cas, spec, key, &result).await {
        Ok(()) => report(Outcome::Saved, String::new()),
        Err(e) => report(Outcome::SaveFailed, e),
    }
}
