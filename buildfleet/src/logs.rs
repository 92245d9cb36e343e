//! `buildfleet logs RUN [STEP] [--shard N] [-f]`: a run's logs. Without
//! `-f`, each shard's whole log from the cache, by the digest its runner
//! stored — including everything a log cap kept out of the live stream.
//! With `-f`, the live stream as every watcher sees it (masked, capped),
//! until the run ends; it exits as `submit` would (0 only for a green run).

use std::io::Write;

use anyhow::{Context, Result};
use buildfleet_cache::CasClient;
use buildfleet_model::{EventKind, LogStream, RunStatus};

use crate::cli::LogsArgs;

pub async fn print(args: LogsArgs, trust: &buildfleet_trust::ClientTrust) -> Result<i32> {
    let mut coordinator = crate::wire::Coordinator::connect(&args.coordinator, trust).await?;
    let status = coordinator
        .get(&args.run)
        .await
        .with_context(|| format!("looking up run {}", args.run))?;
    if let Some(why) = unknown_name(&status, &args) {
        eprintln!("error: {why}");
        return Ok(crate::exit::USAGE);
    }
    if args.follow {
        return follow(args, coordinator, trust).await;
    }
    let cache = args
        .cache
        .as_deref()
        .context("--cache is needed without -f")?;
    let cas = CasClient::connect_with(cache, trust).await?;
    let mut out = std::io::stdout().lock();
    let wanted = shards_of(&status, &args);
    let mut missing = Vec::new();
    for (step, shard, digest) in &wanted {
        let Some(digest) = digest else {
            missing.push(format!("{step}#{shard}"));
            continue;
        };
        let log = cas.read_blob(digest).await.with_context(|| {
            format!("reading the log of {step}#{shard} ({digest}) from the cache")
        })?;
        if wanted.len() > 1 {
            writeln!(out, "==> {step}#{shard} <==")?;
        }
        out.write_all(&log)?;
    }
    out.flush()?;
    if missing.is_empty() {
        return Ok(crate::exit::GREEN);
    }
    eprintln!(
        "error: no stored log for {} (not run yet, or its runner could not store it; `-f` follows a running shard)",
        missing.join(", ")
    );
    Ok(crate::exit::FAILED)
}

/// A step or shard the run does not have: the usage error, naming what
/// it has.
fn unknown_name(status: &RunStatus, args: &LogsArgs) -> Option<String> {
    let name = args.step.as_ref()?;
    let Some(step) = status.steps.iter().find(|s| &s.name == name) else {
        let names: Vec<&str> = status.steps.iter().map(|s| s.name.as_str()).collect();
        return Some(format!(
            "run {} has no step `{name}` (steps: {})",
            status.run_id,
            names.join(", ")
        ));
    };
    match args.shard {
        Some(i) if !step.shards.iter().any(|s| s.index == i) => Some(format!(
            "step `{name}` has {} shard(s); there is no shard {i}",
            step.shards.len()
        )),
        _ => None,
    }
}

type ShardLog<'a> = (&'a str, u32, Option<buildfleet_model::Digest>);

fn shards_of<'a>(status: &'a RunStatus, args: &LogsArgs) -> Vec<ShardLog<'a>> {
    status
        .steps
        .iter()
        .filter(|s| args.step.as_ref().is_none_or(|n| n == &s.name))
        .flat_map(|step| {
            step.shards
                .iter()
                .filter(|s| args.shard.is_none_or(|i| i == s.index))
                .map(|s| (step.name.as_str(), s.index, s.full_log))
        })
        .collect()
}

async fn follow(
    args: LogsArgs,
    coordinator: crate::wire::Coordinator,
    trust: &buildfleet_trust::ClientTrust,
) -> Result<i32> {
    let one_shard = args.shard.is_some();
    let mut print = |ev: &buildfleet_model::Event, out: &mut dyn Write| -> std::io::Result<()> {
        let EventKind::Log(l) = &ev.kind else {
            return Ok(());
        };
        if args.step.as_ref().is_some_and(|n| n != &l.step)
            || args.shard.is_some_and(|i| i != l.shard)
        {
            return Ok(());
        }
        if one_shard && l.stream != LogStream::System {
            return out.write_all(&l.data).and_then(|_| out.flush());
        }
        let tag = match l.stream {
            LogStream::Stderr => "!",
            LogStream::System => "*",
            LogStream::Stdout => "|",
        };
        for line in String::from_utf8_lossy(&l.data).lines() {
            writeln!(
                out,
                "{} {tag} {line}",
                crate::progress::shard_label(&l.step, l.shard)
            )?;
        }
        out.flush()
    };
    let mut out = std::io::stdout().lock();
    let end = crate::submit::follow(
        &args.coordinator,
        trust,
        coordinator,
        &args.run,
        &mut print,
        &mut out,
    )
    .await?;
    drop(out);
    eprintln!("run {} ended: {}", end.run_id, end.state);
    // `logs -f RUN && deploy` must not go on after a red run.
    Ok(match crate::progress::is_green(&end) {
        true => crate::exit::GREEN,
        false => crate::exit::FAILED,
    })
}
