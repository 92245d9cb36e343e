//! Live progress lines and the final summary table.

use std::io::{self, Write};
use std::time::Instant;

use buildfleet_model::duration::fmt_ms;
use buildfleet_model::state::State;
use buildfleet_proto::convert::state_from_wire;
use buildfleet_proto::v1 as pb;

pub struct Progress {
    started: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

fn state_of(s: &Option<pb::State>) -> String {
    match s.as_ref().map(state_from_wire) {
        Some(Ok(st)) => st.to_string(),
        Some(Err(e)) => format!("<bad state: {e}>"),
        None => "<no state>".into(),
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

    pub fn print(&mut self, ev: &pb::RunEvent, out: &mut dyn Write) -> io::Result<()> {
        let t = self.started.elapsed().as_secs_f64();
        match &ev.event {
            Some(pb::run_event::Event::State(c)) => {
                let state = state_of(&c.state);
                match (c.step.is_empty(), c.shard) {
                    (true, _) => writeln!(out, "[{t:7.2}s] run {state}"),
                    (false, None) => writeln!(out, "[{t:7.2}s] step {} {state}", c.step),
                    // Shards become ready with their step; only a shard
                    // queued again after an attempt is news of its own.
                    (false, Some(_))
                        if c.runner.is_empty()
                            && matches!(
                                c.state.as_ref().map(|s| s.kind),
                                Some(k) if k == pb::StateKind::Waiting as i32
                                    || k == pb::StateKind::Pending as i32
                            ) =>
                    {
                        Ok(())
                    }
                    (false, Some(i)) => {
                        let on = if c.runner.is_empty() {
                            String::new()
                        } else {
                            format!(" on {}", c.runner)
                        };
                        writeln!(out, "[{t:7.2}s]   {} {state}{on}", shard_label(&c.step, i))
                    }
                }
            }
            Some(pb::run_event::Event::Notice(n)) => {
                writeln!(out, "[{t:7.2}s] {}: {}", n.kind.to_uppercase(), n.text)
            }
            Some(pb::run_event::Event::Log(l)) => {
                let tag = match pb::LogStream::try_from(l.stream) {
                    Ok(pb::LogStream::Stderr) => "!",
                    Ok(pb::LogStream::System) => "*",
                    _ => "|",
                };
                let label = shard_label(&l.step, l.shard);
                let text = String::from_utf8_lossy(&l.data);
                for line in text.lines() {
                    writeln!(out, "{label} {tag} {line}")?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// The table every run ends with, then one line that says what failed and why.
pub fn summary(status: &pb::RunStatus, out: &mut dyn Write) -> io::Result<()> {
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
            let mut state = state_of(&sh.state);
            if sh.muted_exit_code != 0 {
                state.push_str(&format!(
                    " (exit code {} muted: its failed tests are quarantined)",
                    sh.muted_exit_code
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
                dash(!sh.runner.is_empty(), sh.runner.clone()),
            ]);
        }
        if step.shards.is_empty() {
            let state = state_of(&step.state);
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
            writeln!(out, "  {}: {}", n.kind, n.text)?;
        }
    }
    cache_section(status, out)?;
    crate::test_sections::split_section(status, out)?;
    crate::test_sections::failed_tests_section(status, out)?;
    crate::test_sections::flaky_section(status, out)?;
    crate::test_sections::quarantine_section(status, out)?;
    let run_state = status.state.as_ref().map(state_from_wire);
    match run_state {
        Some(Ok(State::Succeeded)) => {
            let cached = status
                .steps
                .iter()
                .filter(|s| {
                    matches!(
                        s.state.as_ref().map(state_from_wire),
                        Some(Ok(State::Cached))
                    )
                })
                .count();
            let cached = if cached > 0 {
                format!(" ({cached} from cache)")
            } else {
                String::new()
            };
            writeln!(
                out,
                "\nPASSED: run {} — {} steps succeeded{cached} in {}",
                status.run_id,
                status.steps.len(),
                fmt_ms(status.duration_ms)
            )
        }
        _ => {
            writeln!(
                out,
                "\nFAILED: run {} — {}",
                status.run_id,
                state_of(&status.state)
            )?;
            for step in &status.steps {
                for sh in &step.shards {
                    if let Some(Ok(s)) = sh.state.as_ref().map(state_from_wire) {
                        if !s.is_green() {
                            writeln!(out, "  {} shard {}: {s}", step.name, sh.index)?;
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

fn outcome_name(outcome: i32) -> &'static str {
    match pb::CacheOutcome::try_from(outcome) {
        Ok(pb::CacheOutcome::Hit) => "hit",
        Ok(pb::CacheOutcome::Fallback) => "fallback",
        Ok(pb::CacheOutcome::Miss) => "miss",
        Ok(pb::CacheOutcome::SaveFailed) => "cache-save-failed",
        Ok(pb::CacheOutcome::Saved) => "saved",
        Ok(pb::CacheOutcome::Disabled) => "off",
        Ok(pb::CacheOutcome::Unspecified) | Err(_) => "unknown",
    }
}

/// Every cache hit, fallback and miss (with its reason) and every failed
/// save, per shard. Saves that worked are only in the shard logs.
fn cache_section(status: &pb::RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    let mut failed_saves = 0;
    for step in &status.steps {
        for sh in &step.shards {
            for r in &sh.cache {
                let outcome = pb::CacheOutcome::try_from(r.outcome);
                if outcome == Ok(pb::CacheOutcome::Saved) {
                    continue;
                }
                if outcome == Ok(pb::CacheOutcome::SaveFailed) {
                    failed_saves += 1;
                }
                let subject = if r.cache == "step" {
                    "step result".to_owned()
                } else {
                    format!("cache {}", r.cache)
                };
                let mut line = format!(
                    "  {:<16} {subject}: {}",
                    shard_label(&step.name, sh.index),
                    outcome_name(r.outcome)
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

/// True only if the run and every step succeeded.
pub fn is_green(status: &pb::RunStatus) -> bool {
    let green = |s: &Option<pb::State>| matches!(s.as_ref().map(state_from_wire), Some(Ok(st)) if st.is_green());
    green(&status.state) && status.steps.iter().all(|s| green(&s.state))
}
