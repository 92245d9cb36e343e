//! The chaos suite: the failure classes of the seed story, provoked against
//! separate processes on 127.0.0.1, each bounded in time. A run must end
//! in the state that tells the truth, and each shard's result must count
//! exactly once.

mod procs;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use procs::{bin, runner, server, wait_for_runners};

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

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
    let submit = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

/// `buildfleet run` as its own process on a fresh data directory.
fn run_cli(dir: &Path, data: &Path, yaml: &str, extra: &[&str]) -> (i32, String) {
    std::fs::write(dir.join("buildfleet.yaml"), yaml).unwrap();
    let out = bin()
        .args(["run", "--runners", "2", "--data"])
        .arg(data)
        .args(extra)
        .arg(dir.join("buildfleet.yaml"))
        .env_remove("BUILDFLEET_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_push_that_exits_0_without_its_output_or_failing_its_verify_is_not_green() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let yaml = r#"version: 1
stages:
  - name: release
    steps:
      - name: push
        cache: false
        outputs: [image.digest]
        run: echo "pushed (it says)"
      - name: push-checked
        cache: false
        outputs: [image.digest]
        verify: "grep -q '^sha256:' image.digest"
        run: |
          echo "pushed (it says)"
          : > image.digest
"#;
    let (code, text) = run_cli(dir.path(), data.path(), yaml, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("push shard 0: failed (exit code 0): missing-output: declared output `image.digest` does not exist"),
        "{text}"
    );
    assert!(
        text.contains("push-checked shard 0: failed (exit code 0): verify-failed: `grep -q '^sha256:' image.digest` exited with code 1"),
        "{text}"
    );
}

#[test]
fn an_expired_secret_fails_the_run_before_any_step_and_live_ones_reach_only_their_step() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let secrets = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let s = secrets.path();
    std::fs::write(s.join("REGISTRY_TOKEN"), "s3cr3t-value\n").unwrap();
    std::fs::write(s.join("REGISTRY_TOKEN.expires"), "2020-01-01T00:00:00Z").unwrap();
    std::fs::write(s.join("DEPLOY_KEY"), "k3y-value").unwrap();
    let soon = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(2 * 24 * 3600),
    );
    std::fs::write(s.join("DEPLOY_KEY.expires"), soon.to_string()).unwrap();
    let secrets_dir = s.to_str().unwrap();
    let expired = format!(
        r#"version: 1
stages:
  - name: build
    steps:
      - {{ name: compile, cache: false, run: 'touch "{mark}/compiled"' }}
  - name: release
    steps:
      - {{ name: push, cache: false, secrets: [REGISTRY_TOKEN], run: 'echo pushing' }}
"#,
        mark = mark.path().display()
    );
    let (code, text) = run_cli(
        dir.path(),
        data.path(),
        &expired,
        &["--secrets-dir", secrets_dir],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "push shard 0: failed: secret REGISTRY_TOKEN expired at 2020-01-01T00:00:00Z"
        ),
        "{text}"
    );
    assert!(
        !mark.path().join("compiled").exists(),
        "no step started: {text}"
    );

    let live = r#"version: 1
stages:
  - name: release
    steps:
      - { name: deploy, cache: false, secrets: [DEPLOY_KEY], run: 'echo "key=$DEPLOY_KEY"' }
      - { name: other, cache: false, run: 'echo "other sees ${DEPLOY_KEY:-nothing}"' }
"#;
    let (code, text) = run_cli(
        dir.path(),
        data.path(),
        live,
        &["--secrets-dir", secrets_dir],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("deploy#0 | key=***"),
        "masked in the log: {text}"
    );
    assert!(!text.contains("k3y-value"), "{text}");
    assert!(text.contains("other#0 | other sees nothing"), "{text}");
    assert!(
        text.contains("WARNING: secret DEPLOY_KEY expires at"),
        "{text}"
    );
}

