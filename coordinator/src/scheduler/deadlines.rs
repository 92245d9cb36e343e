//! The scheduler's clock-driven checks, run on every tick: retention of
//! finished runs, runs that made no progress for too long (stalled), and
//! steps that waited too long for a runner whose labels match.

use std::time::{Duration, Instant};

use tracing::warn;

use super::{RunnerView, Scheduler};
use buildfleet_model::state::State;

impl Scheduler {
    /// Fails steps that waited too long for a runner with matching labels.
    pub fn tick(&mut self, now: Instant) {
        self.retire_old_runs();
        for run_id in &self.order {
            let Some(run) = self.runs.get_mut(run_id) else {
                continue;
            };
            if run.is_finished() {
                continue;
            }
            run.expire_approvals(now);
            let idle = now.saturating_duration_since(run.last_progress());
            // A run waiting for a person is not stuck in the fleet.
            if idle >= self.config.stall_after
                && !run.awaits_approval()
                && run.mark_stall_notified()
            {
                let text = format!(
                    "run {} made no progress (no state change, no log line) for {}",
                    run.id(),
                    humantime::format_duration(Duration::from_secs(idle.as_secs()))
                );
                warn!(run = %run.id(), "run stalled");
                run.notice(crate::events::NoticeKind::Stalled, text.clone());
                self.outbox.push(crate::notify::Notification {
                    event: crate::notify::Event::RunStalled,
                    runs: vec![run.id().to_owned()],
                    text,
                    context: Some(run.options().context.clone()),
                });
            }
            for step in 0..run.steps().len() {
                let st = &run.steps()[step];
                if st.state() != &State::Waiting || run.waited(step, now) < self.config.label_wait {
                    continue;
                }
                let labels = &st.labels();
                let matching: Vec<&RunnerView> = self
                    .runners
                    .values()
                    .filter(|r| labels.iter().all(|l| r.labels.contains(l)))
                    .collect();
                if matching.iter().any(|r| r.availability().is_none()) {
                    continue;
                }
                let connected: Vec<String> = self
                    .runners
                    .values()
                    .map(|r| match r.availability() {
                        Some(why) => format!(
                            "{} [{}] (takes no leases: {why})",
                            r.name,
                            r.labels.join(", ")
                        ),
                        None => format!("{} [{}]", r.name, r.labels.join(", ")),
                    })
                    .collect();
                let what = if matching.is_empty() {
                    "no connected runner has"
                } else {
                    "every runner with"
                };
                let reason = format!(
                    "{what} labels [{}] after waiting {}{}; connected runners: {}",
                    labels.join(", "),
                    humantime::format_duration(self.config.label_wait),
                    if matching.is_empty() {
                        ""
                    } else {
                        " takes no new leases"
                    },
                    if connected.is_empty() {
                        "none".to_string()
                    } else {
                        connected.join(", ")
                    }
                );
                warn!(run = %run.id(), step = %st.name(), %reason, "step unschedulable");
                run.end_step_unrun(step, State::failed(reason));
                run.advance(now);
            }
        }
    }
}
