//! The run owns its transitions: every change of a run, step or shard is
//! an event in its log. After any schedule, the run rebuilt from its
//! submission and its events alone (its `Projection`) equals the live run — what watchers,
//! the stored run and a restarted coordinator read is what happened.
mod support;

use std::sync::Arc;

use buildfleet_coordinator::db::MemoryKv;
use buildfleet_coordinator::persist::RunStore;
use buildfleet_coordinator::run::Projection;
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig};
use proptest::prelude::*;
use support::schedule::{drive, op};

fn assert_log_is_the_run(s: &Scheduler, runs: &[String], after: &str) {
    for id in runs {
        let run = s.run(id).unwrap();
        let rebuilt = Projection::from_log(run.pipeline(), run.events().all());
        assert_eq!(
            rebuilt,
            Projection::of(run),
            "run {id} rebuilt from its events differs from the live run after {after}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn after_any_schedule_the_event_log_rebuilds_the_live_run(ops in prop::collection::vec(op(), 1..48)) {
        let mut s = Scheduler::new(SchedulerConfig::default());
        drive(&mut s, &ops, |s, runs, after| assert_log_is_the_run(s, runs, after));
    }

    #[test]
    fn a_restored_run_rebuilds_from_its_log_too(ops in prop::collection::vec(op(), 1..32)) {
        let store = RunStore::new(Arc::new(MemoryKv::default()));
        let mut s = Scheduler::new(SchedulerConfig::default());
        s.persist_to(store.clone());
        let mut runs = Vec::new();
        drive(&mut s, &ops, |s, ids, _| {
            s.persist();
            runs = ids.to_vec();
        });
        let mut restarted = Scheduler::new(SchedulerConfig::default());
        let resolve = |_: &std::collections::BTreeSet<String>| {
            buildfleet_coordinator::secrets::Resolved::default()
        };
        restarted
            .restore(&store, &resolve, std::time::Instant::now())
            .unwrap();
        assert_log_is_the_run(&restarted, &runs, "a restart");
    }
}

/// A transition made without its event is caught: the projection of a
/// log missing one state change differs from the run.
#[test]
fn a_missing_event_shows() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    let ops: Vec<_> = [
        support::schedule::Op::Submit(0),
        support::schedule::Op::Runner(2),
        support::schedule::Op::Assign,
    ]
    .into();
    let mut ids = Vec::new();
    drive(&mut s, &ops, |_, runs, _| ids = runs.to_vec());
    let run = s.run(&ids[0]).unwrap();
    let all: Vec<_> = run.events().all().collect();
    let last_state = all
        .iter()
        .rposition(|e| matches!(e.kind, buildfleet_coordinator::events::EventKind::State(_)))
        .unwrap();
    let partial = all
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != last_state)
        .map(|(_, e)| *e);
    assert_ne!(
        Projection::from_log(run.pipeline(), partial),
        Projection::of(run)
    );
}
