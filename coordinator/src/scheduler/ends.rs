//! What the end of a lease means: a listing's items become the step's
//! shards (planned from items and history), and an ended attempt is judged
//! (learned durations, flaky re-runs, quarantine) before its shard moves.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{Learned, Lesson, Scheduler, ShardReport};
use crate::pipeline::Split;
use crate::run::Run;
use buildfleet_model::state::State;

impl Scheduler {
    /// Divides a split step's items over shards using what history knows.
    pub(super) fn plan_step(&self, run: &mut Run, step: usize, items: &[String], now: Instant) {
        let def = run
            .pipeline()
            .step(run.steps()[step].name())
            .expect("run steps come from the pipeline")
            .clone();
        let source = match def.split {
            Some(Split::List(_)) => "list",
            _ => "files",
        };
        let known = if def.split_by == crate::pipeline::SplitBy::Count {
            BTreeMap::new()
        } else {
            match self.history.durations(&run.options().project, &def.name) {
                Ok(k) => k,
                Err(e) => {
                    warn!(run = %run.id(), step = %def.name, error = %e, "duration history unreadable; splitting without it");
                    let line = format!("duration history unreadable ({e}); splitting without it");
                    run.system_log(step, 0, &line);
                    BTreeMap::new()
                }
            }
        };
        let slots = self.slots_for(run.steps()[step].labels());
        let mut planned = crate::split::plan_split(
            source,
            def.shards,
            items,
            &known,
            slots,
            run.pipeline().stage_budget(),
        );
        if def.split_by == crate::pipeline::SplitBy::Count {
            planned.info.shard_choice.push_str("; `by: count`");
        }
        info!(run = %run.id(), step = %def.name, items = items.len(), shards = planned.shards.len(), without_history = planned.info.without_history, "split planned");
        run.set_split(step, planned, now);
    }

    /// A listing lease ended: plan the shards from its items, or fail the
    /// step saying why there are none.
    pub(super) fn end_listing(
        &mut self,
        run: &mut Run,
        step: usize,
        report: ShardReport,
        now: Instant,
    ) {
        let command = match &run
            .pipeline()
            .step(run.steps()[step].name())
            .and_then(|d| d.split.clone())
        {
            Some(Split::List(c)) => c.clone(),
            _ => String::new(),
        };
        let failed = |why: String| State::failed(format!("listing items with `{command}` {why}"));
        let state = match report.state {
            State::Succeeded if report.items.is_empty() => Some(failed("printed no items".into())),
            State::Succeeded => None,
            State::Failed(f) => Some(failed(State::Failed(f).to_string())),
            other @ (State::Cancelled { .. } | State::RunnerLost { .. }) => Some(other),
            other => Some(failed(other.to_string())),
        };
        match state {
            Some(state) => {
                warn!(run = %run.id(), step = %run.steps()[step].name(), %state, "listing failed");
                run.system_log(step, 0, &state.to_string());
                run.end_step_unrun(step, state);
            }
            None => {
                let line = format!(
                    "`{command}` listed {} item(s) in {}",
                    report.items.len(),
                    buildfleet_model::duration::fmt_ms(report.duration_ms)
                );
                run.system_log(step, 0, &line);
                self.plan_step(run, step, &report.items, now);
            }
        }
    }

    /// A shard's attempt ended: learn durations, then let the verdict say
    /// whether it ends (and how) or re-runs its failed items.
    pub(super) fn end_attempt(
        &mut self,
        run: &mut Run,
        step: usize,
        shard: usize,
        report: ShardReport,
        now: Instant,
    ) {
        let ShardReport {
            state,
            duration_ms,
            cache,
            mut tests,
            full_log,
            log_dropped,
            muted,
            outputs,
            ..
        } = report;
        let def = run
            .pipeline()
            .step(run.steps()[step].name())
            .expect("run steps come from the pipeline");
        let flaky_retries = def.flaky_retries;
        let is_split = def.split.is_some();
        let (project, step_name) = (run.options().project.clone(), def.name.clone());
        run.record_attempt(
            step,
            shard,
            duration_ms,
            cache,
            full_log,
            log_dropped,
            outputs,
        );
        let sh = &run.steps()[step].shards()[shard];
        let attempt = sh.attempt();
        for t in &mut tests {
            t.attempt = attempt;
        }
        let ran = matches!(&state, State::Succeeded)
            || matches!(&state, State::Failed(f) if f.exit_code.is_some());
        // Learn from attempts that ran all of the shard's items (the first,
        // or one after a lost runner), not from a flaky re-run's subset.
        let whole = sh.attempt_items().len() == sh.items().len();
        if is_split && whole && ran {
            let times: Vec<(String, Duration)> = tests
                .iter()
                .map(|t| (t.id.clone(), Duration::from_millis(t.duration_ms)))
                .collect();
            let learned = crate::split::attribute::learn(
                sh.items(),
                &times,
                Duration::from_millis(duration_ms),
            );
            let index = sh.index();
            let mut line = format!(
                "history: learned {} item duration(s)",
                learned.samples.len()
            );
            if learned.spread_items > 0 {
                line.push_str(&format!(
                    "; {} item(s) had no test in the reports and share the shard's remaining time",
                    learned.spread_items
                ));
            }
            if learned.unmatched_tests > 0 {
                line.push_str(&format!(
                    "; {} test(s) matched no item",
                    learned.unmatched_tests
                ));
            }
            run.system_log(step, index, &line);
            let lesson = Learned::Durations(learned.samples);
            self.lessons.push(Lesson::of(run, step, index, lesson));
        }
        let sh = &run.steps()[step].shards()[shard];
        let verdict = crate::run::verdict::judge(crate::run::verdict::Inputs {
            state,
            tests,
            earlier: sh.tests(),
            items: sh.items(),
            quarantine: &run.options().quarantine,
            retries_left: flaky_retries.saturating_sub(sh.flaky_reruns()),
            fail_on_flaky: run.options().fail_on_flaky,
            muted,
        });
        let index = sh.index();
        match verdict {
            crate::run::verdict::Verdict::Final {
                state,
                tests,
                notes,
                muted_exit,
            } => {
                for n in &notes {
                    run.system_log(step, index, n);
                }
                let flaky: Vec<String> = tests
                    .iter()
                    .filter(|t| t.flaky)
                    .map(|t| t.id.clone())
                    .collect();
                let before: Vec<String> = flaky
                    .iter()
                    .filter_map(|id| {
                        let n = self.history.flaky_count(&project, &step_name, id).ok()?;
                        (n > 0).then(|| format!("{id} ({n} time(s) before)"))
                    })
                    .collect();
                if !before.is_empty() {
                    let line = format!("history: flaky before too: {}", before.join(", "));
                    run.system_log(step, index, &line);
                }
                if !flaky.is_empty() {
                    let unix = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let lesson = Learned::Flaky {
                        tests: flaky,
                        unix_secs: unix,
                    };
                    self.lessons.push(Lesson::of(run, step, index, lesson));
                }
                run.end_shard(step, shard, state, tests, muted_exit, now);
            }
            crate::run::verdict::Verdict::Retry {
                items,
                tests,
                notes,
            } => {
                for n in &notes {
                    run.system_log(step, index, n);
                }
                info!(run = %run.id(), step = %step_name, shard = index, "flaky re-run queued");
                run.rerun_flaky(step, shard, tests, items, flaky_retries, now);
            }
        }
    }
}
