//! Real reports from three tools, generated on this machine (pytest 8.3.3,
//! cargo-nextest with a JUnit profile, jest 30 with jest-junit 16), plus a
//! Surefire-style and a go-junit-report-style sample for their quirks.

use super::*;

fn outcomes(cases: &[TestCase]) -> Vec<(String, TestOutcome)> {
    cases.iter().map(|c| (c.id(), c.outcome)).collect()
}

#[test]
fn pytest_report() {
    let cases = parse("pytest.xml", include_str!("fixtures/pytest.xml")).unwrap();
    assert_eq!(
        outcomes(&cases),
        vec![
            (
                "tests.test_sample::test_passes".to_string(),
                TestOutcome::Passed
            ),
            (
                "tests.test_sample::test_fails".to_string(),
                TestOutcome::Failed
            ),
            (
                "tests.test_sample::test_skipped".to_string(),
                TestOutcome::Skipped
            ),
            (
                "tests.test_sample::test_errors".to_string(),
                TestOutcome::Error
            ),
            (
                "tests.test_sample.TestGroup::test_in_class".to_string(),
                TestOutcome::Passed
            ),
        ]
    );
    assert!(
        cases[1]
            .message
            .starts_with("AssertionError: letters differ"),
        "{}",
        cases[1].message
    );
    assert_eq!(cases[2].message, "not on this platform");
    assert_eq!(cases[0].suite, "pytest");
}

#[test]
fn nextest_report() {
    let cases = parse("nextest.xml", include_str!("fixtures/nextest.xml")).unwrap();
    assert_eq!(
        outcomes(&cases),
        vec![
            ("rsproj::tests::adds".to_string(), TestOutcome::Passed),
            ("rsproj::tests::fails".to_string(), TestOutcome::Failed),
        ]
    );
    assert_eq!(cases[1].duration, Duration::from_millis(75));
    assert_eq!(cases[0].suite, "rsproj");
    assert!(
        cases[1].message.contains("panicked at src/lib.rs:8:18"),
        "{}",
        cases[1].message
    );
}

#[test]
fn jest_report() {
    let cases = parse("jest.xml", include_str!("fixtures/jest.xml")).unwrap();
    let got = outcomes(&cases);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[0], ("adds".to_string(), TestOutcome::Passed));
    assert_eq!(got[1], ("fails".to_string(), TestOutcome::Failed));
    assert_eq!(got[2].1, TestOutcome::Skipped);
    assert!(got[3].0.contains("nested passes"), "{got:?}");
    // jest-junit puts no message attribute: the first line of the text is used.
    assert!(
        cases[1]
            .message
            .starts_with("Error: expect(received).toBe(expected)"),
        "{}",
        cases[1].message
    );
}

#[test]
fn surefire_and_go_quirks() {
    let surefire = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="com.example.AppTest" time="1,234.5" tests="2" errors="0" skipped="0" failures="1">
  <properties><property name="java.version" value="17"/></properties>
  <testcase name="works" classname="com.example.AppTest" time="1,200.25"/>
  <testcase name="breaks" classname="com.example.AppTest" time="0.01">
    <failure message="expected:&lt;1&gt; but was:&lt;2&gt;" type="java.lang.AssertionError">stack</failure>
    <system-out>noise</system-out>
  </testcase>
</testsuite>"#;
    let cases = parse("TEST-com.example.AppTest.xml", surefire).unwrap();
    assert_eq!(cases[0].duration, Duration::from_secs_f64(1200.25));
    assert_eq!(cases[1].outcome, TestOutcome::Failed);
    assert_eq!(cases[1].message, "expected:<1> but was:<2>");
    assert_eq!(cases[1].id(), "com.example.AppTest::breaks");

    let go = r#"<testsuites><testsuite tests="1" failures="0" time="0.010" name="example.com/pkg">
<properties><property name="go.version" value="go1.22"></property></properties>
<testcase classname="pkg" name="TestThing" time="0.000"></testcase></testsuite></testsuites>"#;
    let cases = parse("go.xml", go).unwrap();
    assert_eq!(
        outcomes(&cases),
        vec![("pkg::TestThing".to_string(), TestOutcome::Passed)]
    );
}

#[test]
fn bad_reports_say_what_is_wrong_and_where() {
    let err = parse(
        "r.xml",
        "<testsuite><testcase name=\"a\" time=\"soon\"/></testsuite>",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "r.xml: testcase `a` has time \"soon\", which is not a number of seconds"
    );
    let err = parse("r.xml", "<testsuite><testcase time=\"1\"/></testsuite>").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("r.xml: testcase at byte 11 has no name"),
        "{err}"
    );
    let err = parse("r.xml", "<html><body>hi</body></html>").unwrap_err();
    assert!(
        err.to_string().contains("is this a JUnit XML report?"),
        "{err}"
    );
    let err = parse("r.xml", "<testsuite><testcase name=\"a\"></testsuite>").unwrap_err();
    assert!(
        err.to_string().starts_with("r.xml: not well-formed XML"),
        "{err}"
    );
}

/// Found by the `junit` fuzz target (seed `big-time.xml`): a time too
/// large for a `Duration` panicked the runner reading the report.
#[test]
fn a_time_too_large_for_a_duration_is_refused_not_a_panic() {
    for time in ["1e30", "18446744073709551616", "1e20", "inf"] {
        let xml = format!("<testsuite><testcase name=\"a\" time=\"{time}\"/></testsuite>");
        let err = parse("r.xml", &xml).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("r.xml: testcase `a` has time \"{time}\", which is not a number of seconds")
        );
    }
}
