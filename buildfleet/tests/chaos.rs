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
