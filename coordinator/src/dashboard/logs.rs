//! `/runs/ID/logs/STEP/SHARD`: one shard's log, followed live over
//! server-sent events. The events are the run's own (what `Watch` sends:
//! masked and capped by the runner), cut into whole lines per stream,
//! with ANSI colours rendered as escaped HTML. Each SSE id is the event
//! number after which no part of a line is pending, so a reconnecting
//! browser resumes exactly (`Last-Event-ID`).

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{Html, IntoResponse, Response};
use buildfleet_model::{Event, EventKind, LogStream};
use futures::StreamExt;

use super::auth::{Refusal, WATCH};
use super::html::{escape, page, segment};
use super::Shared;

/// Appends each line as it arrives; marks the log ended; filters by the
/// search box.
const SCRIPT: &str = r#"
const log=document.getElementById('log'),search=document.getElementById('search'),count=document.getElementById('count');
function show(line){const q=search.value;line.classList.toggle('hidden',q!==''&&!line.textContent.includes(q));}
function filter(){let n=0;for(const l of log.children){show(l);if(!l.classList.contains('hidden'))n++;}count.textContent=n+' line(s)';}
search.addEventListener('input',filter);
const es=new EventSource(location.pathname+'/stream');
es.addEventListener('line',e=>{const m=JSON.parse(e.data);const d=document.createElement('div');d.className='line '+m.stream;d.innerHTML=m.html;show(d);
  const end=log.scrollTop+log.clientHeight>=log.scrollHeight-4;log.appendChild(d);if(end)log.scrollTop=log.scrollHeight;count.textContent=log.children.length+' line(s)';});
es.addEventListener('end',e=>{log.dataset.stream='ended';document.getElementById('state').textContent=e.data;es.close();});
"#;

pub async fn page_route(
    State(d): Shared,
    Path((id, step, shard)): Path<(String, String, u32)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Html<String>, Refusal> {
    let caller = d.admit(&headers, WATCH, &uri)?;
    d.hub.check_run(&caller, &id, "watch")?;
    let known = d.hub.read(|s| {
        s.run(&id).map(|r| {
            r.status()
                .steps
                .iter()
                .any(|st| st.name == step && st.shards.iter().any(|s| s.index == shard))
        })
    })?;
    if !known {
        return Err(Refusal::new(
            axum::http::StatusCode::NOT_FOUND,
            format!("run {id} has no shard {shard} of a step `{step}`"),
        ));
    }
    let content = format!(
        r#"<h1><a href="/runs/{run_link}">{run}</a> · {step}#{shard}</h1><div class="filters box"><label>search<br><input type="search" id="search" placeholder="text in a line"></label><span class="muted" id="count">0 line(s)</span><span class="muted" id="state">following…</span></div><div id="log" data-stream="open"></div><p class="muted">The live stream, masked and capped as every watcher sees it; the whole log: <code>buildfleet logs {run} {step} --shard {shard}</code></p>"#,
        run_link = segment(&id),
        run = escape(&id),
        step = escape(&step),
    );
    Ok(page(&format!("{step}#{shard}"), "", &content, SCRIPT))
}

/// Lines cut from a shard's chunks, per stream.
#[derive(Default)]
struct Lines {
    pending: [Vec<u8>; 3],
}

fn slot(stream: LogStream) -> (usize, &'static str) {
    match stream {
        LogStream::Stdout => (0, "stdout"),
        LogStream::Stderr => (1, "stderr"),
        LogStream::System => (2, "system"),
    }
}

impl Lines {
    /// Whole lines of `data` (and what was pending before them).
    fn feed(&mut self, stream: LogStream, data: &[u8]) -> Vec<(&'static str, String)> {
        let (i, name) = slot(stream);
        let buf = &mut self.pending[i];
        buf.extend_from_slice(data);
        let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = buf.split_off(last + 1);
        let whole = std::mem::replace(buf, rest);
        String::from_utf8_lossy(&whole)
            .lines()
            .map(|l| (name, l.to_owned()))
            .collect()
    }

    /// What is left without a newline, at the shard's end.
    fn flush(&mut self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for stream in [LogStream::Stdout, LogStream::Stderr, LogStream::System] {
            let (i, name) = slot(stream);
            let rest = std::mem::take(&mut self.pending[i]);
            if !rest.is_empty() {
                out.push((name, String::from_utf8_lossy(&rest).into_owned()));
            }
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.pending.iter().all(Vec::is_empty)
    }
}

fn line_event(stream: &str, text: &str) -> Sse {
    // A line the converter cannot read is shown as plain escaped text.
    let html = ansi_to_html::convert(text).unwrap_or_else(|_| escape(text));
    let data = serde_json::json!({ "stream": stream, "html": html }).to_string();
    Sse::default().event("line").data(data)
}

/// The SSE events one run event makes for the shard `(step, shard)`.
fn events_for(e: &Event, step: &str, shard: u32, lines: &mut Lines) -> Vec<Sse> {
    let mut out = Vec::new();
    match &e.kind {
        EventKind::Log(l) if l.step == step && l.shard == shard => {
            out.extend(
                lines
                    .feed(l.stream, &l.data)
                    .iter()
                    .map(|(s, t)| line_event(s, t)),
            );
        }
        EventKind::State(c)
            if c.step.as_deref() == Some(step)
                && c.shard == Some(shard)
                && c.state.is_terminal() =>
        {
            out.extend(lines.flush().iter().map(|(s, t)| line_event(s, t)));
            out.push(
                Sse::default()
                    .event("end")
                    .data(format!("{step}#{shard} {}", c.state)),
            );
        }
        _ => {}
    }
    if lines.is_empty() {
        // Resuming after this event loses no part of a line.
        match out.pop() {
            Some(last) => out.push(last.id(e.seq.to_string())),
            None => out.push(Sse::default().comment("").id(e.seq.to_string())),
        }
    }
    out
}

pub async fn stream(
    State(d): Shared,
    Path((id, step, shard)): Path<(String, String, u32)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Refusal> {
    let caller = d.admit(&headers, WATCH, &uri)?;
    d.hub.check_run(&caller, &id, "watch")?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let watched = d.hub.watch(id, after)?;
    let mut lines = Lines::default();
    let events = tokio_stream::wrappers::ReceiverStream::new(watched).flat_map(move |e| {
        let out = match e {
            Ok(e) => events_for(&e, &step, shard, &mut lines),
            // Shutting down: the browser reconnects with its last id.
            Err(why) => vec![Sse::default().event("interrupted").data(why.to_string())],
        };
        futures::stream::iter(out.into_iter().map(Ok::<_, Infallible>))
    });
    Ok(axum::response::Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_become_whole_lines_per_stream_and_the_rest_waits() {
        let mut l = Lines::default();
        assert!(l.feed(LogStream::Stdout, b"seq-1\nse").len() == 1);
        assert!(l.feed(LogStream::Stderr, b"err\n").len() == 1);
        let got = l.feed(LogStream::Stdout, b"q-2\nseq-3\n");
        assert_eq!(
            got,
            vec![("stdout", "seq-2".into()), ("stdout", "seq-3".into())]
        );
        assert!(l.is_empty());
        l.feed(LogStream::Stdout, b"no newline");
        assert_eq!(l.flush(), vec![("stdout", "no newline".into())]);
    }
}
