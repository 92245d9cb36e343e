//! The scheduling rules in plain Rust: no network, the clock passed in.

mod support;

use buildfleet_coordinator::scheduler::Loss;
use std::time::{Duration, Instant};

use buildfleet_coordinator::pipeline;
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig, ShardReport};
use buildfleet_model::state::{Failure, State};
use buildfleet_model::Digest;
use support::{runner, submit};

fn sched() -> Scheduler {
    Scheduler::new(SchedulerConfig {
        label_wait: Duration::from_secs(5),
        ..SchedulerConfig::default()
    })
}

fn step_state(s: &Scheduler, run: &str, step: &str) -> State {
    let r = s.run(run).unwrap();
    r.steps()[r.step_index(step).expect("step")].state().clone()
}

const TWO_STAGES: &str = r#"version: 1
stages:
  - name: one
    steps:
      - { name: a, run: "true", shards: 2 }
      - { name: b, run: "true" }
  - name: two
    steps:
      - { name: c, run: "true" }
      - { name: d, run: "true", needs: [a] }
"#;

#[test]
fn stage_barrier_and_needs_decide_what_is_leased() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 8, &[]));
    let run = submit(&mut s, TWO_STAGES, now);
    let first: Vec<(String, u32)> = s
        .assign(now)
        .into_iter()
        .map(|a| (a.lease.step, a.lease.shard_index))
        .collect();
    assert_eq!(
        first,
        vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]
    );
    let leases: Vec<_> = s.assign(now);
    assert!(leases.is_empty(), "nothing else is ready");
    // Finish both shards of `a`: `d` (needs a) becomes ready, `c` still waits for `b`.
    let a_leases: Vec<String> = {
        let r = s.run(&run).unwrap();
        r.steps()[0]
            .shards()
            .iter()
            .map(|sh| sh.lease().unwrap().to_owned())
            .collect()
    };
    for l in &a_leases {
        s.record_result("r1", l, ShardReport::of(State::Succeeded, 5), now)
            .unwrap();
    }
    let next: Vec<String> = s.assign(now).into_iter().map(|a| a.lease.step).collect();
    assert_eq!(next, vec!["d".to_string()]);
    assert_eq!(step_state(&s, &run, "c"), State::Pending);
}

#[test]
fn shard_env_carries_identity() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 4, &[]));
    let run = submit(&mut s, TWO_STAGES, now);
    let a = s.assign(now);
    let l = &a[1].lease;
    assert_eq!(l.env["BUILDFLEET_RUN_ID"], run);
    assert_eq!(l.env["BUILDFLEET_STEP"], "a");
    assert_eq!(l.env["BUILDFLEET_SHARD_INDEX"], "1");
    assert_eq!(l.env["BUILDFLEET_SHARD_COUNT"], "2");
}

#[test]
fn slots_bound_concurrency_and_labels_pick_runners() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("small", 1, &["linux"]));
    s.register_runner(runner("gpu", 1, &["linux", "gpu"]));
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - { name: train, run: "true", labels: [gpu], shards: 2 }
"#;
    submit(&mut s, yaml, now);
    let got = s.assign(now);
    assert_eq!(got.len(), 1, "only one gpu slot exists");
    assert_eq!(got[0].runner_id, "gpu");
    assert!(s.assign(now).is_empty());
}

#[test]
fn a_failure_skips_dependents_and_fails_the_run_with_evidence() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 8, &[]));
    let run = submit(&mut s, TWO_STAGES, now);
    let leases = s.assign(now);
    let failure = State::Failed(Failure {
        exit_code: Some(2),
        ..Failure::default()
    });
    s.record_result(
        "r1",
        &leases[0].lease.lease_id,
        ShardReport::of(failure, 1),
        now,
    )
    .unwrap();
    s.record_result(
        "r1",
        &leases[1].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    s.record_result(
        "r1",
        &leases[2].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    assert!(matches!(step_state(&s, &run, "a"), State::Failed(f) if f.exit_code == Some(2)));
    for dependent in ["c", "d"] {
        match step_state(&s, &run, dependent) {
            State::Skipped { reason } => assert!(reason.contains("`a`"), "{reason}"),
            other => panic!("{dependent} should be skipped, is {other}"),
        }
    }
    let r = s.run(&run).unwrap();
    assert!(
        matches!(&r.state(), State::Failed(f) if f.reason.contains("a failed (exit code 2)")),
        "{}",
        r.state()
    );
    assert!(!r.state().is_green());
}

#[test]
fn results_for_unknown_or_foreign_leases_are_refused() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &[]));
    s.register_runner(runner("r2", 1, &[]));
    submit(&mut s, TWO_STAGES, now);
    let leases = s.assign(now);
    let l = &leases[0];
    let other = if l.runner_id == "r1" { "r2" } else { "r1" };
    assert!(s
        .record_result(
            other,
            &l.lease.lease_id,
            ShardReport::of(State::Succeeded, 1),
            now
        )
        .is_err());
    assert!(s
        .record_result(
            &l.runner_id,
            "no-such-lease",
            ShardReport::of(State::Succeeded, 1),
            now
        )
        .is_err());
    s.record_result(
        &l.runner_id,
        &l.lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    assert!(
        s.record_result(
            &l.runner_id,
            &l.lease.lease_id,
            ShardReport::of(State::Succeeded, 1),
            now
        )
        .is_err(),
        "a result is never counted twice"
    );
}

