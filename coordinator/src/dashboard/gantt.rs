//! The run page's time chart, laid out from the run's event log: one bar
//! per shard from its first start to its end, the wait before each
//! attempt, its predicted length, and the chain of shards that decided
//! when the run ended (the critical path). Plain data, then SVG: the
//! layout is tested without a browser.

use std::collections::BTreeMap;
use std::fmt::Write;

use buildfleet_model::{Event, EventKind, RunStatus, State};

use super::html::escape;

/// How a bar is drawn: one word, also its `data-mark` (the browser test
/// and scripts read it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Not startable yet: what it needs is still running.
    Pending,
    /// Ready, waiting for a runner.
    Queued,
    Waiting,
    Running,
    Succeeded,
    Cached,
    Retried,
    Skipped,
    Failed,
    Cancelled,
}

impl Mark {
    pub fn of(state: &State, attempt: u32) -> Mark {
        match state {
            State::Pending => Mark::Pending,
            State::Waiting => Mark::Queued,
            State::AwaitingApproval => Mark::Waiting,
            State::Running => Mark::Running,
            State::Succeeded if attempt > 1 => Mark::Retried,
            State::Succeeded => Mark::Succeeded,
            State::Cached => Mark::Cached,
            State::Skipped { .. } | State::ConditionFalse { .. } => Mark::Skipped,
            State::Failed(_) | State::TimedOut { .. } | State::RunnerLost { .. } => Mark::Failed,
            State::Cancelled { .. } => Mark::Cancelled,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mark::Pending => "pending",
            Mark::Queued => "queued",
            Mark::Waiting => "waiting",
            Mark::Running => "running",
            Mark::Succeeded => "succeeded",
            Mark::Cached => "cached",
            Mark::Retried => "retried",
            Mark::Skipped => "skipped",
            Mark::Failed => "failed",
            Mark::Cancelled => "cancelled",
        }
    }
}

/// One shard's row, in milliseconds since the run was created.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub step: String,
    pub stage: String,
    pub shard: u32,
    pub mark: Mark,
    /// The state in words (`failed (exit code 1)`), for the tooltip.
    pub state: String,
    pub runner: Option<String>,
    pub attempts: u32,
    /// Waits for a runner: `(queued, leased)` per attempt.
    pub waits: Vec<(u64, u64)>,
    /// From the first lease (or the decision, for a shard that never ran)
    /// to the end (or now).
    pub start: u64,
    pub end: u64,
    /// When it became ready to lease (the end of what it waited for).
    pub ready: u64,
    pub predicted_ms: u64,
    pub critical: bool,
    /// Not run because something it needed failed (`skipped`, not green),
    /// as opposed to a condition that said no.
    pub skipped_by_failure: bool,
}

/// The chart: bars in declaration order and the time axis' length.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub bars: Vec<Bar>,
    pub span_ms: u64,
    /// False when the run's events carry no times (stored by a version
    /// that kept none): the bars are then only in order.
    pub timed: bool,
}

#[derive(Default)]
struct Times {
    ready: Option<u64>,
    queued: Option<u64>,
    waits: Vec<(u64, u64)>,
    first_start: Option<u64>,
    end: Option<u64>,
    decided: Option<u64>,
}

