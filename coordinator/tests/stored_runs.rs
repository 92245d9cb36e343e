//! What is stored of a run is the run: after any sequence of scheduling
//! operations, the stored snapshot and events equal the live run — so a
//! coordinator restarted at any moment restores exactly what it had. A
//! failed write stops leasing for the run, and says so. Secrets are read
//! again on restore: one that has gone fails its step before it starts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
mod support;

use std::time::{Duration, Instant};

use buildfleet_coordinator::db::{DbError, Entry, Kv, MemoryKv};
use buildfleet_coordinator::persist::RunStore;
use buildfleet_coordinator::pipeline;
use buildfleet_coordinator::run::{Listing, Run, RunOptions};
use buildfleet_coordinator::scheduler::{Scheduler, SchedulerConfig, ShardReport};
use buildfleet_coordinator::secrets::Resolved;
use buildfleet_model::state::State;
use buildfleet_model::Digest;
use proptest::prelude::*;
use support::runner;
use support::schedule::{drive, op, submit};

/// A store whose writes can be made to fail, as a full or broken disk would.
#[derive(Default)]
struct FailingKv {
    inner: MemoryKv,
    fail: AtomicBool,
}

impl Kv for FailingKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        self.inner.get(key)
    }
    fn put(&self, writes: Vec<Entry>) -> Result<(), DbError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(DbError::Io("No space left on device".into()));
        }
        self.inner.put(writes)
    }
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, DbError> {
        self.inner.scan(prefix)
    }
    fn delete(&self, keys: Vec<Vec<u8>>) -> Result<(), DbError> {
        self.inner.delete(keys)
    }
}

/// Everything about a run that a restart must not change, without the
/// clock readings (stored as wall-clock times, read back approximately).
fn shape(run: &Run) -> String {
    let steps: Vec<String> = run
        .steps()
        .iter()
        .map(|st| {
            let shards: Vec<String> = st
                .shards()
                .iter()
                .map(|sh| {
                    format!(
                        "{}:{:?}:{:?}:{:?}:{}:{:?}:{:?}:{:?}:{}:{}:{:?}:{:?}",
                        sh.index(),
                        sh.state(),
                        sh.runner(),
                        sh.lease(),
                        sh.attempt(),
                        sh.items(),
                        sh.attempt_items(),
                        sh.tests(),
                        sh.flaky_reruns(),
                        sh.infra_retries(),
                        sh.muted_exit(),
                        sh.cache(),
                    )
                })
                .collect();
            format!(
                "{}={:?} {:?} split:{} [{}]",
                st.name(),
                st.state(),
                st.listing(),
                st.split().is_some(),
                shards.join(" | ")
            )
        })
        .collect();
    format!(
        "{:?} cancel:{:?}\n{}",
        run.state(),
        run.cancel_reason(),
        steps.join("\n")
    )
}

