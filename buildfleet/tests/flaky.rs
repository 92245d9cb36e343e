//! `retries: { flaky: N }`, `--fail-on-flaky` and the quarantine file, end
//! to end: what re-runs (only the failed items), what turns green (a pass on
//! the re-run, or failures that are all quarantined) and what never does.

mod harness;
mod procs;

use procs::{bin, Ran};

use buildfleet_proto::v1 as pb;
use harness::{kind, step, system_of};

/// Each item is a test of class `suite`. `bad_*` items always fail;
/// `flaky_*` items fail the first time (a mark in $MARK remembers) and pass
/// after. Every run of an item is appended to $MARK/trace.
fn pipeline(mark: &std::path::Path, retries: u32, head: &str) -> String {
    format!(
        r#"version: 1
{head}env:
  MARK: {mark}
stages:
  - name: s
    steps:
      - name: t
        split: {{ list: "cat items.txt" }}
        retries: {{ flaky: {retries} }}
        reports: [report.xml]
        cache: false
        run: |
          fail=0
          {{
            echo '<testsuites><testsuite name="s">'
            for i in $BUILDFLEET_SHARD_ITEMS; do
              n=${{i#suite/}}
              echo "$n" >> "$MARK/trace"
              case "$n" in
                bad_*) fail=1; echo "<testcase classname=\"suite\" name=\"$n\" time=\"0.01\"><failure message=\"always\"/></testcase>" ;;
                flaky_*)
                  if [ -e "$MARK/$n" ]; then echo "<testcase classname=\"suite\" name=\"$n\" time=\"0.01\"/>"
                  else touch "$MARK/$n"; fail=1; echo "<testcase classname=\"suite\" name=\"$n\" time=\"0.01\"><failure message=\"first time\"/></testcase>"; fi ;;
                *) echo "<testcase classname=\"suite\" name=\"$n\" time=\"0.01\"/>" ;;
              esac
            done
            echo '</testsuite></testsuites>'
          }} > report.xml
          exit $fail
"#,
        mark = mark.display()
    )
}

