//! `/runs/ID`: one run — the time chart, approvals with buttons for those
//! allowed to press them, every shard with its cache decisions and a link
//! to its live log, failed and flaky tests, artifacts and notices. The
//! part that changes (`#live`) is fetched again every second until the
//! run ends.

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use buildfleet_model::{ArtifactKind, RunStatus, State as RunState, TestOutcome};
use buildfleet_trust::Caller;

use super::auth::{same_origin, Refusal, DECIDE, GET};
use super::gantt::{self, Chart};
use super::html::{badge, escape, page, ratio, segment};
use super::{Dashboard, Shared};

/// Swaps `#live` for a fresh copy every second until the run ends,
/// except while someone types in it (a reason for a rejection).
const SCRIPT: &str = r#"
const ended=s=>['succeeded','failed','timed_out','cancelled','skipped','cached','runner_lost','condition_false'].includes(s);
async function refresh(){
  if(ended(document.body.dataset.runState))return;
  const live=document.getElementById('live');
  if(!(live.contains(document.activeElement)&&document.activeElement.tagName==='INPUT')){
    try{const r=await fetch(location.pathname+'/live',{credentials:'same-origin',cache:'no-store'});
      if(r.ok){const t=document.createElement('div');t.innerHTML=await r.text();const n=t.firstElementChild;
        if(n){live.replaceWith(n);document.body.dataset.runState=n.dataset.runState;}}}catch(e){}
  }
  setTimeout(refresh,1000);
}
setTimeout(refresh,1000);
"#;

/// The run as this caller may see it: its snapshot, its chart, and why
/// the caller may not decide its approvals (`None`: it may).
fn admitted_view(
    d: &Dashboard,
    headers: &HeaderMap,
    uri: &Uri,
    id: &str,
) -> Result<(RunStatus, Chart, Option<String>), Refusal> {
    let caller = d.admit(headers, GET, uri)?;
    d.hub.check_run(&caller, id, "read")?;
    let now = super::now_ms();
    let (status, chart) = d.hub.read(|s| {
        s.run(id).map(|r| {
            let status = r.status();
            let chart = gantt::layout(&status, r.events().all(), now);
            (status, chart)
        })
    })?;
    let refusal = decide_refusal(d, headers, uri, &caller, id);
    Ok((status, chart, refusal))
}

/// Why this caller may not decide approvals of the run (`None`: it may).
fn decide_refusal(
    d: &Dashboard,
    headers: &HeaderMap,
    uri: &Uri,
    caller: &Caller,
    id: &str,
) -> Option<String> {
    if let Err(r) = d.admit(headers, DECIDE, uri) {
        return Some(r.message().to_owned());
    }
    d.hub.may_decide(caller, id).err().map(|e| e.to_string())
}

