//! End-to-end behaviour of the fleet: real gRPC servers on 127.0.0.1, real
//! RocksDB, real runner processes.

mod harness;

use std::time::Duration;

use buildfleet_proto::v1 as pb;
use harness::{kind, seq_of, stdout_of, step};
use pb::StateKind as K;

fn trace_pipeline(trace: &std::path::Path, body: &str) -> String {
    format!("version: 1\nenv:\n  TRACE: {}\n{body}", trace.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_run_in_order_and_needs_skip_the_barrier() {
    let fleet = harness::start(3).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = trace_pipeline(
        &trace,
        r#"stages:
  - name: one
    steps:
      - name: fast
        run: echo fast-end >> "$TRACE"
      # Ends only once `early` ran (or after 30s, which fails the test):
      # no race with the machine's speed.
      - name: slow
        run: |
          for _ in $(seq 600); do [ -e "$TRACE.early" ] && break; sleep 0.05; done
          echo slow-end >> "$TRACE"
  - name: two
    steps:
      - name: early
        needs: [fast]
        run: echo early >> "$TRACE"; touch "$TRACE.early"
      - name: barrier
        run: echo barrier >> "$TRACE"
"#,
    );
    let (status, events) = fleet.run(&yaml, &[]).await;
    assert_eq!(kind(&status.state), K::Succeeded, "{status:?}");
    let lines: Vec<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let pos = |w: &str| {
        lines
            .iter()
            .position(|l| l == w)
            .unwrap_or_else(|| panic!("{w} missing: {lines:?}"))
    };
    assert!(
        pos("early") < pos("slow-end"),
        "`needs: [fast]` must not wait for the stage: {lines:?}"
    );
    assert!(
        pos("barrier") > pos("slow-end"),
        "a step without needs waits for the whole previous stage: {lines:?}"
    );
    assert!(pos("barrier") > pos("fast-end"));
    assert!(
        seq_of(&events, "barrier", Some(0), K::Running)
            > seq_of(&events, "slow", None, K::Succeeded),
        "events show the barrier too"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_step_skips_its_dependents_and_fails_the_run() {
    let fleet = harness::start(2).await;
    let yaml = r#"version: 1
stages:
  - name: build
    steps:
      - { name: broken, run: "echo about to fail; exit 3" }
      - { name: fine, run: "true" }
  - name: test
    steps:
      - { name: after, run: "echo never" }
"#;
    let (status, events) = fleet.run(yaml, &[]).await;
    assert_eq!(kind(&status.state), K::Failed);
    let broken = step(&status, "broken");
    assert_eq!(kind(&broken.state), K::Failed);
    assert_eq!(broken.shards[0].state.as_ref().unwrap().exit_code, Some(3));
    assert_eq!(kind(&step(&status, "fine").state), K::Succeeded);
    let after = step(&status, "after");
    assert_eq!(
        kind(&after.state),
        K::Skipped,
        "a skipped step is its own state, never green"
    );
    assert!(
        after.state.as_ref().unwrap().reason.contains("`broken`"),
        "{:?}",
        after.state
    );
    assert_eq!(stdout_of(&events, "broken", 0), "about to fail\n");
    assert_eq!(stdout_of(&events, "after", 0), "");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shard_gets_its_variables() {
    let fleet = harness::start(2).await;
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - name: split
        shards: 3
        run: echo "$BUILDFLEET_RUN_ID $BUILDFLEET_STEP $BUILDFLEET_SHARD_INDEX $BUILDFLEET_SHARD_COUNT"
"#;
    let id = fleet.submit(yaml, &[]).await;
    let events = fleet.watch_all(&id).await;
    let status = fleet.get(&id).await;
    assert_eq!(kind(&status.state), K::Succeeded);
    for i in 0..3 {
        assert_eq!(
            stdout_of(&events, "split", i),
            format!("{id} split {i} 3\n")
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_are_materialised_in_each_shard() {
    let fleet = harness::start(2).await;
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - name: read
        shards: 2
        run: cat data/hello.txt; ./tool.sh
"#;
    let files = [
        ("data/hello.txt", "hello from the snapshot\n"),
        ("tool.sh", "#!/bin/sh\necho tool ran\n"),
    ];
    // Written by hand (not via `submit`) so the script can be made executable.
    let dir = tempfile::tempdir().unwrap();
    for (n, b) in files {
        let p = dir.path().join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.path().join("tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let root = harness::upload(&fleet.fleet, dir.path()).await;
    let id = fleet.submit_root(yaml, root, "").await.unwrap().run_id;
    let events = fleet.watch_all(&id).await;
    assert_eq!(kind(&fleet.get(&id).await.state), K::Succeeded);
    for i in 0..2 {
        assert_eq!(
            stdout_of(&events, "read", i),
            "hello from the snapshot\ntool ran\n"
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_gets_all_100k_lines_in_order_and_once() {
    let fleet = harness::start(1).await;
    let yaml = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: count, run: 'seq 1 100000' }\n";
    let id = fleet.submit(yaml, &[]).await;
    // One watcher from the start, live; one late watcher after the end.
    let live = fleet.watch_all(&id).await;
    let late = fleet.watch_all(&id).await;
    for events in [&live, &late] {
        let text = stdout_of(events, "count", 0);
        let mut expected = 1u32;
        for line in text.lines() {
            assert_eq!(
                line.parse::<u32>().unwrap(),
                expected,
                "lines out of order or repeated"
            );
            expected += 1;
        }
        assert_eq!(expected, 100_001, "every line arrived");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "event seqs are gap-free"
        );
    }
    assert_eq!(live, late, "a late watcher sees the same history");
    // A watcher resuming after some event gets exactly the rest.
    let mut resumed = fleet
        .client()
        .await
        .watch(pb::WatchRequest {
            run_id: id.clone(),
            after_seq: 10,
        })
        .await
        .unwrap()
        .into_inner();
    let first = futures::StreamExt::next(&mut resumed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.seq, 11);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_shards_and_unstarted_steps() {
    let fleet = harness::start(1).await;
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - { name: long, run: "echo started; sleep 60" }
  - name: t
    steps:
      - { name: later, run: "true" }
"#;
    let id = fleet.submit(yaml, &[]).await;
    let mut client = fleet.client().await;
    // Wait until the shard is running.
    for _ in 0..200 {
        let st = fleet.get(&id).await;
        if kind(&step(&st, "long").shards[0].state) == K::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = client
        .cancel(pb::CancelRequest {
            run_id: id.clone(),
            reason: "test says stop".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.was_running);
    let events = tokio::time::timeout(Duration::from_secs(20), fleet.watch_all(&id))
        .await
        .expect("a cancelled run ends promptly, not after the 60s sleep");
    let status = fleet.get(&id).await;
    assert_eq!(kind(&status.state), K::Cancelled);
    assert_eq!(status.state.as_ref().unwrap().reason, "test says stop");
    assert_eq!(kind(&step(&status, "long").shards[0].state), K::Cancelled);
    assert_eq!(kind(&step(&status, "later").state), K::Cancelled);
    assert!(!events.is_empty());
    // Cancelling again is a no-op that says the run was not running.
    let again = client
        .cancel(pb::CancelRequest {
            run_id: id,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.was_running);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_with_the_same_key_returns_the_same_run() {
    let fleet = harness::start(1).await;
    let yaml = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: a, run: 'true' }\n";
    let first = fleet.submit_keyed(yaml, &[], "commit-abc").await;
    let second = fleet.submit_keyed(yaml, &[], "commit-abc").await;
    let other = fleet.submit_keyed(yaml, &[], "commit-def").await;
    assert!(!first.deduplicated);
    assert!(second.deduplicated);
    assert_eq!(first.run_id, second.run_id);
    assert_ne!(first.run_id, other.run_id);
    fleet.watch_all(&first.run_id).await;
    fleet.watch_all(&other.run_id).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_past_its_timeout_is_timed_out_and_its_group_killed() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let yaml = trace_pipeline(
        &pidfile,
        r#"stages:
  - name: s
    steps:
      - name: hang
        timeout: 1s
        run: |
          trap '' TERM
          sleep 300 &
          echo $! > "$TRACE"
          wait
"#,
    );
    let (status, events) = fleet.run(&yaml, &[]).await;
    let hang = step(&status, "hang");
    assert_eq!(kind(&hang.state), K::TimedOut, "{:?}", hang.state);
    assert_eq!(kind(&status.state), K::Failed);
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut gone = false;
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gone,
        "background process {pid} of the timed-out step survived"
    );
    let system = harness::system_of(&events, "hang", 0);
    assert!(
        system.contains("SIGTERM"),
        "the log says what was done: {system}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_no_runner_can_take_fails_after_the_label_wait() {
    let fleet = harness::start_with(1, Duration::from_millis(400)).await;
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - { name: gpu-work, run: "true", labels: [gpu] }
      - { name: cpu-work, run: "true", labels: [linux] }
"#;
    let (status, _) = fleet.run(yaml, &[]).await;
    let gpu = step(&status, "gpu-work");
    assert_eq!(kind(&gpu.state), K::Failed);
    let reason = &gpu.state.as_ref().unwrap().reason;
    assert!(
        reason.contains("no connected runner has labels [gpu]"),
        "{reason}"
    );
    assert!(
        reason.contains("runner-1 [linux]"),
        "the reason lists who is connected: {reason}"
    );
    assert_eq!(kind(&step(&status, "cpu-work").state), K::Succeeded);
    assert_eq!(kind(&status.state), K::Failed);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_pipeline_is_rejected_with_its_position() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let root = harness::upload(&fleet.fleet, dir.path()).await;
    let bad = "version: 1\nstages:\n  - name: s\n    stpes: []\n";
    let err = fleet.submit_root(bad, root, "").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("test.yaml:4:5"), "{}", err.message());
    let runs_listed = fleet
        .client()
        .await
        .list_runners(pb::ListRunnersRequest {})
        .await
        .unwrap();
    assert_eq!(runs_listed.into_inner().runners.len(), 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_0_without_the_declared_output_is_a_failure() {
    let fleet = harness::start(2).await;
    let yaml = r#"version: 1
stages:
  - name: ship
    steps:
      - name: push
        run: echo "pushed (not really)"
        outputs: [dist/image.digest]
      - name: build
        run: mkdir -p dist/pkg && echo sha256:abc > dist/image.digest && echo x > dist/pkg/a
        outputs: [dist/image.digest, dist/pkg]
"#;
    let (status, events) = fleet.run(yaml, &[]).await;
    let push = step(&status, "push");
    assert_eq!(kind(&push.state), K::Failed);
    let st = push.shards[0].state.as_ref().unwrap();
    assert!(st.reason.contains("missing-output"), "{st:?}");
    assert!(st.reason.contains("dist/image.digest"), "{st:?}");
    assert_eq!(kind(&step(&status, "build").state), K::Succeeded);
    assert_eq!(
        kind(&status.state),
        K::Failed,
        "green is never reported for work that did not happen"
    );
    let notes = harness::system_of(&events, "build", 0);
    assert!(
        notes.contains("output dist/image.digest (file) stored as"),
        "{notes}"
    );
    assert!(
        notes.contains("output dist/pkg (directory) stored as"),
        "{notes}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_killed_by_a_real_time_signal_ends_its_shard_with_that_signal() {
    let fleet = harness::start(1).await;
    let (status, _) = fleet
        .run(
            "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: rt, run: 'kill -s RTMIN+2 $$' }\n",
            &[],
        )
        .await;
    let shard = step(&status, "rt").shards[0].state.clone().unwrap();
    assert_eq!(kind(&Some(shard.clone())), K::Failed);
    // SIGRTMIN is 34 with glibc, so RTMIN+2 is 36.
    assert_eq!(shard.signal, Some(36), "{shard:?}");
    fleet.stop().await;
}
