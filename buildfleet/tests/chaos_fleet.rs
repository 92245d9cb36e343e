//! The chaos suite, part two: the fleet itself failing — runners killed,
//! drained or out of disk, the coordinator killed or stopped —
//! with separate processes on 127.0.0.1, each test bounded in time. The run
//! must still end in the state that tells the truth, each shard's result
//! counted exactly once.

mod procs;

use std::time::{Duration, Instant};

use procs::{lines, runner, server, wait_for, wait_for_runners, Ran};

#[test]
fn a_runner_killed_mid_shard_is_replaced_and_every_shard_counts_once() {
    let data = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let (_coord, coord_url) = server(&["coordinator", "--data", d]);
    let mut r1 = runner(&coord_url, &cache_url, "r1", &data.path().join("r1"));
    let _r2 = runner(&coord_url, &cache_url, "r2", &data.path().join("r2"));
    wait_for_runners(&coord_url, 2);
    let dir = tempfile::tempdir().unwrap();
    // The work is done by a backgrounded grandchild and by a double-forked
    // daemon outside the shard's process group, as a `docker push` in a
    // pipeline or a tool's background helper would be. Both wait for `go`,
    // which the test creates only once the killed runner's are gone.
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: work
        shards: 2
        cache: false
        run: |
          echo "$BUILDFLEET_SHARD_INDEX" >> "$MARK/started"
          ( while [ ! -e "$MARK/go" ]; do sleep 0.05; done
            echo "$BUILDFLEET_SHARD_INDEX" >> "$MARK/done" ) &
          echo "$!" >> "$MARK/pids"
          ( setsid bash -c 'echo $$ >> "$MARK/pids"
              while [ ! -e "$MARK/go" ]; do sleep 0.05; done
              echo "$BUILDFLEET_SHARD_INDEX" >> "$MARK/daemon-done"
              touch "$MARK/daemon-$BUILDFLEET_SHARD_INDEX"' & )
          wait
          while [ ! -e "$MARK/daemon-$BUILDFLEET_SHARD_INDEX" ]; do sleep 0.05; done
"#,
    );
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let submit = procs::spawn_submit(&coord_url, &cache_url, &dir.path().join("buildfleet.yaml"));
    // Both shards running, one per runner (one slot each).
    wait_for(
        "both shards and their helpers to start",
        Duration::from_secs(20),
        || lines(&mark.path().join("pids")).len() == 4,
    );
    let r1_pid = r1.0.id() as i32;
    let r1_procs: Vec<i32> = lines(&mark.path().join("pids"))
        .iter()
        .map(|p| p.parse().unwrap())
        .filter(|&p| procs::descends_from(p, r1_pid))
        .collect();
    assert_eq!(
        r1_procs.len(),
        2,
        "r1's shard started a grandchild and a daemon"
    );
    r1.0.kill().unwrap(); // SIGKILL: the runner gets no chance to clean up
    r1.0.wait().unwrap();
    wait_for(
        "the killed runner's grandchild and daemon to die with it",
        Duration::from_secs(10),
        || r1_procs.iter().all(|&p| !procs::alive(p)),
    );
    std::fs::write(mark.path().join("go"), "").unwrap();
    let stdout = Ran::waited(submit).expect(0).stdout;
    assert!(
        stdout.contains(
            "runner r1 lost during attempt 1; leasing again elsewhere (infra retry 1 of 2)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("succeeded (2 attempts)"), "{stdout}");
    // The killed attempt's helpers never did their work: each shard's
    // work happened exactly once.
    let listing: Vec<String> = std::fs::read_dir(mark.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            format!(
                "{:?}: {:?}",
                e.file_name(),
                std::fs::read_to_string(e.path())
            )
        })
        .collect();
    assert_eq!(
        lines(&mark.path().join("done")),
        ["0", "1"],
        "{listing:?} {stdout}"
    );
    assert_eq!(
        lines(&mark.path().join("daemon-done")),
        ["0", "1"],
        "{listing:?} {stdout}"
    );
    assert_eq!(lines(&mark.path().join("started")).len(), 3);
}

#[test]
fn a_coordinator_killed_mid_run_restarts_and_the_run_completes() {
    restart_mid_run(false);
}

#[test]
fn a_coordinator_stopped_by_sigterm_exits_promptly_and_the_run_completes_after_restart() {
    restart_mid_run(true);
}

fn restart_mid_run(graceful: bool) {
    let mark = tempfile::tempdir().unwrap();
    let (fleet, mut coord) = procs::Restartable::start(&[]);
    let (coord_url, cache_url) = (&fleet.coord_url, &fleet.cache_url);
    let _r = fleet.runner("r1");
    wait_for_runners(coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: a
    steps:
      - name: one
        cache: false
        run: |
          echo started >> "$MARK/one-started"
          while [ ! -e "$MARK/go" ]; do sleep 0.05; done
          echo done >> "$MARK/one"
  - name: b
    steps:
      - { name: two, cache: false, run: 'echo done >> "$MARK/two"' }
"#,
    );
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let submit = procs::spawn_submit(coord_url, cache_url, &dir.path().join("buildfleet.yaml"));
    wait_for("step one to start", Duration::from_secs(20), || {
        mark.path().join("one-started").exists()
    });
    if graceful {
        coord.terminate();
        coord.wait_exit(
            Duration::from_secs(10),
            "SIGTERM stops the coordinator promptly",
        );
    } else {
        coord.0.kill().unwrap(); // SIGKILL: no chance to save anything more
        coord.0.wait().unwrap();
    }
    let _coord = fleet.coordinator();
    // The first attempt is waiting for `go` unless it died with the
    // connection; the retry starts on the new coordinator.
    wait_for("step one to start again", Duration::from_secs(20), || {
        lines(&mark.path().join("one-started")).len() == 2
    });
    std::fs::write(mark.path().join("go"), "").unwrap();
    let stdout = Ran::waited(submit).expect(0).stdout;
    assert!(
        stdout.contains("watch interrupted"),
        "the watcher resumed: {stdout}"
    );
    let requeued = if graceful {
        "ended without a result, through no fault of the step"
    } else {
        "the coordinator restarted during attempt 1"
    };
    assert!(stdout.contains(requeued), "{stdout}");
    // The killed attempt died with the connection; the retry finished once.
    assert_eq!(lines(&mark.path().join("one")), ["done"]);
    assert_eq!(lines(&mark.path().join("two")), ["done"]);
}

/// A cache and coordinator, and a pipeline whose one step marks its start
/// and end in `mark`.
struct Drained {
    fleet: procs::Servers,
    mark: tempfile::TempDir,
    dir: tempfile::TempDir,
}

fn drain_fleet() -> Drained {
    let fleet = procs::Servers::start(&[]);
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: job
        cache: false
        run: |
          echo started >> "$MARK/started"
          while [ ! -e "$MARK/go" ]; do sleep 0.05; done
          echo done >> "$MARK/done"
"#,
    );
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    Drained { fleet, mark, dir }
}