pub async fn page_route(
    State(d): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Html<String>, Refusal> {
    let (status, chart, refusal) = admitted_view(&d, &headers, &uri, &id)?;
    let content = format!(
        r#"<h1>Run <code>{}</code></h1>{}"#,
        escape(&id),
        live(&status, &chart, refusal.as_deref())
    );
    let attrs = format!(r#"data-run-state="{}""#, status.state.label());
    Ok(page(&format!("run {id}"), &attrs, &content, SCRIPT))
}

/// `#live` alone, for the page's refresh.
pub async fn live_fragment(
    State(d): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Html<String>, Refusal> {
    let (status, chart, refusal) = admitted_view(&d, &headers, &uri, &id)?;
    Ok(Html(live(&status, &chart, refusal.as_deref())))
}

fn live(status: &RunStatus, chart: &Chart, refusal: Option<&str>) -> String {
    let (hits, lookups) = super::runs_page::cache_use(status);
    let mut out = format!(
        r#"<div id="live" data-run-state="{state}"><div class="box">{badge} <span>{context}</span> · <span>{took}</span> · cache hits {cache} · <code>{pipeline}</code></div>"#,
        state = status.state.label(),
        badge = badge(&status.state),
        context = escape(&status.context.describe()),
        took = super::html::took(status, super::now_ms()),
        cache = ratio(hits, lookups),
        pipeline = escape(&status.pipeline_path),
    );
    out.push_str(&approvals(status, refusal));
    out.push_str(&timeline(chart));
    out.push_str(&steps(status));
    out.push_str(&tests(status));
    out.push_str(&artifacts(status));
    out.push_str(&notices(status));
    out.push_str("</div>");
    out
}

fn approvals(status: &RunStatus, refusal: Option<&str>) -> String {
    let waiting: Vec<&str> = status
        .steps
        .iter()
        .filter(|s| s.state == RunState::AwaitingApproval)
        .map(|s| s.name.as_str())
        .collect();
    if waiting.is_empty() {
        return String::new();
    }
    let mut out = String::from(r#"<h2>Waiting for approval</h2>"#);
    for step in waiting {
        let action = format!(
            "/runs/{}/steps/{}/decide",
            segment(&status.run_id),
            segment(step)
        );
        match refusal {
            None => out.push_str(&format!(
                r#"<div class="box"><b>{name}</b> waits for approval. <form class="approval inline" data-step="{name}" method="post" action="{action}"><input type="text" name="reason" placeholder="reason (needed to reject)" size="24"> <button class="approve" name="decision" value="approve">Approve</button> <button class="reject" name="decision" value="reject">Reject</button></form></div>"#,
                name = escape(step),
            )),
            Some(why) => out.push_str(&format!(
                r#"<div class="box"><b>{}</b> waits for approval; you may not decide it: {}</div>"#,
                escape(step),
                escape(why)
            )),
        }
    }
    out
}

fn timeline(chart: &Chart) -> String {
    let legend: String = [
        ("queued", "#eac54f", "waited for a runner"),
        ("running", "#0969da", "running"),
        ("succeeded", "#1a7f37", "succeeded"),
        ("retried", "#4ac26b", "succeeded after a retry"),
        ("cached", "#8250df", "from the cache"),
        (
            "skipped",
            "#8c959f",
            "skipped (red outline: because something failed)",
        ),
        ("failed", "#cf222e", "failed"),
    ]
    .iter()
    .map(|(_, colour, words)| format!(r#"<span><i style="background:{colour}"></i>{words}</span>"#))
    .collect();
    let untimed = if chart.timed || chart.bars.is_empty() {
        ""
    } else {
        r#"<p class="muted">This run was stored without event times: bars are in order only.</p>"#
    };
    format!(
        r#"<h2>Timeline</h2><div class="box"><div class="legend muted">{legend}<div>dashed outline: predicted · black border: critical path</div></div>{untimed}<div class="scroll">{}</div></div>"#,
        gantt::svg(chart)
    )
}

fn steps(status: &RunStatus) -> String {
    let mut rows = String::new();
    for step in &status.steps {
        if let Some(split) = &step.split {
            let actual = step.shards.iter().map(|s| s.duration_ms).max().unwrap_or(0);
            rows.push_str(&format!(
                r#"<tr><td colspan="7" class="muted">{} splits {} {} item(s) over {} shard(s): {}; predicted {} per shard, took {}</td></tr>"#,
                escape(&step.name),
                split.items,
                escape(&split.source),
                step.shards.len(),
                escape(&split.shard_choice),
                buildfleet_model::duration::fmt_ms(split.predicted_ms),
                buildfleet_model::duration::fmt_ms(actual),
            ));
        }
        for s in &step.shards {
            let cache: String = s
                .cache
                .iter()
                .map(|c| format!("<div>{}</div>", escape(&c.log_line())))
                .collect();
            let predicted = match s.predicted_ms {
                0 => String::new(),
                p => format!(" / {} predicted", buildfleet_model::duration::fmt_ms(p)),
            };
            rows.push_str(&format!(
                r#"<tr class="shard" data-step="{name}" data-shard="{i}"><td>{name}#{i}<div class="muted">{stage}</div></td><td>{badge}<div class="muted">{detail}</div></td><td>{runner}</td><td class="num">{attempt}</td><td class="num">{took}{predicted}</td><td>{cache}</td><td><a href="/runs/{run}/logs/{step}/{i}">log</a></td></tr>"#,
                name = escape(&step.name),
                i = s.index,
                stage = escape(&step.stage),
                badge = badge(&s.state),
                detail = escape(&s.state.to_string()),
                runner = escape(s.runner.as_deref().unwrap_or("")),
                attempt = s.attempt,
                took = buildfleet_model::duration::fmt_ms(s.duration_ms),
                run = segment(&status.run_id),
                step = segment(&step.name),
            ));
        }
    }
    format!(
        r#"<h2>Steps</h2><div class="box scroll"><table id="steps"><thead><tr><th>shard</th><th>state</th><th>runner</th><th>attempts</th><th>took</th><th>cache</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>"#
    )
}

fn tests(status: &RunStatus) -> String {
    let mut rows = String::new();
    for step in &status.steps {
        for s in &step.shards {
            for t in s.tests.iter().filter(|t| t.outcome.is_failure() || t.flaky) {
                let what = match (t.outcome, t.flaky, t.quarantined) {
                    (_, _, true) => "failed (quarantined)",
                    (TestOutcome::Passed, true, _) => "flaky (passed on retry)",
                    (_, true, _) => "flaky",
                    _ => "failed",
                };
                rows.push_str(&format!(
                    r#"<tr class="test"><td><code>{}</code></td><td>{}#{}</td><td>{what}</td><td><code>{}</code></td></tr>"#,
                    escape(&t.id),
                    escape(&step.name),
                    s.index,
                    escape(&t.message.chars().take(300).collect::<String>()),
                ));
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        r#"<h2>Failed and flaky tests</h2><div class="box scroll"><table id="tests"><tbody>{rows}</tbody></table></div>"#
    )
}

fn artifacts(status: &RunStatus) -> String {
    let mut rows = String::new();
    for step in &status.steps {
        for s in &step.shards {
            for a in &s.outputs {
                let link = match a.kind {
                    ArtifactKind::File { .. } => format!(
                        r#"<a class="artifact" href="/runs/{}/artifacts/{}/{}">{}</a>"#,
                        segment(&status.run_id),
                        a.digest.to_hex(),
                        a.digest.size_bytes,
                        escape(&a.path)
                    ),
                    ArtifactKind::Directory => escape(&a.path),
                };
                rows.push_str(&format!(
                    r#"<tr><td>{link}</td><td>{}#{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                    escape(&step.name),
                    s.index,
                    a.kind.name(),
                    bytesize::ByteSize(a.digest.size_bytes),
                ));
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        r#"<h2>Artifacts</h2><div class="box scroll"><p class="muted">All of them: <code>buildfleet artifacts {} --out DIR</code></p><table id="artifacts"><tbody>{rows}</tbody></table></div>"#,
        escape(&status.run_id)
    )
}

fn notices(status: &RunStatus) -> String {
    if status.notices.is_empty() {
        return String::new();
    }
    let items: String = status
        .notices
        .iter()
        .map(|n| format!("<li><b>{}</b>: {}</li>", n.kind.name(), escape(&n.text)))
        .collect();
    format!(r#"<h2>Notices</h2><div class="box"><ul>{items}</ul></div>"#)
}

#[derive(serde::Deserialize)]
pub struct Decision {
    decision: String,
    #[serde(default)]
    reason: String,
}

pub async fn decide(
    State(d): Shared,
    Path((id, step)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<Decision>,
) -> Response {
    let result = (|| {
        same_origin(&headers)?;
        let caller = d.admit(&headers, DECIDE, &uri)?;
        let approve = match form.decision.as_str() {
            "approve" => true,
            "reject" if !form.reason.trim().is_empty() => false,
            "reject" => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "a rejection needs a reason: type it beside the button".into(),
                ))
            }
            other => {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    format!("unknown decision `{other}`: approve or reject"),
                ))
            }
        };
        // Without tokens nobody is named; say where the decision came from.
        let claimed = if caller.owner().is_none() {
            "dashboard"
        } else {
            ""
        };
        d.hub
            .decide_as(&caller, &id, &step, approve, claimed, form.reason.trim())?;
        Ok::<_, Refusal>(())
    })();
    match result {
        Ok(()) => Redirect::to(&format!("/runs/{}", segment(&id))).into_response(),
        Err(r) => r.into_response(),
    }
}
