//! Green means the work happened: steps that act on the world are not
//! replayed from the step cache, `verify:` checks the world after a cache
//! hit too, a muted failure still owes its outputs and checks, and secrets
//! reach neither listings nor reports. Evidence comes from the effects —
//! marker files the steps write outside their inputs — not from logs.

mod harness;
mod procs;

use procs::{lines, with_mark};
use std::path::Path;

use buildfleet_proto::v1 as pb;
use harness::{cache_report, kind, outcome, step, system_of};
use pb::StateKind as K;

const SECRET: &str = "s3cr3t-t0ken-value";

/// A secret store holding TOKEN, and a fleet that reads it.
async fn fleet_with_token() -> (harness::TestFleet, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("TOKEN"), format!("{SECRET}\n")).unwrap();
    let dir = secrets.path().to_path_buf();
    let fleet = harness::start_configured(2, move |c| c.secrets.dir = Some(dir)).await;
    (fleet, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_with_secrets_runs_every_time_unless_it_says_cache_true() {
    let (fleet, _secrets) = fleet_with_token().await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: deploy
    steps:
      - { name: push, secrets: [TOKEN], run: 'echo pushed >> "$MARK/push"' }
      - { name: push-reused, secrets: [TOKEN], cache: true, run: 'echo pushed >> "$MARK/push-reused"' }
"#,
    );
    let files = [("app.txt", "v1\n")];
    let (first, _) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&first.state), K::Succeeded, "{first:?}");
    let (second, _) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&second.state), K::Succeeded, "{second:?}");
    assert_eq!(
        kind(&step(&second, "push").state),
        K::Succeeded,
        "a push is never green from the cache"
    );
    assert_eq!(lines(&mark.path().join("push")).len(), 2, "it pushed twice");
    let why = cache_report(&second, "push", 0, "step");
    assert_eq!(outcome(why), pb::CacheOutcome::Disabled);
    assert!(
        why.detail
            .contains("receives secrets (TOKEN), so it acts on the outside world"),
        "the summary says why it ran: {why:?}"
    );
    assert_eq!(kind(&step(&second, "push-reused").state), K::Cached);
    assert_eq!(lines(&mark.path().join("push-reused")).len(), 1);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_using_the_run_id_is_never_served_from_the_cache() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        "stages:\n  - name: s\n    steps:\n      - { name: tag, run: 'echo \"app:$BUILDFLEET_RUN_ID\" >> \"$MARK/tags\"' }\n",
    );
    let (a, _) = fleet.run_with(&yaml, &[], false).await;
    let (b, _) = fleet.run_with(&yaml, &[], false).await;
    assert_eq!(kind(&b.state), K::Succeeded);
    // `lines` sorts: the file is compared as a set of tags.
    let tags = lines(&mark.path().join("tags"));
    let mut made = [format!("app:{}", a.run_id), format!("app:{}", b.run_id)];
    made.sort();
    assert_eq!(tags, made, "both runs' tags were made");
    assert!(cache_report(&b, "tag", 0, "step")
        .detail
        .contains("uses BUILDFLEET_RUN_ID"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_runs_after_a_cache_hit_and_fails_the_step_when_the_world_changed() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: publish
        outputs: [out.txt]
        run: 'echo v1 > out.txt; cp out.txt "$MARK/published"'
        verify: 'echo verifying-now; echo checked >> "$MARK/verified"; cmp out.txt "$MARK/published"'
"#,
    );
    let files = [("src.txt", "x\n")];
    let (first, _) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&first.state), K::Succeeded, "{first:?}");
    let (second, events) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&step(&second, "publish").state), K::Cached);
    assert_eq!(
        lines(&mark.path().join("verified")).len(),
        2,
        "the check ran again after the hit, against the cached out.txt"
    );
    assert!(system_of(&events, "publish", 0).contains("`verify:` checks the world, so it runs now"));
    assert_eq!(
        harness::stdout_of(&events, "publish", 0)
            .matches("verifying-now")
            .count(),
        1,
        "the replay holds the command's output, not the first run's check"
    );
    // The published artifact disappears: the cached result no longer holds.
    std::fs::remove_file(mark.path().join("published")).unwrap();
    let (third, _) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&third.state), K::Failed);
    let shard = &step(&third, "publish").shards[0];
    let reason = &shard.state.as_ref().unwrap().reason;
    assert!(
        reason.starts_with("verify-failed: cached result no longer holds: `echo verifying-now"),
        "{reason}"
    );
    assert_eq!(lines(&mark.path().join("verified")).len(), 3);
    fleet.stop().await;
}

