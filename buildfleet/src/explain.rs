//! `buildfleet cache explain FILE STEP`: what a run would reuse for a step,
//! and for every miss, what changed — computed with the runners' own key
//! code, against the same cache.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use buildfleet_cache::CasClient;
use buildfleet_coordinator::pipeline::Split;
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_model::{CacheOutcome, CacheReport};
use buildfleet_runner::caching::action::{self, ActionSpec, Found};
use buildfleet_runner::caching::{dependency, platform};

use crate::cli::ExplainArgs;
use crate::exit;
use crate::fleet::EmbeddedFleet;

pub async fn run(args: ExplainArgs, trust: &buildfleet_trust::ClientTrust) -> Result<i32> {
    let pipeline = match buildfleet_coordinator::pipeline::parse_file(&args.file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(exit::USAGE);
        }
    };
    let Some(step) = pipeline.step(&args.step) else {
        let names: Vec<&str> = pipeline.steps().map(|s| s.name.as_str()).collect();
        eprintln!(
            "error: no step `{}` in {} (steps: {})",
            args.step,
            args.file.display(),
            names.join(", ")
        );
        return Ok(exit::USAGE);
    };
    if let Some(Split::List(command)) = &step.split {
        eprintln!(
            "error: step `{}` takes its items from `{command}`, which a runner lists at run time; its shards' keys cannot be computed before a run",
            step.name
        );
        return Ok(exit::USAGE);
    }
    if let Some(shard) = args.shard {
        if shard >= step.shards.max() {
            eprintln!(
                "error: step `{}` has at most {} shard(s); --shard {shard} does not exist",
                step.name,
                step.shards.max()
            );
            return Ok(exit::USAGE);
        }
    }
    let work_dir = args
        .dir
        .clone()
        .unwrap_or_else(|| crate::submit::pipeline_dir(&args.file));
    let project = crate::submit::project_name(args.project.as_deref(), &work_dir);

    let embedded = match &args.cache {
        Some(_) => None,
        None => {
            let data: PathBuf = args
                .data
                .clone()
                .unwrap_or_else(crate::fleet::default_data_dir);
            Some(EmbeddedFleet::start_cache_only(&data).await?)
        }
    };
    let url = args
        .cache
        .clone()
        .or_else(|| embedded.as_ref().map(|f| f.cache_url.clone()))
        .expect("one of the two is set");
    let trust = embedded.as_ref().map_or(trust, |f| &f.client);
    // The scopes the run would read: its ref's overlay over the shared
    // scope (or the shared one alone on a protected ref).
    let given = crate::context::Given {
        git_ref: args.git_ref.clone(),
        ..Default::default()
    };
    let context = crate::context::detect(&given, &work_dir, &|name| std::env::var(name).ok());
    let scope = CoordinatorConfig::default().cache_scope(&context.git_ref);
    let cas = CasClient::connect_with(&url, trust).await?.scoped(&scope);
    let mut out = std::io::stdout().lock();
    let result = explain_step(
        &cas, &pipeline, step, args.shard, &work_dir, &project, &mut out,
    )
    .await;
    drop(out);
    if let Some(f) = embedded {
        f.shutdown().await;
    }
    result.map(|_| exit::GREEN)
}

async fn explain_step(
    cas: &CasClient,
    pipeline: &buildfleet_coordinator::pipeline::Pipeline,
    step: &buildfleet_coordinator::pipeline::Step,
    only: Option<u32>,
    work_dir: &Path,
    project: &str,
    out: &mut dyn Write,
) -> Result<()> {
    let snap = buildfleet_cache::snapshot(work_dir)
        .with_context(|| format!("snapshotting {}", work_dir.display()))?;
    // The listings of the current tree must be in the cache to diff against.
    cas.upload_snapshot(&snap)
        .await
        .context("uploading inputs")?;
    let platform = platform();
    // The context a `run` of this checkout would have: a step naming a
    // context variable is keyed by its value.
    let context = crate::context::detect(&Default::default(), work_dir, &|name| {
        std::env::var(name).ok()
    });
    // Split steps: the same items and the same plan a submission would make.
    let items = crate::split_items::for_pipeline(pipeline, &snap)?;
    let shard_items: Vec<Vec<String>> = match items.get(&step.name) {
        Some(list) if !list.is_empty() => {
            writeln!(
                out,
                "note: split computed without the coordinator's duration history; a run balanced by history may give shards other items"
            )?;
            buildfleet_coordinator::split::assign(list, step.shards.max())?
                .shards
                .into_iter()
                .map(|s| s.items)
                .collect()
        }
        _ => vec![Vec::new(); step.shards.max() as usize],
    };
    let shard_count = shard_items.len() as u32;
    for shard in (0..shard_count).filter(|s| only.is_none_or(|o| o == *s)) {
        let label = format!("{}#{shard}", step.name);
        let items = shard_items[shard as usize].clone();
        let lease = pipeline.shard_lease(
            step,
            shard,
            shard_count,
            items,
            snap.root,
            project,
            &context,
        );
        let report = match &lease.action_cache_off {
            Some(why) => CacheReport::step(CacheOutcome::Disabled, String::new(), why.clone()),
            None => {
                let spec = ActionSpec::for_shard(&lease, platform.clone());
                let mut r = match action::find(cas, &spec).await {
                    Found::Hit(key, result) => CacheReport::step(
                        CacheOutcome::Hit,
                        key.digest.to_string(),
                        format!(
                            "a run now would reuse this result, {}",
                            result.provenance.describe()
                        ),
                    ),
                    Found::Miss(key, why) => {
                        let id = key.map(|k| k.digest.to_string());
                        CacheReport::step(CacheOutcome::Miss, id.unwrap_or_default(), why)
                    }
                };
                if r.outcome == CacheOutcome::Hit && !step.verify.is_empty() {
                    r.detail.push_str(
                        "; `verify:` still runs after the hit, and a failing check fails the step (cached result no longer holds)",
                    );
                }
                r
            }
        };
        writeln!(out, "{label:<16} {}", report.log_line())?;
        for name in &step.caches {
            let Some(def) = pipeline.caches.get(name) else {
                continue;
            };
            let line = match dependency::key(def, work_dir, &platform, project) {
                Ok(keyed) => dependency::find(cas, &keyed).await.report.log_line(),
                Err(e) => format!("cache `{name}`: {e}"),
            };
            writeln!(out, "{label:<16} {line}")?;
        }
    }
    Ok(())
}