/// Asserts every live run equals what the store holds of it.
fn assert_stored_equals_live(s: &Scheduler, store: &RunStore, ids: &[String], after: &str) {
    let stored: BTreeMap<String, Run> = store
        .load_runs()
        .unwrap()
        .into_iter()
        .map(|r| (r.id().to_owned(), r))
        .collect();
    for id in ids {
        let live = s.run(id).unwrap();
        let kept = stored
            .get(id)
            .unwrap_or_else(|| panic!("run {id} not stored after {after}"));
        assert_eq!(shape(kept), shape(live), "stored run differs after {after}");
        let events: Vec<_> = store.load_events(id).unwrap();
        let live_events: Vec<_> = live.events().all().cloned().collect();
        assert_eq!(events, live_events, "stored events differ after {after}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn after_any_schedule_the_stored_run_is_the_live_run(ops in prop::collection::vec(op(), 1..40)) {
        let store = RunStore::new(Arc::new(MemoryKv::default()));
        let mut s = Scheduler::new(SchedulerConfig::default());
        s.persist_to(store.clone());
        drive(&mut s, &ops, |s, runs, after| {
            s.persist();
            assert_stored_equals_live(s, &store, runs, after);
        });
    }
}

#[test]
fn a_listing_lease_starting_is_an_event_and_is_stored() {
    let store = RunStore::new(Arc::new(MemoryKv::default()));
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.persist_to(store.clone());
    let now = Instant::now();
    let id = submit(&mut s, 1, now);
    s.register_runner(runner("r", 1, &[]));
    s.persist();
    let before = s.run(&id).unwrap().events().last_seq();
    let leases = s.assign(now);
    assert!(leases[0].lease.is_listing());
    s.persist();
    let run = s.run(&id).unwrap();
    assert!(matches!(run.steps()[0].listing(), Listing::Leased(_)));
    assert_eq!(*run.steps()[0].state(), State::Running);
    let running_event = run.events().all().skip(before as usize).any(|e| {
        matches!(&e.kind, buildfleet_coordinator::events::EventKind::State(c)
            if c.step.as_deref() == Some("unit") && c.shard.is_none() && c.state == State::Running)
    });
    assert!(
        running_event,
        "the step's move to running is in its event log"
    );
    assert_stored_equals_live(&s, &store, &[id], "the listing lease");
}

#[test]
fn ending_a_step_unrun_records_every_shard_it_ends() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    let now = Instant::now();
    let id = submit(&mut s, 0, now);
    s.cancel(&id, "stop", now).unwrap();
    let run = s.run(&id).unwrap();
    for st in run.steps() {
        for sh in st.shards() {
            let recorded = run.events().all().any(|e| {
                matches!(&e.kind, buildfleet_coordinator::events::EventKind::State(c)
                    if c.step.as_deref() == Some(st.name()) && c.shard == Some(sh.index()) && c.state == *sh.state())
            });
            assert!(
                recorded,
                "{}#{} {:?} has no event",
                st.name(),
                sh.index(),
                sh.state()
            );
        }
    }
}

#[test]
fn a_failed_write_stops_leasing_for_the_run_until_it_is_stored_again() {
    let kv = Arc::new(FailingKv::default());
    let store = RunStore::new(kv.clone());
    let mut s = Scheduler::new(SchedulerConfig::default());
    s.persist_to(store);
    let now = Instant::now();
    s.register_runner(runner("r", 4, &[]));
    let id = submit(&mut s, 0, now);
    s.persist();
    let first = s.assign(now);
    assert_eq!(first.len(), 3, "build#0, build#1, lint");
    s.persist();
    kv.fail.store(true, Ordering::SeqCst);
    let build0 = first.iter().find(|a| a.lease.step == "build").unwrap();
    s.record_result(
        "r",
        &build0.lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    s.persist();
    let text: Vec<String> = s
        .run(&id)
        .unwrap()
        .notices()
        .map(|n| n.text.clone())
        .collect();
    assert!(
        text.iter().any(|t| t.contains("could not be stored")
            && t.contains("No space left on device")
            && t.contains("no new shards are leased")),
        "{text:?}"
    );
    assert!(s.unsaved(&id).is_some());
    for a in &first[1..] {
        s.record_result(
            "r",
            &a.lease.lease_id,
            ShardReport::of(State::Succeeded, 1),
            now,
        )
        .unwrap();
    }
    s.persist();
    assert!(
        s.assign(now).is_empty(),
        "`test` and `ship` are ready, but nothing is leased while the run cannot be stored"
    );
    kv.fail.store(false, Ordering::SeqCst);
    s.persist();
    assert!(s.unsaved(&id).is_none());
    let next: Vec<String> = s.assign(now).into_iter().map(|a| a.lease.step).collect();
    assert_eq!(next, ["test", "ship"]);
    let text: Vec<String> = s
        .run(&id)
        .unwrap()
        .notices()
        .map(|n| n.text.clone())
        .collect();
    assert!(
        text.iter()
            .any(|t| t.contains("stored again; leasing resumes")),
        "{text:?}"
    );
}

const SECRET_PIPELINE: &str = "version: 1\nstages:\n  - name: a\n    steps:\n      - { name: build, run: 'true' }\n  - name: b\n    steps:\n      - { name: push, run: 'true', secrets: [TOKEN] }\n  - name: c\n    steps:\n      - { name: deploy, run: 'true' }\n";

fn submit_secret(s: &mut Scheduler, now: Instant, expiry: Option<Instant>) -> String {
    let mut options = RunOptions {
        pipeline_yaml: SECRET_PIPELINE.into(),
        ..RunOptions::default()
    };
    options.secrets.insert("TOKEN".into(), "v1".into());
    if let Some(at) = expiry {
        options.secret_expiry.insert(
            "TOKEN".into(),
            buildfleet_coordinator::run::Expiry {
                at,
                wall: "2026-12-01T00:00:00Z".into(),
            },
        );
    }
    let p = pipeline::parse("t.yaml", SECRET_PIPELINE).unwrap();
    s.submit(p, "t.yaml".into(), Digest::empty(), options, None, now)
        .run_id
}

#[test]
fn a_secret_gone_after_a_restart_fails_its_step_before_it_starts() {
    let store = RunStore::new(Arc::new(MemoryKv::default()));
    let now = Instant::now();
    let id = {
        let mut s = Scheduler::new(SchedulerConfig::default());
        s.persist_to(store.clone());
        s.register_runner(runner("r", 1, &[]));
        let id = submit_secret(&mut s, now, None);
        let build = s.assign(now);
        assert_eq!(build[0].lease.step, "build");
        s.persist();
        id
    }; // the coordinator dies while `build` runs; TOKEN is removed meanwhile
    let mut s = Scheduler::new(SchedulerConfig::default());
    let removed = |names: &BTreeSet<String>| Resolved {
        unusable: names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    format!("secret {n} is not in the secret store (/secrets)"),
                )
            })
            .collect(),
        ..Resolved::default()
    };
    s.restore(&store, &removed, now).unwrap();
    s.register_runner(runner("r", 1, &[]));
    let again = s.assign(now);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].lease.step, "build", "what needs no secret goes on");
    s.record_result(
        "r",
        &again[0].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    assert!(s.assign(now).is_empty(), "`push` is never leased");
    let run = s.run(&id).unwrap();
    let push = &run.steps()[1];
    assert!(
        matches!(&push.state(), State::Failed(f) if f.reason.contains("secret TOKEN is not in the secret store")),
        "{:?}",
        push.state()
    );
    assert!(
        matches!(&run.steps()[2].state(), State::Skipped { reason } if reason.contains("push")),
        "its dependants are skipped: {:?}",
        run.steps()[2].state()
    );
    assert!(matches!(run.state(), State::Failed(_)));
}

