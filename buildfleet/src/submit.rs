//! Submitting a pipeline: snapshot the working tree, upload what the cache
//! lacks, submit, then watch until the run ends. Shared by `run` (embedded
//! fleet) and `submit` (remote fleet).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use buildfleet_cache::CasClient;
use buildfleet_model::{RunStatus, Submission};
use futures::StreamExt;

use crate::progress::Progress;
use crate::wire::{Coordinator, Submitted};

/// How long a broken watch is retried before giving up.
const RESUME_FOR: std::time::Duration = std::time::Duration::from_secs(120);

/// What the command line needs to pick an exit status.
pub enum RunEnd {
    Finished(Box<RunStatus>),
    /// The coordinator rejected the pipeline file (exit 2).
    Invalid(String),
}

pub struct SubmitOptions<'a> {
    pub pipeline_file: &'a Path,
    pub work_dir: &'a Path,
    pub coordinator_url: &'a str,
    pub cache_url: &'a str,
    /// The token presented to both.
    pub trust: &'a buildfleet_trust::ClientTrust,
    pub idempotency_key: Option<String>,
    pub no_cache: bool,
    /// Names the project in step history; see [`project_name`].
    pub project: String,
    /// Where to write the run's merged JUnit XML, if asked.
    pub junit: Option<&'a Path>,
    pub fail_on_flaky: bool,
    /// Which commit, ref and event the run is for.
    pub context: buildfleet_model::RunContext,
    /// `--var NAME=VALUE`.
    pub vars: std::collections::BTreeMap<String, String>,
}

