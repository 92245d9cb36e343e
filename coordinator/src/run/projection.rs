//! A run as its event log tells it. Watchers, the stored run and a
//! restarted coordinator all trust the log to be the run; the projection
//! makes that checkable: the run as submitted (its pipeline: every step and
//! shard pending) with its state-change events folded in gives the same
//! states, runners, durations and cache reports as the live run (the
//! property test `coordinator/tests/event_log.rs` holds them equal after
//! random schedules).

use std::collections::BTreeMap;

use buildfleet_model::{CacheReport, State};

use super::Run;
use crate::events::{Event, EventKind};
use crate::pipeline::Pipeline;

/// What the state-change events say about a run, its steps and shards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Projection {
    /// The run's state and duration (`None` before its first event).
    pub run: Option<(State, u64)>,
    /// Each step's state and duration, by name.
    pub steps: BTreeMap<String, (State, u64)>,
    /// Each shard, by step name and shard index.
    pub shards: BTreeMap<(String, u32), ShardView>,
}

/// A shard as its last state-change event left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub state: State,
    pub runner: Option<String>,
    pub duration_ms: u64,
    pub cache: Vec<CacheReport>,
}

impl Projection {
    /// A run of `pipeline` as submitted: every step pending, and every
    /// shard of a step that is not split (a split step's shards come with
    /// its plan, as events).
    pub fn submitted(pipeline: &Pipeline) -> Projection {
        let mut p = Projection::default();
        for step in pipeline.steps() {
            p.steps.insert(step.name.clone(), (State::Pending, 0));
            if step.split.is_none() {
                for shard in 0..step.shards.max() {
                    let view = ShardView {
                        state: State::Pending,
                        runner: None,
                        duration_ms: 0,
                        cache: Vec::new(),
                    };
                    p.shards.insert((step.name.clone(), shard), view);
                }
            }
        }
        p
    }

    /// The run as submitted, with a log's state changes folded in, oldest
    /// first.
    pub fn from_log<'a>(
        pipeline: &Pipeline,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Projection {
        let mut p = Projection::submitted(pipeline);
        for e in events {
            let EventKind::State(c) = &e.kind else {
                continue;
            };
            match (&c.step, c.shard) {
                (None, _) => p.run = Some((c.state.clone(), c.duration_ms)),
                (Some(step), None) => {
                    p.steps
                        .insert(step.clone(), (c.state.clone(), c.duration_ms));
                }
                (Some(step), Some(shard)) => {
                    let view = ShardView {
                        state: c.state.clone(),
                        runner: c.runner.clone(),
                        duration_ms: c.duration_ms,
                        cache: c.cache.clone(),
                    };
                    p.shards.insert((step.clone(), shard), view);
                }
            }
        }
        p
    }

    /// The same view read from the live run.
    pub fn of(run: &Run) -> Projection {
        let mut p = Projection {
            run: Some((run.state.clone(), run.duration_ms)),
            ..Projection::default()
        };
        for st in &run.steps {
            p.steps
                .insert(st.name.clone(), (st.state.clone(), st.duration_ms));
            for sh in &st.shards {
                let view = ShardView {
                    state: sh.state.clone(),
                    runner: sh.runner.clone(),
                    duration_ms: sh.duration_ms,
                    cache: sh.cache.clone(),
                };
                p.shards.insert((st.name.clone(), sh.index), view);
            }
        }
        p
    }
}
