//! Reusing and storing step results: a hit replays the stored log, marked
//! as cached, and names the outputs the cache vouched for; a success stores
//! its log, outputs and record.

use buildfleet_cache::{CacheError, CasClient, Digest, OutputDirectory, OutputFile, StepResult};
use bytes::Bytes;

use super::log::LogSender;
use buildfleet_model::{CacheName, CacheOutcome, CacheReport};

use super::framed::FramingError;
use crate::caching::action::{self, ActionKey, ActionSpec};
use crate::outputs::{OutputKind, Uploaded};

/// Why a stored result cannot be replayed: the step runs instead.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("stored result has exit code {0}")]
    ExitCode(i32),
    #[error("stored log {log} unreadable: {source}")]
    Unreadable {
        log: Digest,
        #[source]
        source: CacheError,
    },
    #[error("stored log {log}: {source}")]
    Framing {
        log: Digest,
        #[source]
        source: FramingError,
    },
}

/// Replays a stored result. The server only serves results whose blobs
/// are all present, and the log is verified on download.
pub async fn replay(
    cas: &CasClient,
    key: &ActionKey,
    result: &StepResult,
    log: &mut LogSender,
) -> Result<(), ReplayError> {
    if result.exit_code != 0 {
        return Err(ReplayError::ExitCode(result.exit_code));
    }
    let framing = |source| ReplayError::Framing {
        log: result.log,
        source,
    };
    let bytes = cas
        .read_blob(&result.log)
        .await
        .map_err(|source| ReplayError::Unreadable {
            log: result.log,
            source,
        })?;
    // Checked before anything is sent: a log that cannot be replayed whole
    // means the step runs instead.
    super::framed::read(&bytes).map_err(framing)?;
    log.system(format!(
        "cached: reusing the result of action {} — the command did not run; its log follows",
        key.digest
    ))
    .await;
    log.replay(&bytes).await.map_err(framing)?;
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
) -> CacheReport {
    let report = |outcome, detail: String| CacheReport {
        cache: CacheName::Step,
        outcome,
        key: key.digest.to_string(),
        detail,
    };
    let Some(captured) = log.captured() else {
        return report(
            CacheOutcome::SaveFailed,
            format!(
                "log larger than {} MiB; the result is not cached rather than replayed cut",
                super::log::CAPTURE_LIMIT / (1024 * 1024)
            ),
        );
    };
    let log_digest = match cas.upload_blob(Bytes::copy_from_slice(captured)).await {
        Ok(d) => d,
        Err(e) => return report(CacheOutcome::SaveFailed, format!("log upload failed: {e}")),
    };
    let mut result = StepResult {
        exit_code: 0,
        output_files: Vec::new(),
        output_directories: Vec::new(),
        log: log_digest,
        provenance: Default::default(),
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
        Ok(()) => report(CacheOutcome::Saved, String::new()),
        Err(e) => report(CacheOutcome::SaveFailed, e.to_string()),
    }
}
