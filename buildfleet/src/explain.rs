//! `buildfleet cache explain FILE STEP`: what a run would reuse for a step,
//! and for every miss, what changed — computed with the runners' own key
//! code, against the same cache.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use buildfleet_cache::CasClient;
use buildfleet_coordinator::pipeline::Split;
use buildfleet_runner::caching::action::{self, ActionSpec, STEP_CACHE};
use buildfleet_runner::caching::{dependency, explain, platform, Outcome, Report};

use crate::cli::ExplainArgs;
use crate::exit;
use crate::fleet::EmbeddedFleet;

pub async fn run(args: ExplainArgs) -> Result<i32> {
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
    let cas = CasClient::connect(&url).await?;
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
        let spec = ActionSpec {
            project: project.to_owned(),
            step: step.name.clone(),
            command: step.run.clone(),
            env: pipeline.shard_env(step, shard, shard_count, &shard_items[shard as usize]),
            input_root: snap.root,
            input_globs: step.inputs.clone(),
            shard_index: shard,
            shard_count,
            outputs: step.outputs.clone(),
            platform: platform.clone(),
            verify: step.verify.clone(),
            secret_names: {
                let mut names = step.secrets.clone();
                names.sort();
                names.dedup();
                names
            },
        };
        let report = match pipeline.result_cache_off(step) {
            Some(why) => Report {
                cache: STEP_CACHE.into(),
                outcome: Outcome::Disabled,
                key: String::new(),
                detail: why,
            },
            None => {
                let mut r = step_report(cas, &spec).await;
                if r.outcome == Outcome::Hit && !step.verify.is_empty() {
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
            let line = match dependency::key(def, work_dir, &platform) {
                Ok(keyed) => dependency::find(cas, &keyed).await.report.log_line(),
                Err(e) => format!("cache `{name}`: {e}"),
            };
            writeln!(out, "{label:<16} {line}")?;
        }
    }
    Ok(())
}

async fn step_report(cas: &CasClient, spec: &ActionSpec) -> Report {
    let report = |outcome, key: String, detail: String| Report {
        cache: STEP_CACHE.into(),
        outcome,
        key,
        detail,
    };
    let key = match action::compute(cas, spec).await {
        Ok(k) => k,
        Err(e) => return report(Outcome::Miss, String::new(), e),
    };
    let id = key.digest.to_string();
    match action::lookup(cas, &key).await {
        Ok(Some(_)) => report(Outcome::Hit, id, "a run now would reuse this result".into()),
        Ok(None) => {
            let why = match action::previous(cas, spec).await {
                Ok(Some(old)) => explain::action_miss(cas, &old, &key.record).await,
                Ok(None) => format!(
                    "no earlier result for step `{}` shard {}/{} of project `{}` on {}",
                    spec.step, spec.shard_index, spec.shard_count, spec.project, spec.platform
                ),
                Err(e) => e,
            };
            report(Outcome::Miss, id, why)
        }
        Err(e) => report(Outcome::Miss, id, e),
    }
}
