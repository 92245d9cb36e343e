//! Runs stored in RocksDB and read back, as after a coordinator restart:
//! the same events with the same numbers, in-flight shards leased again at
//! no cost, and old finished runs deleted beyond the retention.

use std::collections::BTreeSet;
mod support;

use std::time::Instant;

use buildfleet_coordinator::db::Db;
use buildfleet_coordinator::events::LogStream;
use buildfleet_coordinator::run::RunOptions;
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig, ShardReport};
use buildfleet_model::state::State;
use support::runner;

const YAML: &str =
    "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true', shards: 2 }\n";

fn open_keeping(
    dir: &std::path::Path,
    keep_runs: usize,
) -> (Scheduler, buildfleet_coordinator::persist::RunStore) {
    let db = Db::open(Some(dir)).unwrap();
    let store = db.run_store().expect("a RocksDB database is durable");
    let config = SchedulerConfig {
        keep_runs,
        ..SchedulerConfig::default()
    };
    (Scheduler::with_history(config, db.history()), store)
}

fn open(dir: &std::path::Path) -> (Scheduler, buildfleet_coordinator::persist::RunStore) {
    open_keeping(dir, 10)
}

/// Submits the pipeline under an idempotency key.
fn submit(s: &mut Scheduler, key: &str, now: Instant) -> String {
    let options = RunOptions {
        idempotency_key: Some(key.into()),
        project: "p".into(),
        ..RunOptions::default()
    };
    support::submit_as(s, YAML, options, now)
}

fn no_secrets(_: &BTreeSet<String>) -> buildfleet_coordinator::secrets::Resolved {
    buildfleet_coordinator::secrets::Resolved::default()
}

#[test]
fn a_restored_run_keeps_its_events_and_leases_in_flight_shards_again() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let (run, events_before) = {
        let (mut s, store) = open(dir.path());
        s.persist_to(store);
        s.register_runner(runner("r", 4, &[]));
        let run = submit(&mut s, "k1", now);
        let leases = s.assign(now);
        let first = &leases[0].lease.lease_id;
        s.record_log("r", first, 1, LogStream::Stdout, b"hello\n".to_vec(), now)
            .unwrap();
        s.record_result("r", first, ShardReport::of(State::Succeeded, 5), now)
            .unwrap();
        s.persist();
        let events: Vec<u64> = s
            .events_after(&run, 0, usize::MAX)
            .unwrap()
            .0
            .iter()
            .map(|e| e.seq)
            .collect();
        (run, events)
    }; // the process "dies" here: nothing else is written
    let (mut s, store) = open(dir.path());
    assert_eq!(s.restore(&store, &no_secrets, now).unwrap(), 1);
    let r = s.run(&run).unwrap();
    let shards: Vec<State> = r.steps()[0]
        .shards()
        .iter()
        .map(|sh| sh.state().clone())
        .collect();
    assert_eq!(shards[0], State::Succeeded);
    assert_eq!(
        shards[1],
        State::Waiting,
        "the in-flight shard is leased again"
    );
    let seqs: Vec<u64> = s
        .events_after(&run, 0, usize::MAX)
        .unwrap()
        .0
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        &seqs[..events_before.len()],
        &events_before[..],
        "same numbers"
    );
    assert!(
        seqs.len() > events_before.len(),
        "the restart is said in the run"
    );
    assert!(r
        .notices()
        .any(|n| n.text.contains("coordinator restarted")));
    // The idempotency key still finds the run.
    assert_eq!(submit(&mut s, "k1", now), run);
    s.register_runner(runner("r", 4, &[]));
    let again = s.assign(now);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].lease.shard_index, 1);
    assert_eq!(again[0].lease.attempt, 2);
    assert_eq!(
        s.run(&run).unwrap().steps()[0].shards()[1].infra_retries(),
        0,
        "no retry used"
    );
}

/// Submits `n` runs and lets every shard succeed, persisting each; the
/// runs' ids, oldest first.
fn finished_runs(s: &mut Scheduler, n: usize, now: Instant) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = submit(s, &format!("k{i}"), now);
            for a in s.assign(now) {
                let done = ShardReport::of(State::Succeeded, 1);
                s.record_result("r", &a.lease.lease_id, done, now).unwrap();
            }
            s.persist();
            // Distinct creation times, so "oldest" is well defined.
            std::thread::sleep(std::time::Duration::from_millis(5));
            id
        })
        .collect()
}

#[test]
fn finished_runs_beyond_the_retention_are_deleted_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let ids: Vec<String> = {
        let (mut s, store) = open(dir.path());
        s.persist_to(store);
        s.register_runner(runner("r", 4, &[]));
        finished_runs(&mut s, 3, now)
    };
    {
        let (mut s, store) = open_keeping(dir.path(), 1);
        assert_eq!(s.restore(&store, &no_secrets, now).unwrap(), 1);
        assert!(s.run(&ids[2]).is_ok(), "the newest is kept");
        assert!(s.run(&ids[0]).is_err());
    }
    let (mut s, store) = open(dir.path());
    assert_eq!(
        s.restore(&store, &no_secrets, now).unwrap(),
        1,
        "the others are gone from disk"
    );
    assert!(store.load_events(&ids[0]).unwrap().is_empty());
}

#[test]
fn a_long_lived_scheduler_forgets_finished_runs_beyond_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let (mut s, store) = open_keeping(dir.path(), 2);
    s.persist_to(store.clone());
    s.register_runner(runner("r", 4, &[]));
    let ids = finished_runs(&mut s, 4, now);
    s.tick(now);
    assert!(
        s.run(&ids[0]).is_err() && s.run(&ids[1]).is_err(),
        "the two oldest are forgotten"
    );
    assert!(s.run(&ids[2]).is_ok() && s.run(&ids[3]).is_ok());
    assert!(
        store.load_events(&ids[0]).unwrap().is_empty(),
        "and deleted from the store"
    );
}