/// Lays out `status` from its events; `now_ms` (Unix) ends running bars.
pub fn layout<'a>(
    status: &RunStatus,
    events: impl Iterator<Item = &'a Event>,
    now_ms: u64,
) -> Chart {
    let t0 = status.created_unix_ms;
    let rel = |at: u64| at.saturating_sub(t0);
    let mut times: BTreeMap<(String, u32), Times> = BTreeMap::new();
    let mut step_ready: BTreeMap<String, u64> = BTreeMap::new();
    let mut timed = false;
    for e in events {
        let EventKind::State(c) = &e.kind else {
            continue;
        };
        let Some(step) = &c.step else { continue };
        timed |= e.at_unix_ms > 0;
        let at = rel(e.at_unix_ms);
        let Some(shard) = c.shard else {
            if c.state == State::Waiting {
                step_ready.entry(step.clone()).or_insert(at);
            }
            continue;
        };
        let t = times.entry((step.clone(), shard)).or_default();
        match &c.state {
            // Ready (again, after an attempt): the wait for a runner starts.
            State::Waiting => {
                t.ready.get_or_insert(at);
                t.queued = Some(at);
            }
            State::Running => {
                let queued = t
                    .queued
                    .take()
                    .or(t.ready)
                    .or_else(|| step_ready.get(step).copied())
                    .unwrap_or(at);
                t.waits.push((queued, at));
                t.first_start.get_or_insert(at);
                t.end = None;
            }
            s if s.is_terminal() => {
                t.end = Some(at);
                t.decided.get_or_insert(at);
            }
            _ => {}
        }
    }
    let now = rel(now_ms);
    let mut bars = Vec::new();
    for step in &status.steps {
        for s in &step.shards {
            let t = times
                .remove(&(step.name.clone(), s.index))
                .unwrap_or_default();
            // The first time it could run: with its step, or later alone.
            let ready = [t.ready, step_ready.get(&step.name).copied()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(0);
            // Not started: at the moment it became ready, or, if it is not
            // ready yet, at the chart's right edge (now).
            let unstarted = match s.state {
                State::Pending => now,
                _ => ready,
            };
            let start = t.first_start.or(t.decided).unwrap_or(unstarted);
            let end = match (&s.state, t.end) {
                (state, Some(end)) if state.is_terminal() => end,
                _ if t.first_start.is_some() => now.max(start),
                _ => start,
            };
            let mut waits = t.waits;
            if let (Some(q), State::Waiting) = (t.queued, &s.state) {
                waits.push((q, now.max(q)));
            }
            bars.push(Bar {
                step: step.name.clone(),
                stage: step.stage.clone(),
                shard: s.index,
                mark: Mark::of(&s.state, s.attempt),
                state: s.state.to_string(),
                runner: s.runner.clone(),
                attempts: s.attempt,
                waits,
                start,
                end,
                ready,
                predicted_ms: s.predicted_ms,
                critical: false,
                skipped_by_failure: matches!(s.state, State::Skipped { .. }),
            });
        }
    }
    mark_critical(&mut bars);
    let span_ms = bars
        .iter()
        .flat_map(|b| [b.end, b.start + b.predicted_ms])
        .chain(std::iter::once(status.duration_ms))
        .max()
        .unwrap_or(0)
        .max(1);
    Chart {
        bars,
        span_ms,
        timed,
    }
}

/// Marks the chain that decided the end: the bar that ended last, then,
/// again and again, the bar of another step that ended last at or before
/// the moment the current one became ready (what it was waiting for).
fn mark_critical(bars: &mut [Bar]) {
    let ran = |b: &Bar| b.end > b.start || matches!(b.mark, Mark::Running);
    let Some(mut current) = (0..bars.len())
        .filter(|&i| ran(&bars[i]))
        .max_by_key(|&i| (bars[i].end, std::cmp::Reverse(i)))
    else {
        return;
    };
    loop {
        bars[current].critical = true;
        let ready = bars[current].ready;
        let step = bars[current].step.clone();
        let before = (0..bars.len())
            .filter(|&i| bars[i].step != step && !bars[i].critical && ran(&bars[i]))
            .filter(|&i| bars[i].end <= ready)
            .max_by_key(|&i| bars[i].end);
        match before {
            Some(i) => current = i,
            None => return,
        }
    }
}

const ROW: u32 = 24;
const LABEL: u32 = 190;
const PLOT: u32 = 760;

/// The chart as inline SVG: `svg#gantt`, one `rect.bar` per shard with
/// `data-step`, `data-shard` and `data-mark`.
pub fn svg(chart: &Chart) -> String {
    let height = ROW * (chart.bars.len() as u32 + 1) + 8;
    let width = LABEL + PLOT + 10;
    let x = |ms: u64| LABEL as f64 + (ms as f64 / chart.span_ms as f64) * PLOT as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg id="gantt" role="img" aria-label="shards on a time axis" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">"#
    );
    for tick in 0..=4u64 {
        let ms = chart.span_ms * tick / 4;
        let tx = x(ms);
        let anchor = match tick {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            r#"<line class="tick" x1="{tx:.1}" x2="{tx:.1}" y1="0" y2="{height}"/><text class="axis" x="{tx:.1}" y="14" text-anchor="{anchor}">{}</text>"#,
            buildfleet_model::duration::fmt_ms(ms)
        );
    }
    for (row, b) in chart.bars.iter().enumerate() {
        let y = ROW * (row as u32 + 1);
        let label = format!("{}#{}", b.step, b.shard);
        let _ = write!(
            out,
            r#"<text class="label" x="4" y="{}">{}</text>"#,
            y + 15,
            escape(&truncate(&label, 26))
        );
        for (q, l) in &b.waits {
            let (qx, lx) = (x(*q), x(*l));
            let _ = write!(
                out,
                r#"<rect class="queue" data-step="{}" data-shard="{}" x="{qx:.1}" y="{}" width="{:.1}" height="8"><title>waited for a runner {}</title></rect>"#,
                escape(&b.step),
                b.shard,
                y + 8,
                (lx - qx).max(0.5),
                buildfleet_model::duration::fmt_ms(l.saturating_sub(*q))
            );
        }
        if b.predicted_ms > 0 {
            let _ = write!(
                out,
                r#"<rect class="predicted" x="{:.1}" y="{}" width="{:.1}" height="20"><title>predicted {}</title></rect>"#,
                x(b.start),
                y + 2,
                x(b.start + b.predicted_ms) - x(b.start),
                buildfleet_model::duration::fmt_ms(b.predicted_ms)
            );
        }
        let (bx, bw) = (x(b.start), (x(b.end) - x(b.start)).max(3.0));
        let critical = if b.critical { " critical" } else { "" };
        // Skipped because something failed fails the run: outlined red.
        let critical = match b.skipped_by_failure {
            true => format!("{critical} unrun-failure"),
            false => critical.to_owned(),
        };
        let _ = write!(
            out,
            r#"<rect class="bar {mark}{critical}" data-step="{step}" data-shard="{shard}" data-mark="{mark}" x="{bx:.1}" y="{}" width="{bw:.1}" height="16" rx="2"><title>{title}</title></rect>"#,
            y + 4,
            mark = b.mark.name(),
            step = escape(&b.step),
            shard = b.shard,
            title = escape(&tooltip(b)),
        );
    }
    out.push_str("</svg>");
    out
}

fn tooltip(b: &Bar) -> String {
    let mut t = format!(
        "{}#{} ({}): {}, {}",
        b.step,
        b.shard,
        b.stage,
        b.state,
        buildfleet_model::duration::fmt_ms(b.end.saturating_sub(b.start))
    );
    if b.predicted_ms > 0 {
        let _ = write!(
            t,
            ", predicted {}",
            buildfleet_model::duration::fmt_ms(b.predicted_ms)
        );
    }
    if b.attempts > 1 {
        let _ = write!(t, ", {} attempts", b.attempts);
    }
    if let Some(r) = &b.runner {
        let _ = write!(t, ", on {r}");
    }
    if b.critical {
        t.push_str(", on the critical path");
    }
    t
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
#[path = "gantt_tests.rs"]
mod tests;
