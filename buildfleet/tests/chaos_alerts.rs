//! The chaos suite, alerts: a failing pipeline that does not alert is one of
//! the seed's failures, and so is an alert that silently failed to send.
//! Webhook receivers on 127.0.0.1, the fleet as separate processes.

mod procs;

use std::time::Duration;

use procs::{bin, http_get, receiver, runner, server, server_with_metrics, wait_for_runners, Ran};

#[test]
fn a_webhook_failing_twice_then_accepting_gets_one_delivery_and_three_recorded_attempts() {
    let (url, seen) = receiver(vec![500, 503]);
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let hook = format!("run-failed={url}");
    let (_coord, coord_url, metrics) = server_with_metrics(&[
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
    let text = Ran::of(
        bin()
            .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
            .args(["--ref", "refs/heads/main", "--commit", "c0ffee"])
            .arg(dir.path().join("buildfleet.yaml")),
    )
    .expect(1)
    .stdout;
    assert!(
        text.contains("for refs/heads/main @ c0ffee"),
        "the submission says what it is for: {text}"
    );
    let run = procs::run_id_of(&text);
    let notices = procs::notices_until(&coord_url, &run, |t| t.contains("delivered"));
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
    assert!(
        bodies
            .iter()
            .all(|b| b.contains("\"branch\":\"main\"") && b.contains("\"commit\":\"c0ffee\"")),
        "a receiver can tell which commit failed: {bodies:?}"
    );
    // The metrics count the same attempts, and the failure's class.
    let (status, text) = http_get(&metrics, "/metrics");
    assert_eq!(status, 200);
    for line in [
        r#"buildfleet_webhook_deliveries_total{outcome="attempt_failed"} 2"#,
        r#"buildfleet_webhook_deliveries_total{outcome="delivered"} 1"#,
        r#"buildfleet_shard_results_total{state="failed",failure_class="exit"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}

#[test]
fn lost_runners_and_expiring_secrets_are_notified_and_an_unreachable_webhook_is_not_delivered() {
    use procs::{lines, runner, wait_for};
    let (url, seen) = receiver(Vec::new());
    // Nothing listens here: every attempt fails.
    let dead = format!("http://127.0.0.1:{}/hook", procs::free_port());
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("TOKEN"), "t0ken-long-enough").unwrap();
    let soon = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(2 * 24 * 3600),
    );
    std::fs::write(secrets.path().join("TOKEN.expires"), soon.to_string()).unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let alive_hook = format!("runner-lost,secret-expiring={url}");
    let dead_hook = format!("run-failed={dead}");
    let (_coord, coord_url) = server(&[
        "coordinator",
        "--data",
        d,
        "--secrets-dir",
        secrets.path().to_str().unwrap(),
        "--webhook",
        &alive_hook,
        "--webhook",
        &dead_hook,
        "--webhook-attempts",
        "2",
        "--webhook-backoff",
        "20ms",
    ]);
    let mut runners = vec![
        runner(&coord_url, &cache_url, "r1", &data.path().join("r1")),
        runner(&coord_url, &cache_url, "r2", &data.path().join("r2")),
    ];
    wait_for_runners(&coord_url, 2);
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        procs::with_mark(
            mark.path(),
            r#"stages:
  - name: s
    steps:
      - name: deploy
        cache: false
        secrets: [TOKEN]
        run: |
          echo $$ >> "$MARK/shells"
          while [ ! -e "$MARK/go" ]; do sleep 0.05; done
      - { name: broken, cache: false, run: 'exit 3' }
"#,
        ),
    )
    .unwrap();
    let submit = procs::spawn_submit(&coord_url, &cache_url, &dir.path().join("buildfleet.yaml"));
    wait_for("deploy to start", Duration::from_secs(20), || {
        !lines(&mark.path().join("shells")).is_empty()
    });
    let shell: i32 = lines(&mark.path().join("shells"))[0].parse().unwrap();
    let holder = runners
        .iter()
        .position(|r| procs::descends_from(shell, r.0.id() as i32))
        .expect("one runner holds deploy");
    let mut lost = runners.remove(holder);
    lost.0.kill().unwrap();
    lost.0.wait().unwrap();
    wait_for("deploy to be leased again", Duration::from_secs(20), || {
        lines(&mark.path().join("shells")).len() == 2
    });
    std::fs::write(mark.path().join("go"), "").unwrap();
    let stdout = Ran::waited(submit).expect(1).stdout;
    let run = procs::run_id_of(&stdout);
    let notices = procs::notices_until(&coord_url, &run, |t| t.contains("NOT DELIVERED"));
    // The URL's path (where webhook tokens live) is never shown or stored.
    let to_dead = format!("webhook run-failed → {}", dead.replace("/hook", "/…"));
    assert!(
        notices.iter().all(|t| !t.contains("/hook")),
        "a webhook's path leaked into the run: {notices:#?}"
    );
    assert!(
        notices
            .iter()
            .any(|t| t.starts_with(&to_dead) && t.contains("attempt 1 of 2 failed")),
        "{notices:#?}"
    );
    assert!(
        notices
            .iter()
            .any(|t| t == &format!("{to_dead}: NOT DELIVERED after 2 attempts")),
        "{notices:#?}"
    );
    let bodies = seen.lock().unwrap().clone();
    assert!(
        bodies.iter().any(|b| b.contains("\"runner-lost\"")
            && b.contains("was lost holding 1 lease(s)")
            && b.contains(&run)),
        "{bodies:?}"
    );
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("\"secret-expiring\"") && b.contains("secret TOKEN expires at")),
        "{bodies:?}"
    );
}
