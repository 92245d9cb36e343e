//! `buildfleet runs`, `runs show RUN` and `runners`: what the fleet is
//! doing, as aligned columns for people or JSON for scripts (`--output
//! json`; the field names below are the stable contract).

use std::io::Write;

use anyhow::{Context, Result};
use buildfleet_model::{unix_ms, CacheOutcome, RunStatus};
use serde::Serialize;

use crate::cli::{ListingArgs, Output, RunsArgs, RunsCommand};

/// One run in `buildfleet runs --output json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct RunRow {
    pub run_id: String,
    /// Snake-case state: `running`, `succeeded`, `failed`, ...
    pub state: &'static str,
    pub git_ref: String,
    pub commit: String,
    pub event: String,
    pub actor: String,
    pub pipeline: String,
    pub created_unix_ms: u64,
    pub duration_ms: u64,
    pub shards: u32,
    pub shards_done: u32,
    /// Step-result and dependency cache hits, and lookups (hits, misses,
    /// fallbacks; not saves or caching turned off).
    pub cache_hits: u32,
    pub cache_lookups: u32,
}

impl RunRow {
    pub fn of(r: &RunStatus) -> RunRow {
        let shards = r.steps.iter().flat_map(|s| &s.shards);
        let (mut total, mut done, mut hits, mut lookups) = (0, 0, 0, 0);
        for shard in shards {
            total += 1;
            done += u32::from(shard.state.is_terminal());
            for c in &shard.cache {
                match c.outcome {
                    CacheOutcome::Hit => (hits, lookups) = (hits + 1, lookups + 1),
                    CacheOutcome::Miss | CacheOutcome::Fallback => lookups += 1,
                    _ => {}
                }
            }
        }
        RunRow {
            run_id: r.run_id.clone(),
            state: r.state.label(),
            git_ref: r.context.git_ref.clone(),
            commit: r.context.commit.clone(),
            event: r.context.event.clone(),
            actor: r.context.actor.clone(),
            pipeline: r.pipeline_path.clone(),
            created_unix_ms: r.created_unix_ms,
            duration_ms: r.duration_ms,
            shards: total,
            shards_done: done,
            cache_hits: hits,
            cache_lookups: lookups,
        }
    }

    /// `3/4 (75%)`, or `-` when nothing was looked up.
    pub fn hit_ratio(&self) -> String {
        match self.cache_lookups {
            0 => "-".into(),
            n => format!("{}/{n} ({}%)", self.cache_hits, self.cache_hits * 100 / n),
        }
    }
}

/// One shard in `runs show --output json`.
#[derive(Debug, Serialize)]
struct ShardRow<'a> {
    step: &'a str,
    stage: &'a str,
    shard: u32,
    state: &'static str,
    /// The whole state, with its reason (`failed (exit code 1)`).
    detail: String,
    runner: Option<&'a str>,
    attempt: u32,
    duration_ms: u64,
    predicted_ms: u64,
    cache: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RunShow<'a> {
    #[serde(flatten)]
    run: RunRow,
    shards: Vec<ShardRow<'a>>,
    notices: Vec<&'a str>,
}

/// One runner in `buildfleet runners --output json`.
#[derive(Debug, Serialize)]
pub struct RunnerRow {
    pub runner_id: String,
    pub name: String,
    pub labels: Vec<String>,
    pub slots: u32,
    pub busy_slots: u32,
    /// The shards it runs now, as `RUN/STEP#SHARD`.
    pub leases: Vec<String>,
    pub disk_free_bytes: Option<u64>,
    /// Why it takes no new leases (draining, low disk); empty = it does.
    pub unavailable: String,
    pub last_seen_unix_ms: u64,
    pub connected_unix_ms: u64,
    pub isolation: String,
}

pub async fn runs(args: RunsArgs, trust: &buildfleet_trust::ClientTrust) -> Result<i32> {
    if let Some(RunsCommand::Show { run, listing }) = args.command {
        return show(&run, listing, trust).await;
    }
    let url = args.coordinator.context(
        "`buildfleet runs` needs the coordinator: --coordinator URL or BUILDFLEET_COORDINATOR",
    )?;
    let mut coordinator = crate::wire::Coordinator::connect(&url, trust).await?;
    let rows: Vec<RunRow> = coordinator
        .runs(args.limit)
        .await?
        .iter()
        .map(RunRow::of)
        .collect();
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        Output::Table => write_runs_table(&rows, &mut out)?,
    }
    Ok(crate::exit::GREEN)
}

