//! `if:` conditions as the scheduler applies them: which steps run, which
//! end skipped by their condition (not failing the run), which are skipped
//! because a dependency failed (failing it), and cleanup after a cancel.

mod support;

use std::time::{Duration, Instant};

use buildfleet_coordinator::run::RunOptions;
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig, ShardReport};
use buildfleet_model::state::State;
use buildfleet_model::RunContext;
use support::{runner, submit_as};

const DELIVERY: &str = r#"version: 1
stages:
  - name: build
    steps:
      - { name: build, run: "true" }
  - name: ship
    steps:
      - { name: deploy, run: "true", if: "branch == 'main'" }
      - { name: health, run: "true", needs: [deploy] }
      - { name: smoke, run: "true", needs: [build] }
      - { name: rollback, run: "true", needs: [smoke], if: "failure()" }
      - { name: cleanup, run: "true", needs: [smoke], if: "always()" }
"#;

fn sched() -> Scheduler {
    let mut s = Scheduler::new(SchedulerConfig {
        label_wait: Duration::from_secs(5),
        ..SchedulerConfig::default()
    });
    s.register_runner(runner("r1", 8, &[]));
    s
}

fn on(s: &mut Scheduler, git_ref: &str, yaml: &str, now: Instant) -> String {
    let options = RunOptions {
        project: "p".into(),
        context: RunContext {
            git_ref: git_ref.into(),
            ..RunContext::default()
        },
        ..RunOptions::default()
    };
    submit_as(s, yaml, options, now)
}

fn state(s: &Scheduler, run: &str, step: &str) -> State {
    let r = s.run(run).unwrap();
    r.steps()[r.step_index(step).expect("step")].state().clone()
}

/// Leases everything ready and ends each lease as `end` says, until
/// nothing more is leased; returns the steps leased, in order.
fn drive(s: &mut Scheduler, end: impl Fn(&str) -> State, now: Instant) -> Vec<String> {
    let mut ran = Vec::new();
    loop {
        let leases = s.assign(now);
        if leases.is_empty() {
            return ran;
        }
        for a in leases {
            let st = end(&a.lease.step);
            ran.push(a.lease.step.clone());
            s.record_result("r1", &a.lease.lease_id, ShardReport::of(st, 1), now)
                .unwrap();
        }
    }
}

#[test]
fn on_a_feature_branch_the_deploy_is_skipped_by_its_condition_and_the_run_is_green() {
    let now = Instant::now();
    let mut s = sched();
    let run = on(&mut s, "refs/heads/feature", DELIVERY, now);
    let ran = drive(&mut s, |_| State::Succeeded, now);
    assert_eq!(ran, ["build", "smoke", "cleanup"]);
    assert_eq!(
        state(&s, &run, "deploy"),
        State::ConditionFalse {
            why: "branch is 'feature'".into()
        }
    );
    assert_eq!(
        state(&s, &run, "health"),
        State::ConditionFalse {
            why: "needs `deploy`, which was skipped (condition false)".into()
        }
    );
    assert_eq!(
        state(&s, &run, "rollback"),
        State::ConditionFalse {
            why: "no dependency failed".into()
        }
    );
    assert_eq!(s.run(&run).unwrap().state(), &State::Succeeded);
}

#[test]
fn on_main_the_deploy_and_its_health_check_run() {
    let now = Instant::now();
    let mut s = sched();
    let run = on(&mut s, "refs/heads/main", DELIVERY, now);
    let ran = drive(&mut s, |_| State::Succeeded, now);
    assert_eq!(ran, ["build", "deploy", "smoke", "health", "cleanup"]);
    assert_eq!(state(&s, &run, "health"), State::Succeeded);
    assert_eq!(s.run(&run).unwrap().state(), &State::Succeeded);
}

#[test]
fn a_failed_smoke_test_runs_the_rollback_and_the_run_stays_red() {
    let now = Instant::now();
    let mut s = sched();
    let run = on(&mut s, "refs/heads/main", DELIVERY, now);
    let ran = drive(
        &mut s,
        |step| match step {
            "smoke" => State::failed("exit 1"),
            _ => State::Succeeded,
        },
        now,
    );
    assert!(ran.contains(&"rollback".to_owned()), "{ran:?}");
    assert!(ran.contains(&"cleanup".to_owned()), "{ran:?}");
    assert_eq!(state(&s, &run, "rollback"), State::Succeeded);
    let end = s.run(&run).unwrap().state().clone();
    assert!(
        matches!(&end, State::Failed(f) if f.reason.contains("smoke failed")),
        "{end}"
    );
}

#[test]
fn a_failed_dependency_still_skips_as_a_failure_not_as_a_condition() {
    let now = Instant::now();
    let mut s = sched();
    let run = on(&mut s, "refs/heads/main", DELIVERY, now);
    drive(
        &mut s,
        |step| match step {
            "build" => State::failed("exit 2"),
            _ => State::Succeeded,
        },
        now,
    );
    // smoke has no `if:`: skipped because build failed, failing the run.
    assert_eq!(
        state(&s, &run, "smoke"),
        State::Skipped {
            reason: "needs `build`, which failed".into()
        }
    );
    // rollback's failure() sees smoke's failure-skip.
    assert_eq!(state(&s, &run, "rollback"), State::Succeeded);
    assert!(!s.run(&run).unwrap().state().is_green());
}

#[test]
fn a_cancelled_run_still_runs_its_always_and_cancelled_steps() {
    const CLEANUP: &str = r#"version: 1
stages:
  - name: a
    steps:
      - { name: long, run: "sleep 100" }
  - name: b
    steps:
      - { name: next, run: "true" }
      - { name: cleanup, run: "true", if: "cancelled()" }
      - { name: report, run: "true", if: "always()" }
"#;
    let now = Instant::now();
    let mut s = sched();
    let run = on(&mut s, "refs/heads/main", CLEANUP, now);
    let first = s.assign(now);
    assert_eq!(first.len(), 1);
    s.cancel(&run, "stop", now).unwrap();
    // The running shard reports back cancelled; then cleanup and report run.
    s.record_result(
        "r1",
        &first[0].lease.lease_id,
        ShardReport::of(
            State::Cancelled {
                reason: "stop".into(),
            },
            1,
        ),
        now,
    )
    .unwrap();
    let ran = drive(&mut s, |_| State::Succeeded, now);
    assert_eq!(ran, ["cleanup", "report"]);
    assert!(matches!(state(&s, &run, "next"), State::Cancelled { .. }));
    assert!(matches!(
        s.run(&run).unwrap().state(),
        State::Cancelled { .. }
    ));
}
