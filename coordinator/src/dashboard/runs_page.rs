//! `/`: the runs, newest first, with filters by state, ref, event, who
//! and pipeline, and each run's cache hit ratio.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Html;
use buildfleet_model::{CacheOutcome, RunStatus};

use super::auth::{Refusal, LIST_RUNS};
use super::html::{badge, escape, page, ratio, segment};
use super::Shared;

/// Runs the page considers (filters apply to these).
const RUNS_SHOWN: usize = 200;

#[derive(serde::Deserialize, Default)]
pub struct Filters {
    #[serde(default)]
    state: String,
    #[serde(default, rename = "ref")]
    git_ref: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    who: String,
    #[serde(default)]
    q: String,
}

impl Filters {
    fn keeps(&self, r: &RunStatus) -> bool {
        let has = |field: &str, want: &str| want.is_empty() || field.contains(want);
        (self.state.is_empty() || r.state.label() == self.state)
            && has(&r.context.git_ref, &self.git_ref)
            && has(&r.context.event, &self.event)
            && has(&r.context.actor, &self.who)
            && (has(&r.run_id, &self.q) || has(&r.pipeline_path, &self.q))
    }
}

/// Hits and lookups over a run's shards (hits, misses and fallbacks;
/// not saves, nor caching turned off).
pub fn cache_use(r: &RunStatus) -> (u32, u32) {
    let mut hits_lookups = (0, 0);
    for c in r
        .steps
        .iter()
        .flat_map(|s| &s.shards)
        .flat_map(|s| &s.cache)
    {
        match c.outcome {
            CacheOutcome::Hit => {
                hits_lookups.0 += 1;
                hits_lookups.1 += 1;
            }
            CacheOutcome::Miss | CacheOutcome::Fallback => hits_lookups.1 += 1,
            _ => {}
        }
    }
    hits_lookups
}

pub async fn page_route(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
    Query(f): Query<Filters>,
) -> Result<Html<String>, Refusal> {
    let caller = d.admit(&headers, LIST_RUNS, &uri)?;
    let runs = d
        .hub
        .read(|s| s.newest_runs(RUNS_SHOWN, |o| caller.may_act_on(o)));
    let now = super::now_ms();
    let mut rows = String::new();
    let shown: Vec<&RunStatus> = runs.iter().filter(|r| f.keeps(r)).collect();
    for r in &shown {
        let (hits, lookups) = cache_use(r);
        let shards = r.steps.iter().map(|s| s.shards.len()).sum::<usize>();
        let commit: String = r.context.commit.chars().take(10).collect();
        rows.push_str(&format!(
            r#"<tr class="run" data-run="{id}" data-state="{state}"><td><a href="/runs/{link}"><code>{id}</code></a><div class="muted">{pipeline}</div></td><td>{badge}</td><td>{git_ref}<div class="muted"><code>{commit}</code>{dirty}</div></td><td>{event}</td><td>{who}</td><td class="num">{took}<div class="muted">{ago} ago</div></td><td class="num">{shards}</td><td class="num">{cache}</td></tr>"#,
            id = escape(&r.run_id),
            link = segment(&r.run_id),
            state = r.state.label(),
            pipeline = escape(&r.pipeline_path),
            badge = badge(&r.state),
            git_ref = escape(&r.context.git_ref),
            commit = escape(&commit),
            dirty = if r.context.dirty { " (dirty)" } else { "" },
            event = escape(&r.context.event),
            who = escape(&r.context.actor),
            took = super::html::took(r, now),
            ago = buildfleet_model::duration::fmt_ms(now.saturating_sub(r.created_unix_ms)),
            cache = ratio(hits, lookups),
        ));
    }
    let states = [
        "",
        "running",
        "awaiting_approval",
        "succeeded",
        "failed",
        "cancelled",
        "timed_out",
    ];
    let options: String = states
        .iter()
        .map(|s| {
            let selected = if *s == f.state { " selected" } else { "" };
            let label = if s.is_empty() { "any state" } else { s };
            format!(r#"<option value="{s}"{selected}>{label}</option>"#)
        })
        .collect();
    let field = |name: &str, value: &str, hint: &str| {
        format!(
            r#"<label>{hint}<br><input type="text" name="{name}" value="{}" size="12"></label>"#,
            escape(value)
        )
    };
    let content = format!(
        r#"<h1>Runs</h1><form class="filters box" method="get" action="/"><label>state<br><select name="state">{options}</select></label>{}{}{}{}<button type="submit">Filter</button> <a href="/">clear</a></form><p class="muted">{} of {} runs held by the coordinator</p><div class="box scroll"><table id="runs"><thead><tr><th>run</th><th>state</th><th>ref · commit</th><th>event</th><th>who</th><th>took</th><th>shards</th><th>cache hits</th></tr></thead><tbody>{rows}</tbody></table></div>"#,
        field("ref", &f.git_ref, "ref"),
        field("event", &f.event, "event"),
        field("who", &f.who, "who"),
        field("q", &f.q, "run or pipeline"),
        shown.len(),
        runs.len(),
    );
    Ok(page("runs", "", &content, ""))
}
