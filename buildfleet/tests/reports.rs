//! JUnit reports a step declares: read after it exits, per-test outcomes on
//! the shard, failed tests in the summary, missing reports said in the log.

mod harness;
mod procs;

use procs::{bin, Ran};

use buildfleet_proto::v1 as pb;
use harness::{kind, step, system_of};

const REPORT: &str = r#"<testsuites><testsuite name="pytest"><testcase classname="tests.test_a" name="test_ok" time="0.5"/><testcase classname="tests.test_a" name="test_bad" time="1.25"><failure message="assert 1 == 2">trace</failure></testcase></testsuite></testsuites>"#;

fn pipeline() -> String {
    format!(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - name: t\n        reports: [report.xml, missing.xml]\n        cache: false\n        run: |\n          cat > report.xml <<'XML'\n          {REPORT}\n          XML\n          exit 1\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_outcomes_reach_the_shard_and_a_missing_report_is_said() {
    let fleet = harness::start(1).await;
    let (status, events) = fleet.run(&pipeline(), &[]).await;
    assert_eq!(kind(&status.state), pb::StateKind::Failed);
    let tests = &step(&status, "t").shards[0].tests;
    let got: Vec<(&str, i32, u64)> = tests
        .iter()
        .map(|t| (t.id.as_str(), t.outcome, t.duration_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            ("tests.test_a::test_ok", pb::TestOutcome::Passed as i32, 500),
            (
                "tests.test_a::test_bad",
                pb::TestOutcome::Failed as i32,
                1250
            ),
        ]
    );
    assert_eq!(tests[1].message, "assert 1 == 2");
    let system = system_of(&events, "t", 0);
    assert!(
        system.contains("report `missing.xml` was not written"),
        "{system}"
    );
    assert!(
        system.contains("reports: 2 tests, 1 failed or errored"),
        "{system}"
    );
    fleet.stop().await;
}

#[test]
fn the_summary_lists_failed_tests_with_their_shard() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = dir.path().join("buildfleet.yaml");
    std::fs::write(&file, pipeline()).unwrap();
    let junit = dir.path().join("run-junit.xml");
    let text = Ran::of(
        bin()
            .args(["run", "--runners", "1", "--data"])
            .arg(data.path())
            .arg("--junit")
            .arg(&junit)
            .arg(&file),
    )
    .expect(1)
    .stdout;
    assert!(text.contains("FAILED TESTS (1 of 2)"), "{text}");
    assert!(
        text.contains(
            "t#0              tests.test_a::test_bad failed (report report.xml): assert 1 == 2"
        ),
        "{text}"
    );
    // The merged report reads back with the same outcomes, shard as suite.
    use buildfleet_model::TestOutcome as O;
    use buildfleet_runner::junit::parse;
    let merged = std::fs::read_to_string(&junit).unwrap();
    let cases = parse("run-junit.xml", &merged).unwrap();
    let got: Vec<(String, String, O)> = cases
        .iter()
        .map(|c| (c.suite.clone(), c.name.clone(), c.outcome))
        .collect();
    assert_eq!(
        got,
        vec![
            ("t#0".into(), "tests.test_a::test_ok".into(), O::Passed),
            ("t#0".into(), "tests.test_a::test_bad".into(), O::Failed),
        ]
    );
    assert_eq!(cases[1].message, "assert 1 == 2");
}
