//! The dashboard in a real browser: headless Chromium (installed by
//! `scripts/setup` from the Debian archive, driven through Selenium from
//! PyPI by `scripts/browser/dashboard_check.py`) loads the pages of a real
//! fleet — cache, coordinator and runner processes — during and after a
//! run: the time chart marks every shard, a shard's log follows new lines
//! without a reload, and the approve button approves. Screenshots, wide
//! and narrow, go to `$BUILDFLEET_SCREENSHOTS` (default: a directory in
//! the system temp dir, printed).

mod procs;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use procs::{bin, runner_with, server_with_metrics, wait_for, wait_for_runners};

fn browser_python() -> PathBuf {
    let tools = std::env::var("BUILDFLEET_TOOLS_DIR")
        .unwrap_or_else(|_| "/var/tmp/buildfleet-tools".into());
    Path::new(&tools).join("browser-venv/bin/python")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/browser/dashboard_check.py")
}

/// Stage 1 runs four steps side by side: one the cache answers, one that
/// fails once and passes on its retry, one whose log the browser follows
/// (it waits for the browser's go-ahead between two lines), and one that
/// waits for approval. Stage 2 fails one step and skips one by its
/// condition; stage 3 is skipped because stage 2 failed.
fn pipeline(marks: &Path, release: &Path) -> String {
    format!(
        r#"version: 1
stages:
  - name: build
    steps:
      - name: compile
        outputs: [app.bin]
        run: echo "the built app" > app.bin
      - name: flaky
        cache: false
        retries: {{ flaky: 1 }}
        reports: [report.xml]
        run: |
          mark={marks}/flaky-$BUILDFLEET_RUN_ID
          if [ ! -e "$mark" ]; then
            touch "$mark"
            printf '<testsuite name="t" tests="1" failures="1"><testcase classname="t" name="once"><failure message="first try"/></testcase></testsuite>' > report.xml
            exit 1
          fi
          printf '<testsuite name="t" tests="1"><testcase classname="t" name="once"/></testsuite>' > report.xml
      - name: tail
        cache: false
        run: |
          printf '\033[32mfirst line\033[0m\n'
          while [ ! -e {release} ]; do sleep 0.1; done
          echo "second line"
      - name: gate
        cache: false
        approval: true
        run: echo approved
  - name: check
    steps:
      - name: broken
        run: echo "this fails" >&2; exit 3
      - name: deploy
        if: branch == 'no-such-branch'
        run: echo never
  - name: ship
    steps:
      - name: after
        run: echo never
"#,
        marks = marks.display(),
        release = release.display(),
    )
}

/// The runs, newest first, from `buildfleet runs --output json`.
fn runs_json(coordinator: &str) -> Vec<serde_json::Value> {
    match procs::json(&["runs", "--coordinator", coordinator]) {
        serde_json::Value::Array(runs) => runs,
        other => panic!("not a list of runs: {other}"),
    }
}