impl Drained {
    /// Starts runner `name` and submits once it is registered.
    fn runner_then_submit(&self, name: &str, grace: &str) -> (procs::Proc, std::process::Child) {
        let r = self.fleet.runner(name, &["--drain-grace", grace]);
        wait_for_runners(&self.fleet.coord_url, 1);
        let file = self.dir.path().join("buildfleet.yaml");
        let submit = procs::spawn_submit(&self.fleet.coord_url, &self.fleet.cache_url, &file);
        wait_for("the shard to start", Duration::from_secs(20), || {
            self.mark.path().join("started").exists()
        });
        (r, submit)
    }
}

#[test]
fn a_sigtermed_runner_finishes_its_shard_within_the_grace_then_exits() {
    let f = drain_fleet();
    let (mut r1, submit) = f.runner_then_submit("r1", "20s");
    r1.terminate();
    wait_for_draining(&f.fleet.coord_url);
    // The shard finishes while its runner drains.
    std::fs::write(f.mark.path().join("go"), "").unwrap();
    let stdout = Ran::waited(submit).expect(0).stdout;
    assert_eq!(lines(&f.mark.path().join("done")), ["done"]);
    assert!(
        !stdout.contains("2 attempts"),
        "finished on its first attempt: {stdout}"
    );
    r1.wait_exit(Duration::from_secs(10), "the drained runner exits");
}

#[test]
fn a_sigtermed_runner_hands_back_what_outlives_its_grace_and_another_runs_it() {
    let f = drain_fleet();
    let (r1, submit) = f.runner_then_submit("r1", "300ms");
    let _r2 = f.fleet.runner("r2", &[]);
    r1.terminate();
    // Handed back after the grace, the shard starts again on r2; only then
    // may it finish.
    wait_for("the shard to start on r2", Duration::from_secs(20), || {
        lines(&f.mark.path().join("started")).len() == 2
    });
    std::fs::write(f.mark.path().join("go"), "").unwrap();
    let stdout = Ran::waited(submit).expect(0).stdout;
    assert!(
        stdout.contains("runner r1 handed the lease back"),
        "{stdout}"
    );
    assert!(stdout.contains("no retry used"), "{stdout}");
    assert_eq!(
        lines(&f.mark.path().join("done")),
        ["done"],
        "the handed-back attempt never finished"
    );
    assert_eq!(lines(&f.mark.path().join("started")).len(), 2);
}

