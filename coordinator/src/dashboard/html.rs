//! The page shell every dashboard page shares: escaping, layout, styles
//! (one small stylesheet, readable on a phone: tables and the chart scroll
//! inside their own boxes, never the page), and the few formatting words.

use axum::response::Html;

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment (run id, step name) made safe inside a URL.
pub fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const STYLE: &str = r#"
:root{--ok:#1a7f37;--bad:#cf222e;--run:#0969da;--wait:#9a6700;--skip:#8c959f;--cache:#8250df;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;color:var(--fg);background:#f6f8fa}
header{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center;padding:.6rem 1rem;background:#24292f;color:#fff}
header a{color:#fff;text-decoration:none}header .brand{font-weight:600}
main{padding:1rem;max-width:1200px;margin:0 auto}
h1{font-size:1.25rem;margin:.2rem 0 .6rem;word-break:break-all}h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.box{background:#fff;border:1px solid var(--line);border-radius:6px;padding:.75rem;margin:.6rem 0}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);white-space:nowrap}td.num{text-align:right;white-space:nowrap}
.badge{display:inline-block;padding:0 .45rem;border-radius:1rem;font-size:12px;color:#fff;background:var(--skip);white-space:nowrap}
.s-succeeded,.s-cached{background:var(--ok)}.s-failed,.s-timed_out,.s-runner_lost{background:var(--bad)}
.s-running{background:var(--run)}.s-awaiting_approval,.s-pending,.s-waiting{background:var(--wait)}
.muted{color:var(--muted)}code{font-size:12px;word-break:break-all}
form.inline{display:inline}button{font:inherit;padding:.25rem .7rem;border-radius:6px;border:1px solid var(--line);background:#fff;cursor:pointer}
button.approve{background:var(--ok);color:#fff;border-color:var(--ok)}button.reject{background:var(--bad);color:#fff;border-color:var(--bad)}
input[type=text],input[type=password],input[type=search],select{font:inherit;padding:.25rem .4rem;border:1px solid var(--line);border-radius:6px;max-width:100%}
.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}
svg#gantt text{font:11px system-ui,sans-serif;fill:var(--fg)}svg#gantt .axis{fill:var(--muted)}svg#gantt .tick{stroke:#eaeef2}
svg#gantt .bar{fill:var(--skip)}svg#gantt .succeeded{fill:var(--ok)}svg#gantt .retried{fill:#4ac26b;stroke:var(--wait);stroke-width:2;stroke-dasharray:4 2}
svg#gantt .failed{fill:var(--bad)}svg#gantt .running{fill:var(--run)}svg#gantt .cached{fill:var(--cache)}
svg#gantt .queued,svg#gantt .waiting{fill:var(--wait)}svg#gantt .pending{fill:#fff;stroke:#d0d7de}svg#gantt .skipped{fill:#fff;stroke:var(--skip);stroke-dasharray:2 2}
svg#gantt .cancelled{fill:#d0d7de}svg#gantt .queue{fill:#eac54f;opacity:.7}
svg#gantt .predicted{fill:none;stroke:var(--muted);stroke-dasharray:3 3}
svg#gantt .critical{stroke:#000;stroke-width:2}svg#gantt .unrun-failure{stroke:var(--bad);stroke-width:2}
.legend span{margin-right:.8rem;display:inline-block}.legend i{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.25rem;vertical-align:-1px}
#log{font:12px/1.4 ui-monospace,monospace;background:#0d1117;color:#e6edf3;padding:.5rem;border-radius:6px;overflow-x:auto;white-space:pre}
#log .line.stderr{color:#ffa198}#log .line.system{color:#8b949e;font-style:italic}#log .hidden{display:none}
.err{color:var(--bad)}
"#;

/// A whole page. `body_attrs` go on `<body>` (e.g. `data-run-state`).
pub fn page(title: &str, body_attrs: &str, content: &str, script: &str) -> Html<String> {
    let script = match script {
        "" => String::new(),
        s => format!("<script>{s}</script>"),
    };
    Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>{title} · buildfleet</title><style>{STYLE}</style></head><body {body_attrs}><header><a class="brand" href="/">buildfleet</a><a href="/">runs</a><a href="/runners">runners</a><a href="/cache">cache</a><a href="/metrics">metrics</a></header><main>{content}</main>{script}</body></html>"#,
        title = escape(title),
    ))
}

/// A state as a coloured word.
pub fn badge(state: &buildfleet_model::State) -> String {
    format!(
        r#"<span class="badge s-{}">{}</span>"#,
        state.label(),
        escape(state.name())
    )
}

/// How long a run took, or has taken so far while it lasts.
pub fn took(run: &buildfleet_model::RunStatus, now_ms: u64) -> String {
    let ms = match run.state.is_terminal() {
        true => run.duration_ms,
        false => now_ms.saturating_sub(run.created_unix_ms),
    };
    buildfleet_model::duration::fmt_ms(ms)
}

/// `3/4 (75%)`, or `-` when nothing was looked up.
pub fn ratio(hits: u32, lookups: u32) -> String {
    match lookups {
        0 => "-".into(),
        n => format!("{hits}/{n} ({}%)", hits * 100 / n),
    }
}
