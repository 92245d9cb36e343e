//! What the scheduler tells the metrics: the fleet's state at a moment
//! (queue depth by label set, runners by state, approvals waiting), and
//! the counting of each run's new events (shard results, log bytes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use buildfleet_model::{EventKind, State};

use super::Scheduler;
use crate::metrics::{CoordinatorMetrics, FleetGauges};

impl Scheduler {
    pub fn metrics(&self) -> Arc<CoordinatorMetrics> {
        self.metrics.clone()
    }

    /// The fleet's gauges now: what autoscaling reads.
    pub fn gauges(&self, now: Instant) -> FleetGauges {
        let mut g = FleetGauges::default();
        for run in self.runs.values().filter(|r| !r.is_finished()) {
            for (i, step) in run.steps().iter().enumerate() {
                if step.state() == &State::AwaitingApproval {
                    g.approvals_waiting += 1;
                }
                let waiting = step
                    .shards()
                    .iter()
                    .filter(|s| s.state() == &State::Waiting)
                    .count() as u64;
                if waiting == 0 {
                    continue;
                }
                let mut labels = step.labels().to_vec();
                labels.sort();
                let entry = g
                    .queued
                    .entry(labels.join(","))
                    .or_insert((0, Duration::ZERO));
                entry.0 += waiting;
                entry.1 = entry.1.max(run.waited(i, now));
            }
        }
        for runner in self.runners.values() {
            let count = if runner.draining.is_some() {
                &mut g.runners_draining
            } else if runner.unavailable.is_some() {
                &mut g.runners_unavailable
            } else if runner.busy > 0 {
                &mut g.runners_busy
            } else {
                &mut g.runners_idle
            };
            *count += 1;
        }
        g
    }

    /// Counts every run's events since the last call: each is counted
    /// once, from the log that is the run.
    pub fn observe(&mut self) {
        for id in &self.order {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let seen = self.observed.get(id).copied().unwrap_or(0);
            let last = run.events().last_seq();
            if last <= seen {
                continue;
            }
            for event in run.events().after(seen, usize::MAX) {
                self.traces.observe(run, &event);
                match &event.kind {
                    EventKind::State(change)
                        if change.shard.is_some() && change.state.is_terminal() =>
                    {
                        let ran = change
                            .runner
                            .as_ref()
                            .map(|_| Duration::from_millis(change.duration_ms));
                        self.metrics.shard_ended(&change.state, ran);
                    }
                    EventKind::Log(entry) => self.metrics.log_received(entry.data.len()),
                    _ => {}
                }
            }
            self.observed.insert(id.clone(), last);
        }
    }
}
