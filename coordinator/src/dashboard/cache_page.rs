//! `/cache`: how the cache serves the runs this caller may see — hit
//! ratio over time, the keys that miss most with why, use per scope —
//! and the store's own size and evictions, read from the cache's
//! `/metrics` when the coordinator is told where that is.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Html;
use buildfleet_model::{CacheOutcome, CacheScope, RunStatus};

use super::auth::{Refusal, LIST_RUNS};
use super::html::{escape, page, ratio};
use super::Shared;

/// Runs the page learns from.
const RUNS_READ: usize = 500;
/// Hours of hit ratio shown.
const HOURS: u64 = 24;

#[derive(Default)]
struct Miss {
    count: u32,
    detail: String,
    last_run: String,
}

pub async fn page_route(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Html<String>, Refusal> {
    let caller = d.admit(&headers, LIST_RUNS, &uri)?;
    let runs = d
        .hub
        .read(|s| s.newest_runs(RUNS_READ, |o| caller.may_act_on(o)));
    let store = match &d.hub.config.cache_metrics_url {
        Some(url) => store_figures(url).await,
        None => r#"<p class="muted">Start the coordinator with <code>--cache-metrics-url http://CACHE:PORT/metrics</code> to show the store's size and evictions here.</p>"#.into(),
    };
    let scope_of = |r: &RunStatus| d.hub.config.cache_scope(&r.context.git_ref);
    let content = format!(
        r#"<h1>Cache</h1><section id="cache"><h2>Store</h2><div class="box scroll">{store}</div><h2>Hit ratio by hour</h2><div class="box scroll">{}</div><h2>Most missed keys</h2><div class="box scroll">{}</div><h2>Scopes</h2><div class="box scroll">{}</div></section>"#,
        by_hour(&runs, super::now_ms()),
        top_misses(&runs),
        scopes(&runs, scope_of),
    );
    Ok(page("cache", "", &content, ""))
}

fn lookups(r: &RunStatus) -> impl Iterator<Item = &buildfleet_model::CacheReport> {
    r.steps
        .iter()
        .flat_map(|s| &s.shards)
        .flat_map(|s| &s.cache)
        .filter(|c| {
            matches!(
                c.outcome,
                CacheOutcome::Hit | CacheOutcome::Miss | CacheOutcome::Fallback
            )
        })
}

fn by_hour(runs: &[RunStatus], now_ms: u64) -> String {
    let hour = 3_600_000;
    let mut buckets = vec![(0u32, 0u32); HOURS as usize];
    for r in runs {
        let age = now_ms.saturating_sub(r.created_unix_ms) / hour;
        let Some(b) = buckets.get_mut(age as usize) else {
            continue;
        };
        for c in lookups(r) {
            b.1 += 1;
            b.0 += u32::from(c.outcome == CacheOutcome::Hit);
        }
    }
    let mut svg = String::from(
        r#"<svg id="hit-ratio" viewBox="0 0 480 110" width="480" height="110" role="img" aria-label="hit ratio by hour">"#,
    );
    for (i, (hits, n)) in buckets.iter().enumerate() {
        let x = 460 - i as u32 * 19;
        if *n == 0 {
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="98" width="14" height="2" fill="#d0d7de"><title>{i}h ago: no lookups</title></rect>"##
            );
            continue;
        }
        let h = 90 * hits / n;
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{}" width="14" height="{}" fill="#8250df"><title>{i}h ago: {}</title></rect>"##,
            100 - h,
            h.max(1),
            ratio(*hits, *n)
        );
    }
    svg.push_str(r##"<text x="0" y="108" font-size="10" fill="#59636e">24 h ago</text><text x="440" y="108" font-size="10" fill="#59636e">now</text></svg>"##);
    svg
}

fn top_misses(runs: &[RunStatus]) -> String {
    let mut misses: BTreeMap<(String, String), Miss> = BTreeMap::new();
    // Newest first: the first detail seen is the latest explanation.
    for r in runs {
        for c in lookups(r).filter(|c| c.outcome == CacheOutcome::Miss) {
            let m = misses
                .entry((c.cache.subject(), c.key.clone()))
                .or_insert_with(|| Miss {
                    detail: c.detail.clone(),
                    last_run: r.run_id.clone(),
                    ..Miss::default()
                });
            m.count += 1;
        }
    }
    let mut top: Vec<_> = misses.into_iter().collect();
    top.sort_by_key(|m| std::cmp::Reverse(m.1.count));
    if top.is_empty() {
        return r#"<p class="muted">No misses in the runs held.</p>"#.into();
    }
    let rows: String = top
        .iter()
        .take(20)
        .map(|((cache, key), m)| {
            format!(
                r#"<tr class="miss"><td>{}</td><td><code>{}</code></td><td class="num">{}</td><td>{}</td><td><a href="/runs/{}"><code>{}</code></a></td></tr>"#,
                escape(cache),
                escape(key),
                m.count,
                escape(&m.detail),
                super::html::segment(&m.last_run),
                escape(&m.last_run)
            )
        })
        .collect();
    format!(
        r#"<table id="misses"><thead><tr><th>cache</th><th>key</th><th>misses</th><th>why (latest)</th><th>latest run</th></tr></thead><tbody>{rows}</tbody></table><p class="muted">Why a step's result missed, against the run before it: <code>buildfleet cache explain</code>.</p>"#
    )
}

fn scopes(runs: &[RunStatus], scope_of: impl Fn(&RunStatus) -> CacheScope) -> String {
    let mut per: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for r in runs {
        let e = per.entry(scope_of(r).write).or_default();
        e.0 += 1;
        for c in lookups(r) {
            e.2 += 1;
            e.1 += u32::from(c.outcome == CacheOutcome::Hit);
        }
    }
    let rows: String = per
        .iter()
        .map(|(scope, (n, hits, lookups))| {
            format!(
                "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{n}</td><td class=\"num\">{}</td></tr>",
                escape(&CacheScope::describe(scope)),
                escape(scope),
                ratio(*hits, *lookups)
            )
        })
        .collect();
    format!(
        r#"<table id="scopes"><thead><tr><th>scope</th><th>instance</th><th>runs</th><th>hits</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// The store's figures from the cache's exposition; an unreachable cache
/// is said, not hidden.
async fn store_figures(url: &str) -> String {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(2))
        .build();
    let text = match client {
        Ok(c) => match c.get(url).send().await.and_then(|r| r.error_for_status()) {
            Ok(r) => r.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            return format!(
                r#"<p class="err">the cache's metrics at <code>{}</code> could not be read: {}</p>"#,
                escape(url),
                escape(&e)
            )
        }
    };
    let wanted = [
        ("buildfleet_cache_stored_bytes", "stored", true),
        ("buildfleet_cache_metadata_bytes", "metadata", true),
        ("buildfleet_cache_evicted_bytes_total", "evicted", true),
        (
            "buildfleet_cache_evicted_blobs_total",
            "blobs evicted",
            false,
        ),
    ];
    let mut rows = String::new();
    for (name, words, bytes) in wanted {
        let value = text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        });
        let shown = match value {
            Some(v) if bytes => bytesize::ByteSize(v as u64).to_string(),
            Some(v) => format!("{v}"),
            None => "not reported".into(),
        };
        let _ = write!(
            rows,
            r#"<tr><td>{words}</td><td class="num">{shown}</td></tr>"#
        );
    }
    format!(r#"<table id="store"><tbody>{rows}</tbody></table>"#)
}