#[test]
fn log_repeats_are_dropped_and_gaps_marked() {
    use buildfleet_coordinator::events::{EventKind, LogStream};
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &[]));
    let run = submit(
        &mut s,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true' }\n",
        now,
    );
    let l = s.assign(now).remove(0).lease.lease_id;
    s.record_log("r1", &l, 1, LogStream::Stdout, b"one\n".to_vec(), now)
        .unwrap();
    s.record_log("r1", &l, 1, LogStream::Stdout, b"one\n".to_vec(), now)
        .unwrap();
    s.record_log("r1", &l, 3, LogStream::Stdout, b"three\n".to_vec(), now)
        .unwrap();
    let logs: Vec<(LogStream, String)> = s
        .run(&run)
        .unwrap()
        .events()
        .after(0, 1000)
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Log(l) => Some((l.stream, String::from_utf8_lossy(&l.data).into_owned())),
            _ => None,
        })
        .collect();
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert_eq!(logs[0], (LogStream::Stdout, "one\n".into()));
    assert_eq!(logs[1].0, LogStream::System);
    assert!(logs[1].1.contains("1 log chunk(s) before #3 never arrived"));
    assert_eq!(logs[2], (LogStream::Stdout, "three\n".into()));
}

#[test]
fn unmatched_labels_fail_after_the_wait_not_before() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &["linux"]));
    let run = submit(&mut s, "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: g, run: 'true', labels: [gpu] }\n", now);
    assert!(s.assign(now).is_empty());
    s.tick(now + Duration::from_secs(4));
    assert_eq!(step_state(&s, &run, "g"), State::Waiting);
    s.tick(now + Duration::from_secs(6));
    match step_state(&s, &run, "g") {
        State::Failed(f) => assert!(
            f.reason.contains("no connected runner has labels [gpu]"),
            "{}",
            f.reason
        ),
        other => panic!("expected failure, got {other}"),
    }
    assert!(s.run(&run).unwrap().is_finished());
}

#[test]
fn busy_matching_runners_mean_waiting_not_failing() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &[]));
    let run = submit(&mut s, "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true', shards: 2 }\n", now);
    assert_eq!(s.assign(now).len(), 1);
    s.tick(now + Duration::from_secs(60));
    assert_eq!(
        step_state(&s, &run, "x"),
        State::Running,
        "queued behind a busy runner is fine"
    );
}

#[test]
fn a_lost_runner_loses_its_shards_once_infra_retries_are_used_up() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &[]));
    let run = submit(
        &mut s,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true', retries: { infra: 0 } }\n",
        now,
    );
    let lease = s.assign(now).remove(0).lease.lease_id;
    s.runner_gone("r1", Loss::RunnerLost, now);
    assert_eq!(
        step_state(&s, &run, "x"),
        State::RunnerLost {
            runner: "r1".into()
        }
    );
    assert!(
        s.record_result("r1", &lease, ShardReport::of(State::Succeeded, 1), now)
            .is_err(),
        "late result refused"
    );
    assert!(!s.run(&run).unwrap().state().is_green());
}

#[test]
fn a_lost_runners_shard_is_leased_again_and_its_late_result_never_counts() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &[]));
    s.register_runner(runner("r2", 1, &[]));
    let run = submit(
        &mut s,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true', retries: { infra: 1 } }\n",
        now,
    );
    let first = s.assign(now).remove(0);
    s.runner_gone(&first.runner_id, Loss::RunnerLost, now);
    let second = s.assign(now).remove(0);
    assert_ne!(second.runner_id, first.runner_id);
    assert_eq!(second.lease.attempt, 2);
    assert!(s
        .record_result(
            &first.runner_id,
            &first.lease.lease_id,
            ShardReport::of(State::Succeeded, 1),
            now
        )
        .is_err());
    assert_eq!(
        step_state(&s, &run, "x"),
        State::Running,
        "the late result changed nothing"
    );
    // The coordinator dropping a runner costs no retry: the budget of 1 is
    // used, yet the shard is leased again.
    s.register_runner(runner("r3", 1, &[]));
    s.runner_gone(&second.runner_id, Loss::NoFault, now);
    let third = s.assign(now).remove(0);
    assert_eq!(third.lease.attempt, 3);
    s.record_result(
        &third.runner_id,
        &third.lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    let r = s.run(&run).unwrap();
    assert_eq!(*r.state(), State::Succeeded);
    assert_eq!(r.steps()[0].shards()[0].infra_retries(), 1);
}

