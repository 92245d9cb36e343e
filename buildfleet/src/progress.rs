//! Live progress lines and the final summary table.

use std::io::{self, Write};
use std::time::Instant;

use buildfleet_model::duration::fmt_ms;
use buildfleet_model::{CacheOutcome, Event, EventKind, LogStream, RunStatus, State};

pub struct Progress {
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn shard_label(step: &str, shard: u32) -> String {
    format!("{step}#{shard}")
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
        }
    }

    pub fn print(&mut self, ev: &Event, out: &mut dyn Write) -> io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        match &ev.kind {
            EventKind::State(c) => {
                let state = &c.state;
                match (&c.step, c.shard) {
                    (None, _) => writeln!(out, "[{t:7.2}s] run {state}"),
                    (Some(step), None) => writeln!(out, "[{t:7.2}s] step {step} {state}"),
                    // Shards become ready with their step; only a shard
                    // queued again after an attempt is news of its own.
                    (Some(_), Some(_))
                        if c.runner.is_none()
                            && matches!(state, State::Waiting | State::Pending) =>
                    {
                        Ok(())
                    }
                    (Some(step), Some(i)) => {
                        let on = match &c.runner {
                            Some(r) => format!(" on {r}"),
                            None => String::new(),
                        };
                        writeln!(out, "[{t:7.2}s]   {} {state}{on}", shard_label(step, i))
                    }
                }
            }
            // Said when the run was submitted ("run … submitted for …").
            EventKind::Context(_) => Ok(()),
            EventKind::Notice(n) => {
                writeln!(
                    out,
                    "[{t:7.2}s] {}: {}",
                    n.kind.name().to_uppercase(),
                    n.text
                )
            }
            EventKind::Log(l) => {
                let tag = match l.stream {
                    LogStream::Stderr => "!",
                    LogStream::System => "*",
                    LogStream::Stdout => "|",
                };
                let label = shard_label(&l.step, l.shard);
                let text = String::from_utf8_lossy(&l.data);
                for line in text.lines() {
                    writeln!(out, "{label} {tag} {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// The table every run ends with, then one line that says what failed and why.
pub fn summary(status: &RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut rows = vec![[
        "STEP".to_string(),
        "SHARD".into(),
        "STATE".into(),
        "DURATION".into(),
        "PREDICTED".into(),
        "ITEMS".into(),
        "RUNNER".into(),
    ]];
    let dash = |show: bool, text: String| if show { text } else { "-".to_owned() };
    for step in &status.steps {
        for sh in &step.shards {
            let mut state = sh.state.to_string();
            if let Some(code) = sh.muted_exit_code {
                state.push_str(&format!(
                    " (exit code {code} muted: its failed tests are quarantined)"
                ));
            }
            if sh.attempt > 1 {
                state.push_str(&format!(" ({} attempts)", sh.attempt));
            }
            rows.push([
                step.name.clone(),
                format!("{}/{}", sh.index, step.shards.len()),
                state,
                fmt_ms(sh.duration_ms),
                dash(sh.predicted_ms > 0, fmt_ms(sh.predicted_ms)),
                dash(step.split.is_some(), sh.items.to_string()),
                sh.runner.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        if step.shards.is_empty() {
            let state = step.state.to_string();
            rows.push([
                step.name.clone(),
                "-".into(),
                state,
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "run {} for {}",
        status.run_id,
        status.context.describe()
    )?;
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    if !status.notices.is_empty() {
        writeln!(out, "\nNOTICES")?;
        for n in &status.notices {
            writeln!(out, "  {}: {}", n.kind.name(), n.text)?;
        }
    }
    cache_section(status, out)?;
    crate::test_sections::split_section(status, out)?;
    crate::test_sections::failed_tests_section(status, out)?;
    crate::test_sections::flaky_section(status, out)?;
    crate::test_sections::quarantine_section(status, out)?;
    match &status.state {
        State::Succeeded => {
            let count = |f: fn(&State) -> bool| status.steps.iter().filter(|s| f(&s.state)).count();
            let cached = count(|s| *s == State::Cached);
            let skipped = count(|s| matches!(s, State::ConditionFalse { .. }));
            let cached = if cached > 0 {
                format!(" ({cached} from cache)")
            } else {
                String::new()
            };
            // Steps skipped by their condition did no work: never counted
            // among those that succeeded.
            let skipped = if skipped > 0 {
                format!(", {skipped} skipped (condition false)")
            } else {
                String::new()
            };
            writeln!(
                out,
                "\nPASSED: run {} — {} steps succeeded{cached}{skipped} in {}",
                status.run_id,
                status.steps.len() - count(|s| matches!(s, State::ConditionFalse { .. })),
                fmt_ms(status.duration_ms)
            )
        }
        _ => {
            writeln!(out, "\nFAILED: run {} — {}", status.run_id, status.state)?;
            for step in &status.steps {
                for sh in step.shards.iter().filter(|sh| !sh.state.passes()) {
                    writeln!(out, "  {} shard {}: {}", step.name, sh.index, sh.state)?;
                }
            }
            Ok(())
        }
    }
}

/// Every cache hit, fallback and miss (with its reason) and every failed
/// save, per shard. Saves that worked are only in the shard logs.
fn cache_section(status: &RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    let mut failed_saves = 0;
    for step in &status.steps {
        for sh in &step.shards {
            for r in &sh.cache {
                match r.outcome {
                    CacheOutcome::Saved => continue,
                    CacheOutcome::SaveFailed => failed_saves += 1,
                    _ => {}
                }
                let mut line = format!(
                    "  {:<16} {}: {}",
                    shard_label(&step.name, sh.index),
                    r.cache.subject(),
                    r.outcome.name()
                );
                if !r.detail.is_empty() {
                    line.push_str(&format!(" — {}", r.detail));
                }
                lines.push(line);
            }
        }
    }
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nCACHE")?;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    if failed_saves > 0 {
        writeln!(
            out,
            "WARNING: {failed_saves} cache save(s) failed; the steps' results stand, but the next run will not reuse them"
        )?;
    }
    Ok(())
}

/// Green only if the run is and every step passed (succeeded, or was
/// skipped by its condition).
pub fn is_green(status: &RunStatus) -> bool {
    status.state.is_green() && status.steps.iter().all(|s| s.state.passes())
}