#[test]
fn a_secret_that_expires_while_the_run_waits_fails_its_step_before_it_starts() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    let now = Instant::now();
    s.register_runner(runner("r", 1, &[]));
    let id = submit_secret(&mut s, now, Some(now + Duration::from_secs(60)));
    let build = s.assign(now);
    let later = now + Duration::from_secs(120);
    s.record_result(
        "r",
        &build[0].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        later,
    )
    .unwrap();
    assert!(
        s.assign(later).is_empty(),
        "`push` is not leased with an expired secret"
    );
    let run = s.run(&id).unwrap();
    assert!(
        matches!(&run.steps()[1].state(), State::Failed(f) if f.reason.contains("secret TOKEN expired at 2026-12-01T00:00:00Z while the run was under way")),
        "{:?}",
        run.steps()[1].state()
    );
    assert!(matches!(run.steps()[2].state(), State::Skipped { .. }));
}

#[test]
fn a_secret_expiring_under_a_running_step_lets_it_finish_and_says_nothing_more() {
    let mut s = Scheduler::new(SchedulerConfig::default());
    let now = Instant::now();
    s.register_runner(runner("r", 1, &[]));
    let id = submit_secret(&mut s, now, Some(now + Duration::from_secs(60)));
    let build = s.assign(now);
    s.record_result(
        "r",
        &build[0].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        now,
    )
    .unwrap();
    let push = s.assign(now);
    assert_eq!(
        push[0].lease.step, "push",
        "leased while the secret was valid"
    );
    // The secret expires while `push` runs: nothing of it is left to stop,
    // and dispatching again and again must not add to the run.
    let later = now + Duration::from_secs(120);
    let before = s.run(&id).unwrap().events().last_seq();
    for i in 0..50 {
        assert!(s.assign(later + Duration::from_millis(i)).is_empty());
    }
    assert_eq!(s.run(&id).unwrap().events().last_seq(), before);
    s.record_result(
        "r",
        &push[0].lease.lease_id,
        ShardReport::of(State::Succeeded, 1),
        later,
    )
    .unwrap();
    assert_eq!(*s.run(&id).unwrap().steps()[1].state(), State::Succeeded);
}