#[test]
fn a_10_mb_log_under_a_1_mb_cap_is_marked_and_retrievable_whole() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let (_coord, coord_url) = server(&["coordinator", "--data", d]);
    let _r = runner(&coord_url, &cache_url, "r1", &data.path().join("r1"));
    wait_for_runners(&coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    // 10,000,000 bytes of `x` in lines of 99: just over 10 MB of log.
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - name: loud
        cache: false
        log_cap: 1MiB
        run: "head -c 10000000 /dev/zero | tr '\\0' x | fold -w 99; echo; echo the-last-line"
"#;
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let out = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(text.contains("[log cap reached: "), "marker present");
    assert!(text.contains("loud#0 | the-last-line"), "the tail is kept");
    assert!(
        text.len() < 1_500_000,
        "the streamed log respects the cap: {} bytes",
        text.len()
    );
    let run = text
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.strip_suffix(" submitted"))
        .expect("run id printed")
        .to_owned();
    let logs = bin()
        .args([
            "logs",
            &run,
            "loud",
            "--shard",
            "0",
            "--coordinator",
            &coord_url,
            "--cache",
            &cache_url,
        ])
        .output()
        .unwrap();
    assert_eq!(
        logs.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    let whole = String::from_utf8_lossy(&logs.stdout);
    let xs = whole.bytes().filter(|b| *b == b'x').count();
    assert_eq!(xs, 10_000_000, "every byte of output is in the stored log");
    assert!(whole.ends_with("the-last-line\n"));
}

