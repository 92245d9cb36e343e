//! Progress bars per stage on a terminal: done/total shards, time since
//! the stage started, and what history predicts is left. They are drawn
//! on stderr (so the stream on stdout can be redirected) from the run's
//! state, polled; the event stream's lines are printed above them. On
//! anything that is not a terminal, none of this: plain lines only.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use buildfleet_model::duration::fmt_ms;
use buildfleet_model::RunStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tracing::Instrument;

/// How often the bars are brought up to date.
const POLL: Duration = Duration::from_millis(300);

#[derive(Clone)]
pub struct Bars {
    multi: MultiProgress,
    stages: std::sync::Arc<Mutex<Stages>>,
}

#[derive(Default)]
struct Stages {
    bars: Vec<(String, ProgressBar)>,
    /// When a shard of the stage was first seen running (or done).
    started: HashMap<String, Instant>,
    /// How long a finished stage took, as first seen finished.
    took: HashMap<String, Duration>,
}

/// One stage's figures from a run snapshot.
#[derive(Debug, PartialEq)]
pub struct StageFigures {
    pub stage: String,
    pub done: u64,
    pub total: u64,
    pub running: u64,
    /// Ended without passing (failed, timed out, cancelled, lost, skipped
    /// because something failed): a bar must never read as green for them.
    pub not_passed: u64,
    /// The longest predicted time left among its unfinished shards (they
    /// run side by side); `None` when some unfinished shard has no history.
    pub left_ms: Option<u64>,
}

/// Stages in order, with their shards counted (a step not split yet
/// counts as one).
pub fn figures(status: &RunStatus) -> Vec<StageFigures> {
    let mut out: Vec<StageFigures> = Vec::new();
    for step in &status.steps {
        let i = match out.iter().position(|f| f.stage == step.stage) {
            Some(i) => i,
            None => {
                out.push(StageFigures {
                    stage: step.stage.clone(),
                    done: 0,
                    total: 0,
                    running: 0,
                    not_passed: 0,
                    left_ms: Some(0),
                });
                out.len() - 1
            }
        };
        let f = &mut out[i];
        if step.shards.is_empty() {
            f.total += 1;
            f.done += u64::from(step.state.is_terminal());
            f.not_passed += u64::from(step.state.is_terminal() && !step.state.passes());
            continue;
        }
        for s in &step.shards {
            f.total += 1;
            if s.state.is_terminal() {
                f.done += 1;
                f.not_passed += u64::from(!s.state.passes());
                continue;
            }
            f.running += u64::from(s.state == buildfleet_model::State::Running);
            f.left_ms = match (f.left_ms, s.predicted_ms) {
                (Some(left), p) if p > 0 => Some(left.max(p.saturating_sub(s.duration_ms))),
                _ => None,
            };
        }
    }
    out
}