/// The default project name: the input directory's own name, which is the
/// repository's name in most checkouts and stable across CI clones.
pub fn project_name(explicit: Option<&str>, work_dir: &Path) -> String {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    std::path::absolute(work_dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".to_owned())
}

pub async fn submit_and_watch(opts: SubmitOptions<'_>, out: &mut dyn Write) -> Result<RunEnd> {
    let yaml = std::fs::read_to_string(opts.pipeline_file)
        .with_context(|| format!("reading {}", opts.pipeline_file.display()))?;
    let snap = buildfleet_cache::snapshot(opts.work_dir)
        .with_context(|| format!("snapshotting {}", opts.work_dir.display()))?;
    let cas = CasClient::connect_with(opts.cache_url, opts.trust).await?;
    let up = cas
        .upload_snapshot(&snap)
        .await
        .context("uploading inputs")?;
    writeln!(
        out,
        "inputs: {} files, {} bytes, root {} ({} blobs uploaded, {} already cached)",
        snap.file_count, snap.total_bytes, snap.root, up.uploaded_blobs, up.skipped_blobs
    )?;
    // The coordinator parses and validates the file; here it is only read
    // to find split steps, so a broken file still gets the server's errors.
    let (split_items, quarantine) = match buildfleet_coordinator::pipeline::parse(
        &opts.pipeline_file.display().to_string(),
        &yaml,
    ) {
        Ok(pipeline) => (
            crate::split_items::for_pipeline(&pipeline, &snap)?,
            crate::quarantine::read(&pipeline, opts.work_dir)?,
        ),
        Err(_) => Default::default(),
    };
    if !quarantine.is_empty() {
        writeln!(
            out,
            "quarantine: {} test(s) whose failures are shown but do not fail their step",
            quarantine.len()
        )?;
    }
    let mut coordinator = Coordinator::connect(opts.coordinator_url, opts.trust).await?;
    let submitted = coordinator
        .submit(Submission {
            pipeline_yaml: yaml,
            pipeline_path: opts.pipeline_file.display().to_string(),
            input_root: snap.root,
            idempotency_key: opts.idempotency_key,
            no_cache: opts.no_cache,
            project: opts.project,
            split_items: split_items.into_iter().collect(),
            quarantine,
            fail_on_flaky: opts.fail_on_flaky,
            context: opts.context.clone(),
            vars: opts.vars,
        })
        .await?;
    let run_id = match submitted {
        Submitted::Run(id) => id,
        Submitted::Invalid(why) => return Ok(RunEnd::Invalid(why)),
    };
    writeln!(
        out,
        "run {run_id} submitted for {}",
        opts.context.describe()
    )?;
    let status = watch_to_end(opts.coordinator_url, opts.trust, coordinator, &run_id, out).await?;
    if let Some(path) = opts.junit {
        std::fs::write(path, crate::junit_out::render(&status))
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
        writeln!(out, "JUnit report written to {}", path.display())?;
    }
    Ok(RunEnd::Finished(Box::new(status)))
}

/// Streams a run's events to `out` until it ends — resuming a broken
/// stream from the last event seen — then prints its summary.
pub async fn watch_to_end(
    coordinator_url: &str,
    trust: &buildfleet_trust::ClientTrust,
    coordinator: Coordinator,
    run_id: &str,
    out: &mut dyn Write,
) -> Result<RunStatus> {
    let mut progress = Progress::new();
    let status = match crate::bars::Bars::on_terminal() {
        // Bars on the terminal, kept current from the run's state; each
        // line is printed above them.
        Some(bars) => {
            let poller = bars.follow(coordinator_url, trust, run_id);
            let mut show = |ev: &buildfleet_model::Event, out: &mut dyn Write| {
                bars.suspend(|| progress.print(ev, out))
            };
            let status = follow(coordinator_url, trust, coordinator, run_id, &mut show, out).await;
            poller.abort();
            if let Ok(status) = &status {
                bars.finish(status);
            }
            status?
        }
        None => {
            let mut show =
                |ev: &buildfleet_model::Event, out: &mut dyn Write| progress.print(ev, out);
            follow(coordinator_url, trust, coordinator, run_id, &mut show, out).await?
        }
    };
    crate::progress::summary(&status, out)?;
    Ok(status)
}

/// What a follower does with each event of the run.
pub type OnEvent<'a> =
    dyn FnMut(&buildfleet_model::Event, &mut dyn Write) -> std::io::Result<()> + 'a;

/// Follows a run's events to its end through `on_event`, resuming a
/// broken stream where it broke; the run's final status.
pub async fn follow(
    coordinator_url: &str,
    trust: &buildfleet_trust::ClientTrust,
    mut coordinator: Coordinator,
    run_id: &str,
    on_event: &mut OnEvent<'_>,
    out: &mut dyn Write,
) -> Result<RunStatus> {
    let mut last_seq = 0;
    // A lost stream (say, the coordinator restarted) is resumed from the
    // last event seen, for up to `RESUME_FOR`; nothing is shown twice.
    let mut lost_since: Option<std::time::Instant> = None;
    loop {
        let broke = match coordinator.watch(run_id, last_seq).await {
            Ok(events) => {
                let mut events = std::pin::pin!(events);
                let mut broke = None;
                while let Some(ev) = events.next().await {
                    match ev {
                        Ok((seq, ev)) => {
                            lost_since = None;
                            last_seq = seq;
                            if let Some(ev) = ev {
                                on_event(&ev, out)?;
                            }
                        }
                        Err(e) => {
                            broke = Some(e);
                            break;
                        }
                    }
                }
                broke
            }
            Err(e) => Some(e),
        };
        let Some(why) = broke else { break };
        // Refused is refused: no amount of resuming makes a token valid.
        if let Some(status) = why.downcast_ref::<tonic::Status>() {
            if matches!(
                status.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ) {
                anyhow::bail!("watching run {run_id}: {}", status.message());
            }
        }
        let since = *lost_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() > RESUME_FOR {
            anyhow::bail!("watch stream broke before the run ended and could not be resumed for {RESUME_FOR:?}: {why}");
        }
        writeln!(
            out,
            "(watch interrupted: {why}; resuming after event {last_seq})"
        )?;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        if let Ok(c) = Coordinator::connect(coordinator_url, trust).await {
            coordinator = c;
        }
    }
    coordinator
        .get(run_id)
        .await
        .context("fetching the run's final state")
}

/// The default input directory: the pipeline file's own directory.
pub fn pipeline_dir(file: &Path) -> std::path::PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}
