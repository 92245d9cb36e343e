//! Split steps in the scheduler, in plain Rust: listing leases, plans from
//! history, and flaky re-runs that lease exactly the failed items.

mod support;

use std::time::{Duration, Instant};

use buildfleet_coordinator::history::History;
use buildfleet_coordinator::pipeline;
use buildfleet_coordinator::run::RunOptions;
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig, ShardReport};
use buildfleet_model::state::{Failure, State};
use buildfleet_model::test_result::{TestOutcome, TestResult};
use buildfleet_model::Digest;
use support::{runner, submit};

fn test(id: &str, outcome: TestOutcome, ms: u64) -> TestResult {
    TestResult {
        id: id.into(),
        outcome,
        duration_ms: ms,
        message: String::new(),
        report: "r.xml".into(),
        flaky: false,
        quarantined: false,
        attempt: 0,
    }
}

const LISTED: &str = r#"version: 1
stages:
  - name: s
    steps:
      - name: t
        shards: 2
        split: { list: "cat items" }
        retries: { flaky: 1 }
        reports: [r.xml]
        run: run-tests
"#;

fn items(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_listing_lease_comes_first_and_its_items_become_balanced_shards() {
    let now = Instant::now();
    let history = History::default();
    history
        .record_durations(
            "p",
            "t",
            &[
                ("k/big".into(), Duration::from_secs(9)),
                ("k/a".into(), Duration::from_secs(3)),
                ("k/b".into(), Duration::from_secs(3)),
                ("k/c".into(), Duration::from_secs(3)),
            ],
        )
        .unwrap();
    let mut s = Scheduler::with_history(SchedulerConfig::default(), history);
    s.register_runner(runner("r", 4, &[]));
    let run = submit(&mut s, LISTED, now);
    let leases = s.assign(now);
    assert_eq!(leases.len(), 1, "only the listing until items are known");
    let listing = &leases[0].lease;
    assert!(listing.is_listing() && listing.action_cache_off.is_some());
    assert_eq!(listing.command, "cat items");
    assert!(!listing.env.contains_key("BUILDFLEET_SHARD_INDEX"));
    assert!(s.assign(now).is_empty(), "nothing to lease while listing");

    let mut report = ShardReport::of(State::Succeeded, 5);
    report.items = items(&["k/a", "k/big", "k/b", "k/c", "k/new"]);
    s.record_result("r", &listing.lease_id, report, now)
        .unwrap();
    let r = s.run(&run).unwrap();
    let split = r.steps()[0].split().expect("planned");
    assert_eq!((split.items, split.without_history), (5, 1));
    assert_eq!(
        split.estimate,
        Duration::from_secs(3),
        "the median of the known"
    );
    let mut shards: Vec<Vec<String>> = r.steps()[0]
        .shards()
        .iter()
        .map(|s| s.items().to_vec())
        .collect();
    shards.sort();
    // 9 + 4 × 3 s over two shards: LPT gives big alone until the 3 s items
    // fill the other to 9, then the new one (ties go to shard 0) — 12 s.
    assert_eq!(
        shards,
        [items(&["k/a", "k/b", "k/c"]), items(&["k/big", "k/new"])]
    );
    assert_eq!(split.predicted, Duration::from_secs(12));
    let leases = s.assign(now);
    assert_eq!(leases.len(), 2);
    assert!(leases
        .iter()
        .all(|a| !a.lease.is_listing() && a.lease.attempt == 1));
}

#[test]
fn a_flaky_rerun_leases_only_the_failed_items_without_the_result_cache() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.register_runner(runner("r", 4, &[]));
    let run = submit(
        &mut s,
        LISTED.replace("shards: 2", "shards: 1").as_str(),
        now,
    );
    let listing = s.assign(now).remove(0).lease;
    let mut report = ShardReport::of(State::Succeeded, 5);
    report.items = items(&["k/a", "k/b"]);
    s.record_result("r", &listing.lease_id, report, now)
        .unwrap();
    let first = s.assign(now).remove(0).lease;
    assert_eq!(first.items, items(&["k/a", "k/b"]));
    assert!(first.action_cache_off.is_none());

    let failed = State::Failed(Failure {
        exit_code: Some(1),
        signal: None,
        reason: String::new(),
    });
    let mut report = ShardReport::of(failed, 20);
    report.tests = vec![
        test("k::a", TestOutcome::Passed, 5),
        test("k::b", TestOutcome::Failed, 15),
    ];
    s.record_result("r", &first.lease_id, report, now).unwrap();
    let again = s.assign(now).remove(0).lease;
    assert_eq!(again.items, items(&["k/b"]), "only the failed item");
    assert_eq!(again.env["BUILDFLEET_SHARD_ITEMS"], "k/b");
    assert_eq!(again.attempt, 2);
    assert!(again.action_cache_off.is_some(), "a re-run must really run");

    let mut report = ShardReport::of(State::Succeeded, 15);
    report.tests = vec![test("k::b", TestOutcome::Passed, 15)];
    s.record_result("r", &again.lease_id, report, now).unwrap();
    let r = s.run(&run).unwrap();
    let shard = &r.steps()[0].shards()[0];
    assert_eq!(*shard.state(), State::Succeeded);
    assert_eq!(shard.duration_ms(), 35, "both attempts count");
    let b = shard.tests().iter().find(|t| t.id == "k::b").unwrap();
    assert!(b.flaky && b.attempt == 2);
    assert_eq!(*r.state(), State::Succeeded);
}

#[test]
fn a_listing_that_ends_after_its_step_did_grows_no_shards() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    let now = Instant::now();
    s.register_runner(runner("r", 2, &[]));
    let yaml = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: t, run: 'true', split: { list: 'ls' } }\n";
    let p = pipeline::parse("t.yaml", yaml).unwrap();
    let options = RunOptions {
        pipeline_yaml: yaml.into(),
        ..RunOptions::default()
    };
    let id = s
        .submit(p, "t.yaml".into(), Digest::empty(), options, None, now)
        .run_id;
    let listing = s.assign(now).remove(0);
    assert!(listing.lease.is_listing());
    s.cancel(&id, "stop", now).unwrap();
    let mut done = ShardReport::of(State::Succeeded, 5);
    done.items = vec!["a".into(), "b".into()];
    // The runner's listing ends after the cancel reached the step.
    let _ = s.record_result("r", &listing.lease.lease_id, done, now);
    let run = s.run(&id).unwrap();
    assert!(
        run.steps()[0].shards().is_empty(),
        "{:?}",
        run.steps()[0].shards()
    );
    assert!(matches!(run.steps()[0].state(), State::Cancelled { .. }));
    assert!(s.assign(now).is_empty());
}
