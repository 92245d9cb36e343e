//! Summary sections about split steps and their tests: how the items were
//! divided (predicted against actual time), failed tests, flaky tests and
//! quarantined failures. Each names the shard whose log holds the output.

use std::io::{self, Write};

use buildfleet_model::duration::fmt_ms;
use buildfleet_model::{RunStatus, TestOutcome, TestResult};

use crate::progress::shard_label;

fn outcome_failed(t: &TestResult) -> Option<&'static str> {
    match t.outcome {
        TestOutcome::Failed => Some("failed"),
        TestOutcome::Error => Some("error"),
        TestOutcome::Passed | TestOutcome::Skipped => None,
    }
}

fn section(out: &mut dyn Write, title: String, lines: &[String]) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n{title}")?;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Per split step: items, shard choice, history coverage, and the
/// predicted time next to what the shards took.
pub fn split_section(status: &RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    for step in &status.steps {
        let Some(split) = &step.split else { continue };
        let took: Vec<u64> = step.shards.iter().map(|s| s.duration_ms).collect();
        let slowest = took.iter().copied().max().unwrap_or(0);
        let mean = took.iter().sum::<u64>() / took.len().max(1) as u64;
        let history = match split.without_history {
            0 => "all with history".to_owned(),
            n if n == split.items => "no history yet".to_owned(),
            n => format!(
                "{n} without history (predicted at the median {})",
                fmt_ms(split.estimate_ms)
            ),
        };
        let predicted = if split.predicted_ms > 0 {
            format!("predicted {}, ", fmt_ms(split.predicted_ms))
        } else {
            String::new()
        };
        lines.push(format!(
            "  {}: {} item(s) from {} over {} shard(s) ({}); {history}; {predicted}took {} (slowest shard; mean {}, slowest/mean {:.2})",
            step.name,
            split.items,
            split.source,
            step.shards.len(),
            split.shard_choice,
            fmt_ms(slowest),
            fmt_ms(mean),
            slowest as f64 / mean.max(1) as f64
        ));
        if !split.duplicates.is_empty() {
            lines.push(format!(
                "    listed more than once (run once): {}",
                split.duplicates.join(", ")
            ));
        }
    }
    section(out, "SPLIT".into(), &lines)
}

/// Tests the reports say failed or errored and that were not quarantined.
pub fn failed_tests_section(status: &RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    let mut total = 0usize;
    for step in &status.steps {
        for sh in &step.shards {
            total += sh.tests.len();
            for t in sh.tests.iter().filter(|t| !t.quarantined) {
                let Some(what) = outcome_failed(t) else {
                    continue;
                };
                let mut line = format!(
                    "  {:<16} {} {what} (report {})",
                    shard_label(&step.name, sh.index),
                    t.id,
                    t.report
                );
                if t.attempt > 1 {
                    line.push_str(&format!(", attempt {}", t.attempt));
                }
                if !t.message.is_empty() {
                    line.push_str(&format!(": {}", t.message));
                }
                lines.push(line);
            }
        }
    }
    section(
        out,
        format!("FAILED TESTS ({} of {total})", lines.len()),
        &lines,
    )
}

/// Tests that failed and then passed when re-run (`retries: { flaky: N }`).
pub fn flaky_section(status: &RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    for step in &status.steps {
        for sh in &step.shards {
            for t in sh.tests.iter().filter(|t| t.flaky) {
                lines.push(format!(
                    "  {:<16} {} failed, then passed on attempt {}",
                    shard_label(&step.name, sh.index),
                    t.id,
                    t.attempt
                ));
            }
        }
    }
    section(out, format!("FLAKY TESTS ({})", lines.len()), &lines)
}

/// Quarantined tests that failed: shown, but they did not fail the step.
pub fn quarantine_section(status: &RunStatus, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    for step in &status.steps {
        for sh in &step.shards {
            for t in sh.tests.iter().filter(|t| t.quarantined) {
                let line = match outcome_failed(t) {
                    Some(what) => format!(
                        "  {:<16} {} {what} — muted by the quarantine file",
                        shard_label(&step.name, sh.index),
                        t.id
                    ),
                    None => format!(
                        "  {:<16} {} passed — quarantined; consider removing it from the quarantine file",
                        shard_label(&step.name, sh.index),
                        t.id
                    ),
                };
                lines.push(line);
            }
        }
    }
    section(out, format!("QUARANTINED ({})", lines.len()), &lines)
}