/// An HTTP receiver on 127.0.0.1:0 answering `statuses` in turn (then 200),
/// recording each request body.
fn receiver(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut answers = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let status = answers.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

#[test]
fn a_webhook_failing_twice_then_accepting_gets_one_delivery_and_three_recorded_attempts() {
    let (url, seen) = receiver(vec![500, 503]);
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let hook = format!("run-failed={url}");
    let (_coord, coord_url) = server(&[
        "coordinator",
        "--data",
        d,
        "--webhook",
        &hook,
        "--webhook-backoff",
        "50ms",
    ]);
    let _r = runner(&coord_url, &cache_url, "r1", &data.path().join("r1"));
    wait_for_runners(&coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: deploy, cache: false, run: 'exit 4' }\n",
    )
    .unwrap();
    let out = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    let run = text
        .lines()
        .find_map(|l| l.strip_prefix("run ")?.strip_suffix(" submitted"))
        .unwrap()
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let notices = rt.block_on(async {
        let mut client = buildfleet::client::pipelines(&coord_url).await.unwrap();
        let start = Instant::now();
        loop {
            let status = client
                .get(buildfleet_proto::v1::GetRequest {
                    run_id: run.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            let texts: Vec<String> = status.notices.iter().map(|n| n.text.clone()).collect();
            if texts.iter().any(|t| t.contains("delivered"))
                || start.elapsed() > Duration::from_secs(20)
            {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let attempts: Vec<&String> = notices.iter().filter(|t| t.contains("attempt")).collect();
    assert_eq!(attempts.len(), 3, "{notices:#?}");
    assert!(
        attempts[0].contains("attempt 1 of 5 failed: HTTP 500"),
        "{notices:#?}"
    );
    assert!(
        attempts[1].contains("attempt 2 of 5 failed: HTTP 503"),
        "{notices:#?}"
    );
    assert!(
        attempts[2].contains("attempt 3 of 5: delivered (HTTP 200)"),
        "{notices:#?}"
    );
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        3,
        "three attempts reached the receiver, one accepted"
    );
    assert!(
        bodies
            .iter()
            .all(|b| b.contains("\"run-failed\"") && b.contains(&run)),
        "{bodies:?}"
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
    let submit = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("step one to start", Duration::from_secs(20), || {
        mark.path().join("one-started").exists()
    });
    if graceful {
        coord.terminate();
        let start = Instant::now();
        while coord.0.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "SIGTERM stops the coordinator promptly"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// A fleet of cache + coordinator on a fresh data dir, and a pipeline
/// whose one step marks its start and end in `mark`.
struct Drained {
    data: tempfile::TempDir,
    mark: tempfile::TempDir,
    dir: tempfile::TempDir,
    cache_url: String,
    coord_url: String,
    _servers: (procs::Proc, procs::Proc),
}

fn drain_fleet(sleep_s: u32) -> Drained {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap().to_owned();
    let (cache, cache_url) = server(&["cache", "--data", &d]);
    let (coord, coord_url) = server(&["coordinator", "--data", &d]);
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
    Drained {
        data,
        mark,
        dir,
        cache_url,
        coord_url,
        _servers: (cache, coord),
    }
}

impl Drained {
    fn submit(&self) -> std::process::Child {
        bin()
            .args([
                "submit",
                "--coordinator",
                &self.coord_url,
                "--cache",
                &self.cache_url,
            ])
            .arg(self.dir.path().join("buildfleet.yaml"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn a_sigtermed_runner_finishes_its_shard_within_the_grace_then_exits() {
    let f = drain_fleet(1);
    let mut r1 = procs::runner_with(
        &f.coord_url,
        &f.cache_url,
        "r1",
        &f.data.path().join("r1"),
        &["--drain-grace", "20s"],
    );
    wait_for_runners(&f.coord_url, 1);
    let submit = f.submit();
    wait_for("the shard to start", Duration::from_secs(20), || {
        f.mark.path().join("started").exists()
    });
    r1.terminate();
    let out = submit.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(lines(&f.mark.path().join("done")), ["done"]);
    assert!(
        !stdout.contains("2 attempts"),
        "finished on its first attempt: {stdout}"
    );
    let start = Instant::now();
    while r1.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the drained runner exits"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sigtermed_runner_hands_back_what_outlives_its_grace_and_another_runs_it() {
    let f = drain_fleet(3);
    let r1 = procs::runner_with(
        &f.coord_url,
        &f.cache_url,
        "r1",
        &f.data.path().join("r1"),
        &["--drain-grace", "300ms"],
    );
    wait_for_runners(&f.coord_url, 1);
    let submit = f.submit();
    wait_for("the shard to start", Duration::from_secs(20), || {
        f.mark.path().join("started").exists()
    });
    let _r2 = runner(&f.coord_url, &f.cache_url, "r2", &f.data.path().join("r2"));
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
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let (_coord, coord_url) = server(&[
        "coordinator",
        "--data",
        d,
        "--label-wait",
        "1s",
        "--heartbeat-interval",
        "100ms",
    ]);
    let _r = procs::runner_with(
        &coord_url,
        &cache_url,
        "full",
        &data.path().join("full"),
        &["--min-free-disk", "1000000TiB"],
    );
    wait_for_runners(&coord_url, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let why = rt.block_on(async {
        let mut client = buildfleet::client::pipelines(&coord_url).await.unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: build, run: 'true' }\n",
    )
    .unwrap();
    let out = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("takes no new leases") && stdout.contains("below the floor"),
        "{stdout}"
    );
}

#[test]
fn a_corrupted_stored_blob_is_detected_and_never_served() {
    let data = tempfile::tempdir().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", data.path().to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let blob: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let cas = rt
        .block_on(buildfleet_cache::CasClient::connect(&cache_url))
        .unwrap();
    let digest = rt.block_on(cas.upload_blob(blob.clone().into())).unwrap();
    assert_eq!(
        rt.block_on(cas.read_blob(&digest)).unwrap().as_ref(),
        &blob[..]
    );
    // Rot one byte of the stored file, as a failing disk would.
    let stored = walk(&data.path().join("cache/large-blobs"))
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == blob.len() as u64))
        .expect("the blob's file");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1_000_000] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    let read = rt.block_on(cas.read_blob(&digest));
    assert!(read.is_err(), "a corrupt blob must not be served");
    let missing = rt.block_on(cas.find_missing(&[digest])).unwrap();
    assert_eq!(
        missing,
        [digest],
        "and it is gone, so clients upload it again"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
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
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let (_coord, coord_url) = server(&["coordinator", "--data", d]);
    // The runner (and so its shards) lives in a 256 MiB memory cgroup.
    let cgroup = MemCgroup::new(256 << 20);
    let mut r = runner(&coord_url, &cache_url, "small", &data.path().join("small"));
    cgroup.adopt(r.0.id());
    wait_for_runners(&coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: hungry, cache: false, run: 'python3 -c \"b = bytearray(1024 ** 3); print(len(b))\"' }\n",
    )
    .unwrap();
    let out = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("killed by the kernel's OOM killer"),
        "{stdout}"
    );
    r.0.kill().unwrap();
    r.0.wait().unwrap();
}