/// Waits until the coordinator lists a runner as draining.
fn wait_for_draining(coordinator: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client =
            buildfleet::wire::pipelines(coordinator, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        let start = Instant::now();
        loop {
            let runners = client
                .list_runners(buildfleet_proto::v1::ListRunnersRequest {})
                .await
                .unwrap()
                .into_inner()
                .runners;
            if runners
                .iter()
                .any(|r| r.unavailable.starts_with("draining"))
            {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{runners:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn a_runner_below_its_disk_floor_takes_no_leases_and_says_why() {
    let fleet = procs::Servers::start(&["--label-wait", "1s", "--heartbeat-interval", "100ms"]);
    let _r = fleet.runner("full", &["--min-free-disk", "1000000TiB"]);
    wait_for_runners(&fleet.coord_url, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let why = rt.block_on(async {
        let mut client =
            buildfleet::wire::pipelines(&fleet.coord_url, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        let start = Instant::now();
        loop {
            let runners = client
                .list_runners(buildfleet_proto::v1::ListRunnersRequest {})
                .await
                .unwrap()
                .into_inner()
                .runners;
            if let Some(r) = runners.iter().find(|r| !r.unavailable.is_empty()) {
                return r.unavailable.clone();
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{runners:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(why.contains("below the floor"), "{why}");
    let (code, stdout) = fleet.submit(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: build, run: 'true' }\n",
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("takes no new leases") && stdout.contains("below the floor"),
        "{stdout}"
    );
}

#[test]
fn an_interrupted_embedded_run_is_not_picked_up_by_the_next_run() {
    let data = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let slow = format!(
        "version: 1\nenv: {{ MARK: \"{}\" }}\nstages:\n  - name: s\n    steps:\n      - name: slow\n        cache: false\n        run: |\n          echo $$ > \"$MARK/shell\"\n          while [ ! -e \"$MARK/go\" ]; do sleep 0.05; done\n          touch \"$MARK/finished\"\n",
        mark.path().display()
    );
    std::fs::write(dir.path().join("slow.yaml"), slow).unwrap();
    std::fs::write(
        dir.path().join("quick.yaml"),
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: quick, cache: false, run: 'true' }\n",
    )
    .unwrap();
    let run = |file: &str| {
        procs::bin()
            .args(["run", "--runners", "1", "--data"])
            .arg(data.path())
            .arg(dir.path().join(file))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = procs::Proc(run("slow.yaml"));
    wait_for("the slow step to start", Duration::from_secs(20), || {
        mark.path().join("shell").exists()
    });
    let shell: i32 = lines(&mark.path().join("shell"))[0].parse().unwrap();
    first.terminate();
    drop(first);
    wait_for(
        "the interrupted step's shell to be gone",
        Duration::from_secs(10),
        || !procs::alive(shell),
    );
    let stdout = Ran::waited(run("quick.yaml")).expect(0).stdout;
    assert!(
        !stdout.contains("slow"),
        "the old run is not resumed: {stdout}"
    );
    // The interrupted step's shell — the only process that could finish
    // its work — died with its fleet before the next run began (above);
    // and the next run did not start it again:
    assert!(
        !mark.path().join("finished").exists()
            && lines(&mark.path().join("shell")) == [shell.to_string()],
        "the interrupted step never ran again behind the user's back"
    );
}

#[test]
fn a_secret_removed_while_the_coordinator_was_down_fails_its_step_before_it_starts() {
    let mark = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("TOKEN"), "t0ken-v4lue\n").unwrap();
    let s = secrets.path().to_str().unwrap();
    let (fleet, mut coord) = procs::Restartable::start(&["--secrets-dir", s]);
    let (coord_url, cache_url) = (&fleet.coord_url, &fleet.cache_url);
    let _r = fleet.runner("r1");
    wait_for_runners(coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: build
    steps:
      - name: compile
        cache: false
        run: |
          touch "$MARK/compile-started"
          while [ ! -e "$MARK/go" ]; do sleep 0.05; done
  - name: release
    steps:
      - { name: push, cache: false, secrets: [TOKEN], run: 'echo "pushed with ${TOKEN:-nothing}" >> "$MARK/pushed"' }
  - name: after
    steps:
      - { name: announce, cache: false, run: 'touch "$MARK/announced"' }
"#,
    );
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let submit = procs::spawn_submit(coord_url, cache_url, &dir.path().join("buildfleet.yaml"));
    wait_for("compile to start", Duration::from_secs(20), || {
        mark.path().join("compile-started").exists()
    });
    coord.0.kill().unwrap(); // kill -9
    coord.0.wait().unwrap();
    // Revoked while the coordinator was down.
    std::fs::remove_file(secrets.path().join("TOKEN")).unwrap();
    let _coord = fleet.coordinator();
    std::fs::write(mark.path().join("go"), "").unwrap();
    let stdout = Ran::waited(submit).expect(1).stdout;
    assert!(
        stdout.contains("push shard 0: failed: secret TOKEN is not in the secret store"),
        "{stdout}"
    );
    assert!(
        stdout.contains("announce shard 0: skipped because needs `push`, which failed"),
        "{stdout}"
    );
    assert!(
        !mark.path().join("pushed").exists(),
        "the push never ran, with or without its secret"
    );
    assert!(!mark.path().join("announced").exists());
}

#[test]
fn a_handed_back_shard_is_gone_before_its_next_attempt_starts() {
    let fleet = procs::Servers::start(&[]);
    let mark = tempfile::tempdir().unwrap();
    // The first attempt ignores SIGTERM and keeps working through the kill
    // grace, stamping the timeline; the next attempt stamps its start.
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: job
        cache: false
        run: |
          if [ ! -e "$MARK/first" ]; then
            echo $$ > "$MARK/first"
            trap 'echo term >> "$MARK/timeline"' TERM
            while true; do echo "1 alive" >> "$MARK/timeline"; sleep 0.02 || true; done
          fi
          # Is the first attempt's shell still there as this one starts?
          state=$(cut -d' ' -f3 "/proc/$(cat "$MARK/first")/stat" 2>/dev/null || echo gone)
          case "$state" in Z|gone) echo "2 started; first gone" ;; *) echo "2 started; first alive ($state)" ;; esac >> "$MARK/timeline"
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let r1 = fleet.runner("r1", &["--drain-grace", "200ms", "--kill-grace", "1s"]);
    wait_for_runners(&fleet.coord_url, 1);
    let submit = procs::spawn_submit(
        &fleet.coord_url,
        &fleet.cache_url,
        &dir.path().join("buildfleet.yaml"),
    );
    wait_for("the first attempt to work", Duration::from_secs(20), || {
        lines(&mark.path().join("timeline")).len() > 2
    });
    let _r2 = fleet.runner("r2", &[]);
    wait_for_runners(&fleet.coord_url, 2);
    r1.terminate();
    let stdout = Ran::waited(submit).expect(0).stdout;
    assert!(stdout.contains("handed the lease back"), "{stdout}");
    let timeline: Vec<String> = std::fs::read_to_string(mark.path().join("timeline"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let started = timeline
        .iter()
        .position(|l| l.starts_with("2 started"))
        .expect("the next attempt ran");
    assert_eq!(
        timeline[started], "2 started; first gone",
        "the first attempt was still running when the next one started: {timeline:?}"
    );
    assert!(
        timeline[..started].iter().any(|l| l == "term"),
        "the first attempt was told to stop first: {timeline:?}"
    );
    assert!(
        !timeline[started..].iter().any(|l| l == "1 alive"),
        "the first attempt was still working when the next one started: {timeline:?}"
    );
}

#[test]
fn a_runner_cut_off_from_its_coordinator_stops_its_shards() {
    let fleet = procs::Servers::start(&[]);
    let _r = fleet.runner("r1", &["--kill-grace", "200ms"]);
    wait_for_runners(&fleet.coord_url, 1);
    let mark = tempfile::tempdir().unwrap();
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: long
        cache: false
        run: |
          echo $$ > "$MARK/shell"
          while true; do sleep 0.05; done
"#,
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let mut submit = procs::spawn_submit(
        &fleet.coord_url,
        &fleet.cache_url,
        &dir.path().join("buildfleet.yaml"),
    );
    wait_for("the shard to start", Duration::from_secs(20), || {
        mark.path().join("shell").exists()
    });
    let shell: i32 = lines(&mark.path().join("shell"))[0].parse().unwrap();
    // Freeze the coordinator: it answers nothing, as across a partition.
    let coordinator = fleet.coordinator_pid();
    let stop = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &coordinator.to_string()])
            .status()
            .unwrap()
    };
    assert!(stop("-STOP").success());
    let gone = std::time::Instant::now();
    let stopped = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        !procs::alive(shell)
    });
    assert!(stop("-CONT").success());
    let _ = submit.kill();
    let _ = submit.wait();
    assert!(
        stopped,
        "the shard was still running 10s after its coordinator went silent"
    );
    assert!(
        gone.elapsed() < Duration::from_secs(8),
        "stopped after {:?}: before a 10s heartbeat deadline re-leases it",
        gone.elapsed()
    );
}
