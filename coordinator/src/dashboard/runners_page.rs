//! `/runners`: every connected runner — labels, slots, what it runs now,
//! free disk, whether it takes leases and why not, its last heartbeat.

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::Html;

use super::auth::{Refusal, LIST_RUNNERS};
use super::html::{escape, page};
use super::Shared;

pub async fn page_route(
    State(d): Shared,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Html<String>, Refusal> {
    let caller = d.admit(&headers, LIST_RUNNERS, &uri)?;
    let runners = d.hub.read(|s| s.runners());
    let now = super::now_ms();
    let mut rows = String::new();
    for r in &runners {
        let state = match r.availability() {
            None => r#"<span class="badge s-succeeded">available</span>"#.to_owned(),
            Some(why) => format!(
                r#"<span class="badge s-awaiting_approval">unavailable</span><div>{}</div>"#,
                escape(why)
            ),
        };
        let leases: String = r
            .leases
            .iter()
            .map(|l| {
                let seen = crate::acting::lease_as_seen(&caller, l);
                format!("<div><code>{}</code></div>", escape(&seen))
            })
            .collect();
        rows.push_str(&format!(
            r#"<tr class="runner" data-runner="{name}"><td>{name}<div class="muted"><code>{id}</code></div></td><td>{labels}</td><td class="num">{busy}/{slots}</td><td>{leases}</td><td class="num">{disk}</td><td>{state}</td><td class="num">{seen} ago</td><td class="muted">{isolation}</td></tr>"#,
            name = escape(&r.name),
            id = escape(&r.id),
            labels = escape(&r.labels.join(", ")),
            busy = r.busy,
            slots = r.slots,
            disk = r.disk_free.map_or("?".into(), |b| bytesize::ByteSize(b).to_string()),
            seen = buildfleet_model::duration::fmt_ms(
                now.saturating_sub(buildfleet_model::unix_ms(r.last_seen))
            ),
            isolation = escape(&r.isolation),
        ));
    }
    let content = format!(
        r#"<h1>Runners</h1><p class="muted">{} connected</p><div class="box scroll"><table id="runners"><thead><tr><th>runner</th><th>labels</th><th>busy</th><th>leases</th><th>disk free</th><th>state</th><th>last heartbeat</th><th>isolation</th></tr></thead><tbody>{rows}</tbody></table></div>"#,
        runners.len()
    );
    Ok(page("runners", "", &content, ""))
}
