//! The coordinator's part of a run's trace, read from the event log as it
//! grows (once per event, like the metrics): each shard attempt's wait
//! for a runner and the attempt itself, and the run as the root when it
//! ends. Ids come from `buildfleet_trace`, the same ones the leases carry,
//! so the runner's phases and the cache's calls land under these spans.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buildfleet_model::{Event, EventKind, State};
use buildfleet_trace::Attr;

use crate::run::Run;

type Shard = (String, String, u32);

/// An attempt under way: its number, when it was leased, on which runner.
struct Open {
    attempt: u32,
    since: SystemTime,
    runner: String,
}

#[derive(Default)]
pub struct RunTraces {
    /// When each shard (or its step) last became ready to lease.
    queued: HashMap<Shard, SystemTime>,
    step_ready: HashMap<(String, String), SystemTime>,
    open: HashMap<Shard, Open>,
}

fn at(e: &Event) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(e.at_unix_ms)
}

impl RunTraces {
    /// Records what `event` of `run` ends or begins.
    pub fn observe(&mut self, run: &Run, event: &Event) {
        if !buildfleet_trace::enabled() || event.at_unix_ms == 0 {
            return;
        }
        let EventKind::State(c) = &event.kind else {
            return;
        };
        let run_id = run.id().to_owned();
        let Some(step) = &c.step else {
            if c.state.is_terminal() {
                self.run_ended(run, &c.state, at(event));
            }
            return;
        };
        let Some(shard) = c.shard else {
            if c.state == State::Waiting {
                self.step_ready
                    .entry((run_id, step.clone()))
                    .or_insert(at(event));
            }
            return;
        };
        let key = (run_id.clone(), step.clone(), shard);
        match &c.state {
            State::Running => {
                let attempt = run
                    .step_index(step)
                    .and_then(|i| run.steps()[i].shards().get(shard as usize))
                    .map_or(1, |s| s.attempt());
                let queued = self
                    .queued
                    .remove(&key)
                    .or_else(|| {
                        self.step_ready
                            .get(&(run_id.clone(), step.clone()))
                            .copied()
                    })
                    .unwrap_or(at(event));
                let parent = buildfleet_trace::attempt_context(&run_id, step, Some(shard), attempt);
                let runner = c.runner.clone().unwrap_or_default();
                buildfleet_trace::record(
                    &parent,
                    "queue wait".into(),
                    queued,
                    at(event),
                    vec![Attr::new("runner", runner.clone())],
                );
                let open = Open {
                    attempt,
                    since: at(event),
                    runner,
                };
                self.open.insert(key, open);
            }
            state => {
                if let Some(open) = self.open.remove(&key) {
                    let attrs = vec![
                        Attr::new("state", state.to_string()),
                        Attr::new("runner", open.runner),
                        Attr::new("attempt", i64::from(open.attempt)),
                    ];
                    buildfleet_trace::record_attempt(
                        &run_id,
                        step,
                        Some(shard),
                        open.attempt,
                        open.since,
                        at(event),
                        attrs,
                    );
                }
                if *state == State::Waiting {
                    self.queued.insert(key, at(event));
                }
            }
        }
    }

    fn run_ended(&mut self, run: &Run, state: &State, end: SystemTime) {
        let id = run.id();
        let context = &run.options().context;
        let attrs = vec![
            Attr::new("state", state.to_string()),
            Attr::new("pipeline", run.pipeline_path().to_owned()),
            Attr::new("git.ref", context.git_ref.clone()),
            Attr::new("git.commit", context.commit.clone()),
        ];
        buildfleet_trace::record_run(id, run.created_wall(), end, attrs);
        self.queued.retain(|k, _| k.0 != id);
        self.open.retain(|k, _| k.0 != id);
        self.step_ready.retain(|k, _| k.0 != id);
    }
}

impl std::fmt::Debug for RunTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RunTraces({} attempts open)", self.open.len())
    }
}
