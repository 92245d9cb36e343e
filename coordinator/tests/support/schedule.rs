//! Random schedules for property tests: pipelines to submit and the
//! operations a fleet performs on them (runners joining and vanishing,
//! leases ending every way, hand-backs, cancels, time passing).
#![allow(dead_code)]

use buildfleet_coordinator::scheduler::Loss;
use std::time::{Duration, Instant};

use buildfleet_coordinator::scheduler::{Scheduler, ShardReport};
use buildfleet_model::state::State;
use proptest::prelude::*;

use super::runner;

pub const PIPELINES: &[&str] = &[
    // Stages, shards, a `needs` shortcut.
    "version: 1\nstages:\n  - name: a\n    steps:\n      - { name: build, run: 'true', shards: 2 }\n      - { name: lint, run: 'true' }\n  - name: b\n    steps:\n      - { name: test, run: 'true', needs: [build] }\n      - { name: ship, run: 'true' }\n",
    // A listed split, then a step after it.
    "version: 1\nstages:\n  - name: a\n    steps:\n      - name: unit\n        run: 'true'\n        shards: 3\n        split: { list: 'ls tests' }\n  - name: b\n    steps:\n      - { name: after, run: 'true' }\n",
    // Flaky re-runs and infra retries.
    "version: 1\nstages:\n  - name: a\n    steps:\n      - { name: flaky, run: 'true', shards: 2, retries: { flaky: 1, infra: 1 }, reports: [r.xml] }\n",
    // Conditions: never on this branch, after a failure, always (also
    // after a cancel).
    "version: 1\nstages:\n  - name: a\n    steps:\n      - { name: build, run: 'true', shards: 2 }\n  - name: b\n    steps:\n      - { name: deploy, run: 'true', if: \"branch == 'main'\" }\n      - { name: rollback, run: 'true', if: 'failure()' }\n      - { name: tidy, run: 'true', if: 'always()' }\n",
];

pub fn submit(s: &mut Scheduler, which: usize, now: Instant) -> String {
    super::submit(s, PIPELINES[which], now)
}

#[derive(Debug, Clone)]
pub enum Op {
    Submit(usize),
    Runner(u32),
    Assign,
    /// Ends the nth outstanding lease: 0 succeeded, 1 failed, 2 failed
    /// with a failed test in its report.
    Finish(usize, u8),
    Lose(usize),
    HandBack(usize),
    Cancel(usize),
    Tick(u64),
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PIPELINES.len()).prop_map(Op::Submit),
        (1u32..4).prop_map(Op::Runner),
        Just(Op::Assign),
        Just(Op::Assign),
        (0usize..8, 0u8..3).prop_map(|(i, how)| Op::Finish(i, how)),
        (0usize..4).prop_map(Op::Lose),
        (0usize..8).prop_map(Op::HandBack),
        (0usize..4).prop_map(Op::Cancel),
        (0u64..5_000).prop_map(Op::Tick),
    ]
}

pub fn failed_test() -> buildfleet_model::test_result::TestResult {
    buildfleet_model::test_result::TestResult {
        id: "t::x".into(),
        outcome: buildfleet_model::test_result::TestOutcome::Failed,
        duration_ms: 1,
        message: "boom".into(),
        report: "r.xml".into(),
        flaky: false,
        quarantined: false,
        attempt: 0,
    }
}

/// Runs `ops` against `s`, calling `check` after each with the runs
/// submitted so far and a label naming the operation.
pub fn drive(
    s: &mut Scheduler,
    ops: &[Op],
    mut check: impl FnMut(&mut Scheduler, &[String], &str),
) {
    let start = Instant::now();
    let mut now = start;
    let mut runs: Vec<String> = Vec::new();
    let mut runners: Vec<String> = Vec::new();
    // (runner, lease, is a listing)
    let mut leases: Vec<(String, String, bool)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Submit(which) => runs.push(submit(s, *which, now)),
            Op::Runner(slots) => {
                let id = format!("r{i}");
                s.register_runner(runner(&id, *slots, &[]));
                runners.push(id);
            }
            Op::Assign => {
                for a in s.assign(now) {
                    let listing = a.lease.is_listing();
                    leases.push((a.runner_id, a.lease.lease_id, listing));
                }
            }
            Op::Finish(n, how) if !leases.is_empty() => {
                let (r, lease, listing) = leases.remove(n % leases.len());
                let mut report = match how {
                    0 => ShardReport::of(State::Succeeded, 10),
                    _ => ShardReport::of(
                        State::Failed(buildfleet_model::state::Failure {
                            exit_code: Some(1),
                            signal: None,
                            reason: String::new(),
                        }),
                        10,
                    ),
                };
                if listing {
                    report.items = vec![
                        "tests/a".into(),
                        "tests/b".into(),
                        "tests/c".into(),
                        "tests/d".into(),
                    ];
                }
                if *how == 2 {
                    report.tests = vec![failed_test()];
                }
                let _ = s.record_result(&r, &lease, report, now);
            }
            Op::Lose(n) if !runners.is_empty() => {
                let r = runners.remove(n % runners.len());
                s.runner_gone(&r, Loss::RunnerLost, now);
                leases.retain(|(owner, _, _)| owner != &r);
            }
            Op::HandBack(n) if !leases.is_empty() => {
                let (r, lease, _) = leases.remove(n % leases.len());
                let _ = s.hand_back(&r, &lease, "draining", now);
            }
            Op::Cancel(n) if !runs.is_empty() => {
                let id = runs[n % runs.len()].clone();
                if let Ok((_, orders)) = s.cancel(&id, "by test", now) {
                    // The runners report the cancelled shards back.
                    for o in orders {
                        if let Some(pos) = leases.iter().position(|l| l.1 == o.lease_id) {
                            let (r, lease, _) = leases.remove(pos);
                            let cancelled = State::Cancelled {
                                reason: "by test".into(),
                            };
                            let _ = s.record_result(&r, &lease, ShardReport::of(cancelled, 1), now);
                        }
                    }
                }
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(*ms);
                s.tick(now);
            }
            _ => {}
        }
        check(s, &runs, &format!("op {i} {op:?}"));
    }
}
