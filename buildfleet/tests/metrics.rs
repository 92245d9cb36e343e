//! Prometheus metrics from real coordinator and cache processes, read as
//! raw HTTP off their `--metrics-listen` ports while a pipeline queues,
//! runs, and runs again from the cache.

mod procs;

use std::process::Stdio;
use std::time::{Duration, Instant};

use procs::{bin, free_port, http_get, server_with_metrics, wait_for_runners, Proc, Ran};

/// The sum of every sample of `name` whose labels contain each of
/// `labels` (e.g. `state="succeeded"`); `None` when there is none.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn scrape(addr: &str) -> String {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// Scrapes until `check` holds (bounded), returning the text that held.
fn scrape_until(addr: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(addr);
        if check(&text) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: not seen within 20 s; last scrape:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_show_the_queue_the_results_and_the_cache_of_a_real_run() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url, cache_metrics) = server_with_metrics(&["cache", "--data", d]);
    let (_coord, coord_url, coord_metrics) = server_with_metrics(&["coordinator", "--data", d]);

    // The cache serves only /metrics; the coordinator its dashboard too.
    assert_eq!(http_get(&cache_metrics, "/").0, 404);
    assert_eq!(http_get(&coord_metrics, "/no-such-page").0, 404);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        r#"version: 1
stages:
  - name: build
    steps:
      - { name: wide, shards: 3, labels: [metrics-test, linux], run: "echo shard-$BUILDFLEET_SHARD_INDEX" }
"#,
    )
    .unwrap();
    let submit = |name: &str| {
        Proc(
            bin()
                .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
                .arg(dir.path().join("buildfleet.yaml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: {e}")),
        )
    };

    // No runner yet: the three shards queue under the labels they need.
    let mut first = submit("first submit");
    let queued = scrape_until(&coord_metrics, "three queued shards", |t| {
        sample(
            t,
            "buildfleet_queued_shards",
            &[r#"labels="linux,metrics-test""#],
        ) == Some(3.0)
    });
    let age = sample(
        &queued,
        "buildfleet_oldest_queued_shard_age_seconds",
        &[r#"labels="linux,metrics-test""#],
    )
    .expect("the oldest queued shard's age");
    assert!(age >= 0.0, "{queued}");
    assert_eq!(
        sample(&queued, "buildfleet_runners", &[]),
        Some(0.0),
        "no runner is connected yet:\n{queued}"
    );

    let runner_metrics = format!("127.0.0.1:{}", free_port());
    let _runner = Proc(
        bin()
            .args(["runner", "--coordinator", &coord_url, "--cache", &cache_url])
            .args(["--metrics-listen", &runner_metrics])
            .args([
                "--name",
                "m1",
                "--label",
                "metrics-test",
                "--label",
                "linux",
            ])
            .args(["--slots", "3", "--allow-root-steps"])
            .arg("--work-dir")
            .arg(data.path().join("m1"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_runners(&coord_url, 1);
    first.wait_exit(Duration::from_secs(60), "the first submit");
    assert_eq!(first.0.wait().unwrap().code(), Some(0));

    let ran = scrape_until(&coord_metrics, "three results", |t| {
        sample(
            t,
            "buildfleet_shard_results_total",
            &[r#"state="succeeded""#],
        ) == Some(3.0)
    });
    assert_eq!(
        sample(&ran, "buildfleet_queued_shards", &[]),
        None,
        "nothing is queued any more, so no label set is reported:\n{ran}"
    );
    assert_eq!(
        sample(&ran, "buildfleet_shard_queue_wait_seconds_count", &[]),
        Some(3.0),
        "{ran}"
    );
    assert_eq!(
        sample(&ran, "buildfleet_shard_duration_seconds_count", &[]),
        Some(3.0),
        "{ran}"
    );
    assert!(
        sample(&ran, "buildfleet_log_bytes_total", &[]).unwrap_or(0.0)
            >= "shard-0\n".len() as f64 * 3.0,
        "{ran}"
    );
    assert_eq!(
        sample(&ran, "buildfleet_runners", &[r#"state="idle""#]),
        Some(1.0),
        "{ran}"
    );

    let runner = scrape_until(&runner_metrics, "the runner's three shards", |t| {
        sample(
            t,
            "buildfleet_runner_shards_ended_total",
            &[r#"state="succeeded""#],
        ) == Some(3.0)
    });
    for (series, value) in [
        ("buildfleet_runner_slots", 3.0),
        ("buildfleet_runner_shards_running", 0.0),
        ("buildfleet_runner_connected", 1.0),
    ] {
        assert_eq!(
            sample(&runner, series, &[]),
            Some(value),
            "{series}:\n{runner}"
        );
    }

    let cache = scrape(&cache_metrics);
    let misses = sample(
        &cache,
        "buildfleet_cache_action_lookups_total",
        &[r#"result="miss""#],
    );
    assert!(
        misses >= Some(3.0),
        "each shard looked its result up first:\n{cache}"
    );
    assert!(
        sample(
            &cache,
            "buildfleet_cache_bytes_total",
            &[r#"direction="written""#]
        ) > Some(0.0),
        "{cache}"
    );
    assert!(
        sample(&cache, "buildfleet_cache_stored_bytes", &[]) > Some(0.0),
        "{cache}"
    );

    // The same pipeline again: every shard's result comes from the cache.
    let out = Ran::of(
        bin()
            .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
            .arg(dir.path().join("buildfleet.yaml")),
    )
    .expect(0);
    assert!(out.stdout.contains("cached"), "{}", out.stdout);
    let again = scrape_until(&coord_metrics, "three cached results", |t| {
        sample(t, "buildfleet_shard_results_total", &[r#"state="cached""#]) == Some(3.0)
    });
    assert_eq!(
        sample(
            &again,
            "buildfleet_shard_results_total",
            &[r#"state="succeeded""#]
        ),
        Some(3.0),
        "earlier results are counted once:\n{again}"
    );
    let cache = scrape(&cache_metrics);
    assert!(
        sample(
            &cache,
            "buildfleet_cache_action_lookups_total",
            &[r#"result="hit""#]
        ) >= Some(3.0),
        "{cache}"
    );
}
