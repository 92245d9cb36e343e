//! Approval gates as the scheduler keeps them: a waiting step holds no
//! runner slot, an approval lets it run, a rejection or a timeout fails it
//! (and the run), each decision is recorded with who made it, an
//! `approval-needed` notification goes out, and the wait survives a
//! restart.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use buildfleet_coordinator::db::Db;
use buildfleet_coordinator::error::CoordinatorError;
use buildfleet_coordinator::notify::Event;
use buildfleet_coordinator::run::RunOptions;
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig, ShardReport};
use buildfleet_model::state::State;
use support::{runner, submit_as};

const GATED: &str = r#"version: 1
stages:
  - name: build
    steps:
      - { name: build, run: "true" }
  - name: ship
    steps:
      - { name: prod, run: "true", approval: { timeout: 1h } }
"#;

fn options() -> RunOptions {
    RunOptions {
        project: "p".into(),
        ..RunOptions::default()
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        stall_after: Duration::from_secs(60),
        ..SchedulerConfig::default()
    }
}

fn state(s: &Scheduler, run: &str, step: &str) -> State {
    let r = s.run(run).unwrap();
    r.steps()[r.step_index(step).expect("step")].state().clone()
}

/// Submits GATED and finishes `build`: `prod` is then waiting.
fn until_gate(s: &mut Scheduler, now: Instant) -> String {
    s.register_runner(runner("r1", 4, &[]));
    let run = submit_as(s, GATED, options(), now);
    let build = s.assign(now);
    assert_eq!(build.len(), 1);
    s.record_result(
        "r1",
        &build[0].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    run
}

#[test]
fn a_waiting_approval_holds_no_slot_and_an_approval_lets_the_step_run() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let run = until_gate(&mut s, now);
    assert_eq!(state(&s, &run, "prod"), State::AwaitingApproval);
    assert!(s.assign(now).is_empty(), "nothing is leased while it waits");
    let notes = s.take_notifications();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].event, Event::ApprovalNeeded);
    assert!(
        notes[0].text.contains("step prod is waiting for approval"),
        "{}",
        notes[0].text
    );
    // Waiting for a person is not a stall.
    s.tick(now + Duration::from_secs(120));
    assert!(s.take_notifications().is_empty());
    s.decide_approval(&run, "prod", true, "alice", "", now)
        .unwrap();
    let leased = s.assign(now);
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].lease.step, "prod");
    s.record_result(
        "r1",
        &leased[0].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    let r = s.run(&run).unwrap();
    assert_eq!(r.state(), &State::Succeeded);
    let decision = r.steps()[1].approval().unwrap().decision.clone().unwrap();
    assert!(decision.approved);
    assert_eq!(decision.by, "alice");
    assert!(r
        .notices()
        .any(|n| n.text.starts_with("step prod approved by alice at ")));
}

#[test]
fn a_rejection_fails_the_step_with_its_reason_and_the_run_is_red() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let run = until_gate(&mut s, now);
    s.decide_approval(&run, "prod", false, "bob", "not on a Friday", now)
        .unwrap();
    assert_eq!(
        state(&s, &run, "prod"),
        State::failed("rejected by bob: not on a Friday")
    );
    assert!(!s.run(&run).unwrap().state().is_green());
    assert!(s.assign(now).is_empty());
    // A second decision is refused, and so is one for a step that never waited.
    let again = s.decide_approval(&run, "prod", true, "carol", "", now);
    assert!(
        matches!(again, Err(CoordinatorError::Approval(_))),
        "{again:?}"
    );
    let unknown = s.decide_approval(&run, "nope", true, "carol", "", now);
    assert!(unknown
        .unwrap_err()
        .to_string()
        .contains("has no step `nope`"));
}

#[test]
fn an_approval_that_times_out_fails_the_step() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let run = until_gate(&mut s, now);
    s.tick(now + Duration::from_secs(3599));
    assert_eq!(state(&s, &run, "prod"), State::AwaitingApproval);
    s.tick(now + Duration::from_secs(3601));
    let st = state(&s, &run, "prod");
    assert!(
        matches!(&st, State::Failed(f) if f.reason.starts_with("approval timed out after 1h")),
        "{st}"
    );
    assert!(!s.run(&run).unwrap().state().is_green());
}

#[test]
fn a_waiting_approval_survives_a_restart_and_can_then_be_approved() {
    let dir = tempfile::tempdir().unwrap();
    let now = Instant::now();
    let run = {
        let db = Db::open(Some(dir.path())).unwrap();
        let mut s = Scheduler::with_history(config(), db.history());
        s.persist_to(db.run_store().unwrap());
        let run = until_gate(&mut s, now);
        s.persist();
        run
    };
    let db = Db::open(Some(dir.path())).unwrap();
    let mut s = Scheduler::with_history(config(), db.history());
    let store = db.run_store().unwrap();
    let none = |_: &BTreeSet<String>| buildfleet_coordinator::secrets::Resolved::default();
    assert_eq!(s.restore(&store, &none, now).unwrap(), 1);
    assert_eq!(state(&s, &run, "prod"), State::AwaitingApproval);
    s.register_runner(runner("r2", 4, &[]));
    assert!(s.assign(now).is_empty(), "still waiting after the restart");
    s.decide_approval(&run, "prod", true, "alice", "", now)
        .unwrap();
    assert_eq!(s.assign(now).len(), 1);
}

#[test]
fn a_cancel_ends_a_waiting_approval() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let run = until_gate(&mut s, now);
    s.cancel(&run, "never mind", now).unwrap();
    assert!(matches!(state(&s, &run, "prod"), State::Cancelled { .. }));
    assert!(matches!(
        s.run(&run).unwrap().state(),
        State::Cancelled { .. }
    ));
}