#[test]
fn cancel_ends_unstarted_work_and_orders_running_leases_stopped() {
    let now = Instant::now();
    let mut s = sched();
    s.register_runner(runner("r1", 1, &[]));
    let run = submit(&mut s, TWO_STAGES, now);
    let lease = s.assign(now).remove(0);
    let (was_running, orders) = s.cancel(&run, "stop", now).unwrap();
    assert!(was_running);
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].lease_id, lease.lease.lease_id);
    assert!(
        s.assign(now).is_empty(),
        "a cancelled run gets no new leases"
    );
    assert!(
        !s.run(&run).unwrap().is_finished(),
        "waits for the running shard"
    );
    s.record_result(
        "r1",
        &lease.lease.lease_id,
        ShardReport::of(
            State::Cancelled {
                reason: "stop".into(),
            },
            1,
        ),
        now,
    )
    .unwrap();
    assert_eq!(
        *s.run(&run).unwrap().state(),
        State::Cancelled {
            reason: "stop".into()
        }
    );
}

#[test]
fn idempotency_key_returns_the_first_run() {
    let now = Instant::now();
    let mut s = sched();
    let p = || pipeline::parse("t.yaml", TWO_STAGES).unwrap();
    let a = s.submit(
        p(),
        "t".into(),
        Digest::empty(),
        Default::default(),
        Some("k".into()),
        now,
    );
    let b = s.submit(
        p(),
        "t".into(),
        Digest::empty(),
        Default::default(),
        Some("k".into()),
        now,
    );
    assert_eq!(a.run_id, b.run_id);
    assert!(b.deduplicated && !a.deduplicated);
}

#[test]
fn a_silent_run_is_stalled_once_and_failures_and_recoveries_are_notified() {
    use buildfleet_coordinator::notify::Event;
    let now = Instant::now();
    let mut s = Scheduler::new(SchedulerConfig {
        stall_after: Duration::from_secs(60),
        ..SchedulerConfig::default()
    });
    s.register_runner(runner("r1", 1, &[]));
    let yaml = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: x, run: 'true' }\n";
    let run = submit(&mut s, yaml, now);
    let lease = s.assign(now).remove(0).lease.lease_id;
    s.tick(now + Duration::from_secs(59));
    assert!(s.take_notifications().is_empty(), "not yet stalled");
    s.tick(now + Duration::from_secs(61));
    s.tick(now + Duration::from_secs(200));
    let stalled = s.take_notifications();
    assert_eq!(stalled.len(), 1, "once: {stalled:?}");
    assert_eq!(stalled[0].event, Event::RunStalled);
    assert_eq!(stalled[0].runs, vec![run.clone()]);
    let r = s.run(&run).unwrap();
    assert!(r.notices().any(|n| n.text.contains("made no progress")));

    let failed = State::Failed(Failure {
        exit_code: Some(1),
        signal: None,
        reason: String::new(),
    });
    s.record_result("r1", &lease, ShardReport::of(failed, 1), now)
        .unwrap();
    let ended = s.take_notifications();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].event, Event::RunFailed);
    assert!(s.take_notifications().is_empty(), "said once");

    let again = submit(&mut s, yaml, now);
    let lease = s.assign(now).remove(0).lease.lease_id;
    s.record_result("r1", &lease, ShardReport::of(State::Succeeded, 1), now)
        .unwrap();
    let recovered = s.take_notifications();
    assert_eq!(recovered.len(), 1);
    assert_eq!(
        (recovered[0].event, recovered[0].runs.clone()),
        (Event::RunRecovered, vec![again])
    );
}

#[test]
fn a_draining_runner_stays_draining_through_its_heartbeats() {
    let mut s = sched();
    let now = Instant::now();
    s.register_runner(runner("r1", 2, &[]));
    s.drain("r1", "draining: stopping within 25s".into());
    // Its heartbeats say nothing about draining; they must not undo it.
    s.set_unavailable("r1", None);
    let run = submit(
        &mut s,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: a, run: 'true' }\n",
        now,
    );
    assert!(
        s.assign(now).is_empty(),
        "nothing is leased to a draining runner"
    );
    assert_eq!(
        s.runners()[0].availability(),
        Some("draining: stopping within 25s")
    );
    s.register_runner(runner("r2", 1, &[]));
    let leased = s.assign(now);
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].runner_id, "r2");
    assert_eq!(step_state(&s, &run, "a"), State::Running);
}