impl Bars {
    /// Bars, when stdout and stderr are both a terminal (and `TERM` is not
    /// `dumb`); `None` means plain lines.
    pub fn on_terminal() -> Option<Bars> {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if dumb || !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            stages: Default::default(),
        })
    }

    /// Runs `f` (which prints lines) with the bars out of its way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.multi.suspend(f)
    }

    /// Keeps the bars current from the run's state until aborted.
    pub fn follow(
        &self,
        coordinator_url: &str,
        trust: &buildfleet_trust::ClientTrust,
        run_id: &str,
    ) -> tokio::task::JoinHandle<()> {
        let (url, trust, run) = (coordinator_url.to_owned(), trust.clone(), run_id.to_owned());
        let bars = self.clone();
        let span = tracing::info_span!("progress_bars", run = %run);
        tokio::spawn(
            async move {
                let mut coordinator = None;
                loop {
                    if coordinator.is_none() {
                        coordinator = crate::wire::Coordinator::connect(&url, &trust).await.ok();
                    }
                    if let Some(c) = coordinator.as_mut() {
                        match c.get(&run).await {
                            Ok(status) => bars.show(&status),
                            // Said by the event stream, which resumes.
                            Err(_) => coordinator = None,
                        }
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
            .instrument(span),
        )
    }

    fn show(&self, status: &RunStatus) {
        let mut stages = self.stages.lock();
        for f in figures(status) {
            let bar = match stages.bars.iter().find(|(s, _)| *s == f.stage) {
                Some((_, bar)) => bar.clone(),
                None => {
                    let bar = self.multi.add(ProgressBar::new(f.total));
                    bar.set_style(style());
                    bar.set_prefix(f.stage.clone());
                    stages.bars.push((f.stage.clone(), bar.clone()));
                    bar
                }
            };
            if f.running > 0 || f.done > 0 {
                stages
                    .started
                    .entry(f.stage.clone())
                    .or_insert_with(Instant::now);
            }
            let mut elapsed = stages.started.get(&f.stage).map(Instant::elapsed);
            if let (Some(e), true) = (elapsed, f.done == f.total) {
                elapsed = Some(*stages.took.entry(f.stage.clone()).or_insert(e));
            }
            // The words first: a redraw between the two shows them together.
            bar.set_message(message(&f, elapsed));
            bar.set_length(f.total);
            bar.set_position(f.done);
        }
    }

    /// Leaves the bars as the run ended.
    pub fn finish(&self, status: &RunStatus) {
        self.show(status);
        for (_, bar) in &self.stages.lock().bars {
            bar.abandon();
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12.bold} [{bar:28.cyan/blue}] {pos}/{len} shards  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn message(f: &StageFigures, elapsed: Option<Duration>) -> String {
    let Some(elapsed) = elapsed else {
        return "waiting".into();
    };
    let took = fmt_ms(elapsed.as_millis() as u64);
    let not_passed = match f.not_passed {
        0 => String::new(),
        n => format!(" · {n} NOT PASSED"),
    };
    if f.done == f.total {
        return match f.not_passed {
            0 => format!("done in {took}"),
            _ => format!("ended in {took}{not_passed}"),
        };
    }
    let left = match f.left_ms {
        Some(ms) => format!("~{} left (history)", fmt_ms(ms)),
        None => "no history for some shards".into(),
    };
    format!("{} running · {took} · {left}{not_passed}", f.running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildfleet_model::{RunContext, ShardStatus, State, StepStatus};

    fn shard(state: State, duration_ms: u64, predicted_ms: u64) -> ShardStatus {
        ShardStatus {
            duration_ms,
            predicted_ms,
            ..ShardStatus::new(0, state)
        }
    }

    #[test]
    fn stages_count_their_shards_and_predict_from_the_slowest_left() {
        let step = |name: &str, stage: &str, shards| StepStatus {
            name: name.into(),
            stage: stage.into(),
            state: State::Running,
            shards,
            split: None,
        };
        let status = RunStatus {
            run_id: "r".into(),
            state: State::Running,
            steps: vec![
                step("a", "build", vec![shard(State::Succeeded, 10, 0)]),
                step(
                    "b",
                    "test",
                    vec![
                        shard(State::Running, 4_000, 10_000),
                        shard(State::Running, 1_000, 3_000),
                        shard(State::Succeeded, 2_000, 2_000),
                    ],
                ),
                step("c", "test", vec![shard(State::Pending, 0, 0)]),
                step("e", "ship", vec![shard(State::failed("exit 1"), 10, 0)]),
                step("d", "ship", vec![shard(State::Pending, 0, 5_000)]),
            ],
            created_unix_ms: 0,
            duration_ms: 0,
            pipeline_path: String::new(),
            notices: Vec::new(),
            context: RunContext::default(),
        };
        let mut f = figures(&status);
        let got: Vec<(&str, u64, u64, u64, Option<u64>)> = f
            .iter()
            .map(|s| (s.stage.as_str(), s.done, s.total, s.running, s.left_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("build", 1, 1, 0, Some(0)),
                ("test", 1, 4, 2, None),
                ("ship", 1, 2, 0, Some(5_000)),
            ]
        );
        let msg = message(&f[2], Some(Duration::from_secs(1)));
        assert!(msg.contains("~5.0s left"), "{msg}");
        assert!(
            msg.contains("1 NOT PASSED"),
            "a failed shard is said: {msg}"
        );
        let ended = StageFigures {
            done: 2,
            running: 0,
            ..f.remove(2)
        };
        let msg = message(&ended, Some(Duration::from_secs(1)));
        assert!(!msg.contains("done") && msg.contains("NOT PASSED"), "{msg}");
        assert_eq!(message(&f[0], Some(Duration::from_secs(1))), "done in 1.0s");
    }
}