fn trace(mark: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(mark.join("trace"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn test<'a>(status: &'a pb::RunStatus, id: &str) -> &'a pb::TestCaseResult {
    step(status, "t").shards[0]
        .tests
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no test {id}"))
}

const ITEMS: &str = "suite/ok_a\nsuite/flaky_b\nsuite/ok_c\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_test_reruns_alone_and_passing_then_marks_it_flaky() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let req = pb::SubmitRequest {
        pipeline_yaml: pipeline(mark.path(), 2, ""),
        ..Default::default()
    };
    let (status, events) = fleet.run_request(req, &[("items.txt", ITEMS)]).await;
    assert_eq!(kind(&status.state), pb::StateKind::Succeeded);
    let shard = &step(&status, "t").shards[0];
    assert_eq!(shard.attempt, 2);
    assert_eq!(
        trace(mark.path()),
        ["flaky_b", "ok_a", "ok_c", "flaky_b"],
        "the re-run runs only the failed item"
    );
    let flaky = test(&status, "suite::flaky_b");
    assert!(flaky.flaky && flaky.attempt == 2, "{flaky:?}");
    assert_eq!(flaky.outcome, pb::TestOutcome::Passed as i32);
    assert!(!test(&status, "suite::ok_a").flaky);
    let log = system_of(&events, "t", 0);
    assert!(log.contains("re-running 1 of 3 item(s)"), "{log}");
    assert!(
        log.contains("flaky: 1 test(s) failed, then passed"),
        "{log}"
    );

    let mark = tempfile::tempdir().unwrap();
    let req = pb::SubmitRequest {
        pipeline_yaml: pipeline(mark.path(), 2, ""),
        fail_on_flaky: true,
        ..Default::default()
    };
    let (status, _) = fleet.run_request(req, &[("items.txt", ITEMS)]).await;
    assert_eq!(kind(&status.state), pb::StateKind::Failed);
    let reason = &step(&status, "t").shards[0].state.as_ref().unwrap().reason;
    assert!(
        reason.contains("--fail-on-flaky") && reason.contains("suite::flaky_b"),
        "{reason}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_failing_every_time_uses_the_budget_and_fails() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let req = pb::SubmitRequest {
        pipeline_yaml: pipeline(mark.path(), 1, ""),
        ..Default::default()
    };
    let (status, _) = fleet
        .run_request(req, &[("items.txt", "suite/ok_a\nsuite/bad_b\n")])
        .await;
    assert_eq!(kind(&status.state), pb::StateKind::Failed);
    let shard = &step(&status, "t").shards[0];
    assert_eq!(shard.attempt, 2, "one flaky re-run, then the end");
    assert_eq!(shard.state.as_ref().unwrap().exit_code, Some(1));
    let bad = test(&status, "suite::bad_b");
    assert_eq!(
        (bad.outcome, bad.attempt, bad.flaky),
        (pb::TestOutcome::Failed as i32, 2, false)
    );
    assert_eq!(trace(mark.path()), ["bad_b", "ok_a", "bad_b"]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_failures_are_muted_but_others_still_fail() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let items = [("items.txt", "suite/ok_a\nsuite/bad_b\n")];
    let req = pb::SubmitRequest {
        pipeline_yaml: pipeline(mark.path(), 0, ""),
        quarantine: vec!["suite::bad_b".into()],
        ..Default::default()
    };
    let (status, events) = fleet.run_request(req, &items).await;
    assert_eq!(kind(&status.state), pb::StateKind::Succeeded);
    let bad = test(&status, "suite::bad_b");
    assert!(
        bad.quarantined && bad.outcome == pb::TestOutcome::Failed as i32,
        "{bad:?}"
    );
    let log = system_of(&events, "t", 0);
    assert!(
        log.contains("exit code 1 muted: every failed test is quarantined, and the step's outputs and verify passed"),
        "{log}"
    );
    assert_eq!(step(&status, "t").shards[0].muted_exit_code, 1);

    let req = pb::SubmitRequest {
        pipeline_yaml: pipeline(mark.path(), 0, ""),
        quarantine: vec!["suite::ok_a".into()],
        ..Default::default()
    };
    let (status, _) = fleet.run_request(req, &items).await;
    assert_eq!(
        kind(&status.state),
        pb::StateKind::Failed,
        "bad_b is not quarantined"
    );
    fleet.stop().await;
}

#[test]
fn the_cli_reads_the_quarantine_file_and_the_summary_shows_flaky_and_muted_tests() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let yaml = pipeline(mark.path(), 1, "quarantine: quarantine.txt\n");
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    std::fs::write(
        dir.path().join("items.txt"),
        "suite/flaky_a\nsuite/bad_b\nsuite/ok_c\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("quarantine.txt"),
        "# known broken\nsuite::bad_b\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Ran::of(
            bin()
                .args(["run", "--runners", "1", "--data"])
                .arg(data.path())
                .args(extra)
                .arg(dir.path().join("buildfleet.yaml")),
        )
    };
    let text = run(&[]).expect(0).stdout;
    assert!(text.contains("quarantine: 1 test(s)"), "{text}");
    assert!(
        text.contains("FLAKY TESTS (1)")
            && text.contains("suite::flaky_a failed, then passed on attempt 2"),
        "{text}"
    );
    assert!(
        text.contains("QUARANTINED (1)") && text.contains("suite::bad_b failed — muted"),
        "{text}"
    );
    assert!(
        !text.contains("FAILED TESTS"),
        "muted failures are not listed as failed: {text}"
    );

    std::fs::remove_file(mark.path().join("flaky_a")).unwrap();
    let text = run(&["--fail-on-flaky"]).expect(1).stdout;
    assert!(
        text.contains("--fail-on-flaky: flaky test(s) suite::flaky_a"),
        "{text}"
    );

    std::fs::remove_file(dir.path().join("quarantine.txt")).unwrap();
    let err = run(&[]).expect(1).stderr;
    assert!(
        err.contains("quarantine file `quarantine.txt` does not exist"),
        "{err}"
    );
}