pub fn write_runs_table(rows: &[RunRow], out: &mut dyn Write) -> std::io::Result<()> {
    let now = unix_ms(std::time::SystemTime::now());
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.run_id.clone(),
                r.state.to_owned(),
                short_ref(&r.git_ref),
                r.commit.chars().take(10).collect(),
                r.event.clone(),
                r.actor.clone(),
                format!(
                    "{} ({} ago)",
                    buildfleet_model::duration::fmt_ms(r.duration_ms),
                    buildfleet_model::duration::fmt_ms(now.saturating_sub(r.created_unix_ms))
                ),
                format!(
                    "{}/{} shards, cache {}",
                    r.shards_done,
                    r.shards,
                    r.hit_ratio()
                ),
            ]
        })
        .collect();
    let head = [
        "RUN", "STATE", "REF", "COMMIT", "EVENT", "WHO", "TOOK", "PROGRESS",
    ];
    write_columns(&head, &table, out)
}

async fn show(
    run: &str,
    listing: ListingArgs,
    trust: &buildfleet_trust::ClientTrust,
) -> Result<i32> {
    let mut coordinator = crate::wire::Coordinator::connect(&listing.coordinator, trust).await?;
    let status = coordinator
        .get(run)
        .await
        .with_context(|| format!("looking up run {run}"))?;
    let mut out = std::io::stdout().lock();
    match listing.output {
        Output::Table => {
            let row = RunRow::of(&status);
            writeln!(
                out,
                "run {} {} · {} · {} · cache {}",
                row.run_id,
                row.state,
                status.context.describe(),
                buildfleet_model::duration::fmt_ms(row.duration_ms),
                row.hit_ratio()
            )?;
            crate::progress::summary(&status, &mut out)?;
        }
        Output::Json => {
            let show = RunShow {
                run: RunRow::of(&status),
                shards: shard_rows(&status),
                notices: status.notices.iter().map(|n| n.text.as_str()).collect(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&show)?)?;
        }
    }
    Ok(crate::exit::GREEN)
}

fn shard_rows(status: &RunStatus) -> Vec<ShardRow<'_>> {
    status
        .steps
        .iter()
        .flat_map(|step| {
            step.shards.iter().map(move |s| ShardRow {
                step: &step.name,
                stage: &step.stage,
                shard: s.index,
                state: s.state.label(),
                detail: s.state.to_string(),
                runner: s.runner.as_deref(),
                attempt: s.attempt,
                duration_ms: s.duration_ms,
                predicted_ms: s.predicted_ms,
                cache: s.cache.iter().map(|c| c.log_line()).collect(),
            })
        })
        .collect()
}

pub async fn runners(args: ListingArgs, trust: &buildfleet_trust::ClientTrust) -> Result<i32> {
    let mut coordinator = crate::wire::Coordinator::connect(&args.coordinator, trust).await?;
    let runners = coordinator.runners().await?;
    let mut out = std::io::stdout().lock();
    match args.output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&runners)?)?,
        Output::Table => write_runners_table(&runners, &mut out)?,
    }
    Ok(crate::exit::GREEN)
}

fn write_runners_table(runners: &[RunnerRow], out: &mut dyn Write) -> std::io::Result<()> {
    let now = unix_ms(std::time::SystemTime::now());
    let table: Vec<[String; 7]> = runners
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.labels.join(","),
                format!("{}/{}", r.busy_slots, r.slots),
                r.disk_free_bytes
                    .map_or("?".into(), |b| bytesize::ByteSize(b).to_string()),
                format!(
                    "{} ago",
                    buildfleet_model::duration::fmt_ms(now.saturating_sub(r.last_seen_unix_ms))
                ),
                match r.unavailable.as_str() {
                    "" => "available".into(),
                    why => why.to_owned(),
                },
                r.leases.join(" "),
            ]
        })
        .collect();
    let head = [
        "RUNNER",
        "LABELS",
        "BUSY",
        "DISK FREE",
        "SEEN",
        "STATE",
        "LEASES",
    ];
    write_columns(&head, &table, out)
}

fn short_ref(r: &str) -> String {
    r.strip_prefix("refs/heads/")
        .or_else(|| r.strip_prefix("refs/tags/"))
        .unwrap_or(r)
        .to_owned()
}

/// Columns padded to their widest cell; the last is not padded.
fn write_columns<const N: usize>(
    head: &[&str; N],
    rows: &[[String; N]],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut widths = head.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>, out: &mut dyn Write| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(head.to_vec(), out)?;
    for row in rows {
        line(row.iter().map(String::as_str).collect(), out)?;
    }
    Ok(())
}
