//! The chaos suite, part two: the fleet itself failing — runners killed,
//! drained or out of disk or memory, the coordinator killed or stopped —
//! with separate processes on 127.0.0.1, each test bounded in time. The run
//! must still end in the state that tells the truth, each shard's result
//! counted exactly once.

mod procs;

use std::path::Path;
use std::time::{Duration, Instant};

use procs::{lines, runner, server, wait_for, wait_for_runners};

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
    let yaml = format!(
        r#"version: 1
env: {{ MARK: "{}" }}
stages:
  - name: s
    steps:
      - name: work
        shards: 2
        cache: false
        run: |
          echo "$BUILDFLEET_SHARD_INDEX" >> "$MARK/started"
          sleep 2
          echo "$BUILDFLEET_SHARD_INDEX" >> "$MARK/done"
"#,
        mark.path().display()
    );
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let submit = procs::spawn_submit(&coord_url, &cache_url, &dir.path().join("buildfleet.yaml"));
    // Both shards running, one per runner (one slot each): kill r1 mid-shard.
    wait_for("both shards to start", Duration::from_secs(20), || {
        lines(&mark.path().join("started")).len() == 2
    });
    r1.0.kill().unwrap();
    r1.0.wait().unwrap();
    let out = submit.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "runner r1 lost during attempt 1; leasing again elsewhere (infra retry 1 of 2)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("succeeded (2 attempts)"), "{stdout}");
    // The killed attempt's shell died with its runner: it never finished,
    // so each shard finished exactly once.
    assert_eq!(lines(&mark.path().join("done")), ["0", "1"]);
    let started = lines(&mark.path().join("started"));
    assert_eq!(
        started.len(),
        3,
        "the lost shard started again: {started:?}"
    );
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
    let data = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let addr = format!("127.0.0.1:{}", procs::free_port());
    let coord_url = format!("http://{addr}");
    let coordinator = ["coordinator", "--data", d];
    let mut coord = procs::server_at(&coordinator, &addr);
    let _r = runner(&coord_url, &cache_url, "r1", &data.path().join("r1"));
    wait_for_runners(&coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"version: 1
env: {{ MARK: "{}" }}
stages:
  - name: a
    steps:
      - name: one
        cache: false
        run: |
          echo started >> "$MARK/one-started"
          sleep 2
          echo done >> "$MARK/one"
  - name: b
    steps:
      - {{ name: two, cache: false, run: 'echo done >> "$MARK/two"' }}
"#,
        mark.path().display()
    );
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let submit = procs::spawn_submit(&coord_url, &cache_url, &dir.path().join("buildfleet.yaml"));
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
    let _coord = procs::server_at(&coordinator, &addr);
    let out = submit.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

fn drain_fleet(sleep_s: u32) -> Drained {
    let fleet = procs::Servers::start(&[]);
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"version: 1
env: {{ MARK: "{}" }}
stages:
  - name: s
    steps:
      - name: job
        cache: false
        run: |
          echo started >> "$MARK/started"
          sleep {sleep_s}
          echo done >> "$MARK/done"
"#,
        mark.path().display()
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
    let f = drain_fleet(1);
    let (mut r1, submit) = f.runner_then_submit("r1", "20s");
    r1.terminate();
    let out = submit.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(lines(&f.mark.path().join("done")), ["done"]);
    assert!(
        !stdout.contains("2 attempts"),
        "finished on its first attempt: {stdout}"
    );
    r1.wait_exit(Duration::from_secs(10), "the drained runner exits");
}

#[test]
fn a_sigtermed_runner_hands_back_what_outlives_its_grace_and_another_runs_it() {
    let f = drain_fleet(3);
    let (r1, submit) = f.runner_then_submit("r1", "300ms");
    let _r2 = f.fleet.runner("r2", &[]);
    r1.terminate();
    let out = submit.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
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

#[test]
fn a_runner_below_its_disk_floor_takes_no_leases_and_says_why() {
    let fleet = procs::Servers::start(&["--label-wait", "1s", "--heartbeat-interval", "100ms"]);
    let _r = fleet.runner("full", &["--min-free-disk", "1000000TiB"]);
    wait_for_runners(&fleet.coord_url, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let why = rt.block_on(async {
        let mut client = buildfleet::client::pipelines(&fleet.coord_url)
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

/// A memory cgroup (v1, as on this machine) below the test's own, limited
/// to `limit` bytes; removed on drop once empty.
struct MemCgroup(std::path::PathBuf);

impl MemCgroup {
    fn new(limit: u64) -> MemCgroup {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = cgroup
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
            .expect("this machine has a cgroup v1 memory controller");
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(own.trim_start_matches('/'))
            .join(format!("buildfleet-oom-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("the tests run as root with a writable memory cgroup");
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        MemCgroup(dir)
    }

    fn adopt(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_step_killed_by_the_oom_killer_is_reported_as_such() {
    let fleet = procs::Servers::start(&[]);
    // The runner (and so its shards) lives in a 256 MiB memory cgroup.
    let cgroup = MemCgroup::new(256 << 20);
    let r = fleet.runner("small", &[]);
    cgroup.adopt(r.0.id());
    wait_for_runners(&fleet.coord_url, 1);
    let (code, stdout) = fleet.submit(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: hungry, cache: false, run: 'python3 -c \"b = bytearray(1024 ** 3); print(len(b))\"' }\n",
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("killed by the kernel's OOM killer"),
        "{stdout}"
    );
    drop(r); // killed and reaped, so the cgroup can be removed
}

#[test]
fn an_interrupted_embedded_run_is_not_picked_up_by_the_next_run() {
    let data = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let slow = format!(
        "version: 1\nenv: {{ MARK: \"{}\" }}\nstages:\n  - name: s\n    steps:\n      - name: slow\n        cache: false\n        run: |\n          touch \"$MARK/started\"\n          sleep 3\n          touch \"$MARK/finished\"\n",
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
        mark.path().join("started").exists()
    });
    first.terminate();
    drop(first);
    let out = run("quick.yaml").wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        !stdout.contains("slow"),
        "the old run is not resumed: {stdout}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !mark.path().join("finished").exists(),
        "the interrupted step never ran to its end behind the user's back"
    );
}