/// [`procs::one_known_bad_test`] with the marks in `mark`.
fn muted_pipeline(mark: &Path, extra: &str, makes_output: bool) -> String {
    with_mark(mark, &procs::one_known_bad_test(extra, makes_output))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_failure_still_owes_its_outputs_and_its_verify() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let run = |yaml: String| {
        let req = pb::SubmitRequest {
            pipeline_yaml: yaml,
            quarantine: vec!["suite::known_bad".into()],
            ..Default::default()
        };
        fleet.run_request(req, &[])
    };
    // No output: the muted exit does not stand.
    let (missing, _) = run(muted_pipeline(mark.path(), "", false)).await;
    assert_eq!(kind(&missing.state), K::Failed);
    let s = step(&missing, "t").shards[0].state.clone().unwrap();
    assert_eq!(s.exit_code, Some(1));
    assert!(
        s.reason.contains("not muted")
            && s.reason.contains("missing-output")
            && s.reason.contains("dist/app"),
        "{}",
        s.reason
    );
    // The output is there but the check fails.
    let (unverified, _) = run(muted_pipeline(
        mark.path(),
        "        verify: 'echo ran >> \"$MARK/verify\"; false'\n",
        true,
    ))
    .await;
    assert_eq!(kind(&unverified.state), K::Failed);
    let s = step(&unverified, "t").shards[0].state.clone().unwrap();
    assert!(s.reason.contains("verify-failed"), "{}", s.reason);
    assert_eq!(lines(&mark.path().join("verify")), ["ran"]);
    // Everything else holds: the exit is muted, and says so.
    let (muted, events) = run(muted_pipeline(
        mark.path(),
        "        verify: 'echo ran >> \"$MARK/verify\"; test -s dist/app'\n",
        true,
    ))
    .await;
    assert_eq!(kind(&muted.state), K::Succeeded, "{muted:?}");
    assert_eq!(step(&muted, "t").shards[0].muted_exit_code, 1);
    assert_eq!(lines(&mark.path().join("verify")), ["ran", "ran"]);
    let log = system_of(&events, "t", 0);
    assert!(log.contains("output dist/app (file) stored as"), "{log}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_lease_gets_no_secrets_and_its_items_carry_none() {
    let (fleet, _secrets) = fleet_with_token().await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: t
        cache: false
        secrets: [TOKEN]
        split: { list: 'echo "item-${TOKEN:-none}"' }
        run: |
          echo "$BUILDFLEET_SHARD_ITEMS" >> "$MARK/items"
          echo "token=${TOKEN:-unset}" >> "$MARK/env"
"#,
    );
    let (status, events) = fleet.run_with(&yaml, &[], false).await;
    assert_eq!(kind(&status.state), K::Succeeded, "{status:?}");
    assert_eq!(lines(&mark.path().join("items")), ["item-none"]);
    assert_eq!(
        lines(&mark.path().join("env")),
        [format!("token={SECRET}")],
        "the step itself still gets it"
    );
    assert!(!format!("{status:?}{events:?}").contains(SECRET));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_names_and_messages_in_reports_are_masked_like_log_lines() {
    let (fleet, _secrets) = fleet_with_token().await;
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - name: t
        secrets: [TOKEN]
        reports: [report.xml]
        run: |
          printf '%s\n' '<testsuite name="suite" tests="1" failures="1">' \
            "<testcase classname=\"suite\" name=\"login_$TOKEN\"><failure message=\"rejected $TOKEN\">x</failure></testcase>" \
            '</testsuite>' > report.xml
"#;
    let (status, events) = fleet.run_with(yaml, &[], false).await;
    assert_eq!(kind(&status.state), K::Failed, "exit 0 with a failed test");
    let tests = &step(&status, "t").shards[0].tests;
    assert_eq!(tests.len(), 1);
    assert_eq!(tests[0].id, "suite::login_***");
    assert_eq!(tests[0].message, "rejected ***");
    assert!(!format!("{status:?}{events:?}").contains(SECRET));
    fleet.stop().await;
}

/// A health check that needs a moment: tried again `retries` times
/// `interval` apart, each failed attempt said; one that never passes fails
/// the step naming its last attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_check_with_retries_waits_for_the_world_and_still_fails_if_it_never_comes() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    // Passes on its third try: the marker file holds one line per try.
    let yaml = with_mark(
        mark.path(),
        "stages:\n  - name: s\n    steps:\n      - name: up\n        cache: false\n        run: 'true'\n        verify:\n          - run: 'echo try >> \"$MARK/tries\"; [ $(wc -l < \"$MARK/tries\") -ge 3 ]'\n            retries: 4\n            interval: 100ms\n      - name: down\n        cache: false\n        run: 'true'\n        verify:\n          - { run: 'echo no >> \"$MARK/never\"; false', retries: 1, interval: 50ms }\n",
    );
    let (status, events) = fleet.run_with(&yaml, &[], false).await;
    assert_eq!(kind(&step(&status, "up").state), K::Succeeded, "{status:?}");
    assert_eq!(
        lines(&mark.path().join("tries")).len(),
        3,
        "it passed on its third try"
    );
    let log = harness::system_of(&events, "up", 0);
    assert!(log.contains("(attempt 1 of 5); again in 100ms"), "{log}");
    assert!(log.contains("(attempt 2 of 5)"), "{log}");
    let down = step(&status, "down");
    assert_eq!(kind(&down.state), K::Failed, "{status:?}");
    let reason = &down.shards[0].state.as_ref().unwrap().reason;
    assert!(
        reason.starts_with("verify-failed:") && reason.contains("(attempt 2 of 2)"),
        "{reason}"
    );
    assert_eq!(
        lines(&mark.path().join("never")).len(),
        2,
        "tried twice, no more"
    );
    fleet.stop().await;
}
