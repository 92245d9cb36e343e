//! Pipelines more than one test file runs.

/// A step `t` whose report names one failed test, `suite::known_bad`
/// (passing `suite::fine`), which exits 1 and declares `dist/app` as its
/// output; it makes the output if `makes_output`. `extra` holds more of
/// the step's keys, each line indented by 8 spaces.
pub fn one_known_bad_test(extra: &str, makes_output: bool) -> String {
    let output = if makes_output {
        "mkdir -p dist; echo app > dist/app\n          "
    } else {
        ""
    };
    format!(
        r#"stages:
  - name: s
    steps:
      - name: t
        cache: false
        reports: [report.xml]
        outputs: [dist/app]
{extra}        run: |
          {output}printf '%s\n' '<testsuite name="suite" tests="2" failures="1">' \
            '<testcase classname="suite" name="fine"/>' \
            '<testcase classname="suite" name="known_bad"><failure message="boom">boom</failure></testcase>' \
            '</testsuite>' > report.xml
          exit 1
"#
    )
}