fn submit_in_background(coordinator: &str, cache: &str, file: &Path) -> std::process::Child {
    bin()
        .args(["submit", "--coordinator", coordinator, "--cache", cache])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_browser_follows_a_live_run_approves_it_and_sees_every_shard_marked() {
    let python = browser_python();
    assert!(
        python.exists() && Path::new("/usr/bin/chromedriver").exists(),
        "the browser test needs Chromium, chromedriver and Selenium: run scripts/setup"
    );
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url, cache_metrics) = server_with_metrics(&["cache", "--data", d]);
    let cache_metrics_url = format!("http://{cache_metrics}/metrics");
    let (_coord, coord_url, http) = server_with_metrics(&[
        "coordinator",
        "--data",
        d,
        "--cache-metrics-url",
        &cache_metrics_url,
        "--cache",
        &cache_url,
    ]);
    let _runner = runner_with(
        &coord_url,
        &cache_url,
        "r1",
        &data.path().join("r1"),
        &["--slots", "4"],
    );
    wait_for_runners(&coord_url, 1);

    let tree = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let release = scratch.path().join("release");
    let file = tree.path().join("buildfleet.yaml");
    std::fs::write(&file, pipeline(scratch.path(), &release)).unwrap();

    // A first run fills the step cache for `compile` (its gate rejected).
    std::fs::write(&release, "").unwrap();
    let mut first = submit_in_background(&coord_url, &cache_url, &file);
    let mut first_id = String::new();
    wait_for(
        "the first run to be listed",
        Duration::from_secs(30),
        || {
            let runs = runs_json(&coord_url);
            first_id = runs
                .first()
                .and_then(|r| r["run_id"].as_str())
                .unwrap_or("")
                .to_owned();
            !first_id.is_empty()
        },
    );
    wait_for(
        "the first run's gate to wait",
        Duration::from_secs(60),
        || {
            let out = bin()
                .args([
                    "reject",
                    &first_id,
                    "gate",
                    "--coordinator",
                    &coord_url,
                    "--reason",
                    "warm-up",
                ])
                .output()
                .unwrap();
            out.status.success()
        },
    );
    first.wait().unwrap();
    std::fs::remove_file(&release).unwrap();

    // The run the browser watches.
    let mut second = submit_in_background(&coord_url, &cache_url, &file);
    let mut run = String::new();
    wait_for(
        "the second run to be listed",
        Duration::from_secs(30),
        || {
            let runs = runs_json(&coord_url);
            run = runs
                .first()
                .and_then(|r| r["run_id"].as_str())
                .unwrap_or("")
                .to_owned();
            runs.len() == 2
        },
    );
    let shots = std::env::var("BUILDFLEET_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("buildfleet-dashboard-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let expect = serde_json::json!({
        "shards": [
            {"step": "compile", "shard": 0, "mark": "cached"},
            {"step": "flaky", "shard": 0, "mark": "retried"},
            {"step": "tail", "shard": 0, "mark": "succeeded"},
            {"step": "gate", "shard": 0, "mark": "succeeded"},
            {"step": "broken", "shard": 0, "mark": "failed"},
            {"step": "deploy", "shard": 0, "mark": "skipped"},
            {"step": "after", "shard": 0, "mark": "skipped"},
        ],
        "approval_step": "gate",
        "log": {"step": "tail", "shard": 0, "first": "first line", "after_release": "second line"},
    });
    let expect_file = scratch.path().join("expect.json");
    std::fs::write(&expect_file, expect.to_string()).unwrap();
    let status = Command::new(&python)
        .arg(script())
        .args(["--base", &format!("http://{http}"), "--run", &run])
        .arg("--expect")
        .arg(&expect_file)
        .arg("--release-file")
        .arg(&release)
        .arg("--screenshots")
        .arg(&shots)
        .status()
        .unwrap();
    let _ = second.kill();
    let _ = second.wait();
    assert!(
        status.success(),
        "the browser's checks failed (see its output above; {}/failure.png)",
        shots.display()
    );
    // The run page links the artifact; the link downloads its bytes, and
    // only digests the run recorded are served.
    let (_, page) = procs::http_get(&http, &format!("/runs/{run}"));
    let link = page
        .split(r#"<a class="artifact" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no artifact link on the run page: {page:.2000}"))
        .to_owned();
    let (code, head, body) = procs::http(&http, "GET", &link, &[], "");
    assert_eq!((code, body.as_str()), (200, "the built app\n"), "{head}");
    assert!(head.contains(r#"filename="app.bin""#), "{head}");
    let forged = format!("/runs/{run}/artifacts/{}/14", "ab".repeat(32));
    assert_eq!(procs::http_get(&http, &forged).0, 404);
    // The cache page reads the store's size from the cache itself.
    let (code, page) = procs::http_get(&http, "/cache");
    assert_eq!(code, 200, "{page}");
    let store = page
        .split(r#"<table id="store">"#)
        .nth(1)
        .unwrap_or_default();
    assert!(
        store.contains("stored") && !store.contains("not reported"),
        "the store's figures: {store:.400}"
    );
    for name in [
        "run-live-wide",
        "log-wide",
        "run-wide",
        "runs-wide",
        "run-narrow",
        "runs-narrow",
    ] {
        let png = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            png.display()
        );
    }
    println!("screenshots in {}", shots.display());
}
