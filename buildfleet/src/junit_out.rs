//! `--junit FILE`: one JUnit XML for the whole run, so a CI system shows
//! every shard's tests in one place. One `testsuite` per shard, named
//! `step#shard`; shards that ended without a report are listed as a single
//! test case carrying their state, so a crashed shard cannot disappear from
//! the CI's view.

use std::fmt::Write as _;

use buildfleet_model::{RunStatus, State, TestOutcome};
use quick_xml::escape::escape;

pub fn render(status: &RunStatus) -> String {
    let mut suites = String::new();
    let (mut total, mut failures, mut errors, mut skipped) = (0usize, 0usize, 0usize, 0usize);
    for step in &status.steps {
        for sh in &step.shards {
            let label = format!("{}#{}", step.name, sh.index);
            let mut cases = String::new();
            let (mut n, mut f, mut e, mut s) = (0usize, 0usize, 0usize, 0usize);
            for t in &sh.tests {
                n += 1;
                let failed = t.outcome.is_failure();
                let body = match t.outcome {
                    // Muted, not hidden: a skip whose message says it failed.
                    _ if t.quarantined && failed => {
                        s += 1;
                        let msg = format!("quarantined; failed: {}", t.message);
                        format!("<skipped message=\"{}\"/>", escape(msg.as_str()))
                    }
                    // Surefire's convention: a pass that needed a re-run.
                    TestOutcome::Passed if t.flaky => format!(
                        "<flakyFailure message=\"failed, then passed on attempt {}\"/>",
                        t.attempt
                    ),
                    TestOutcome::Failed => {
                        f += 1;
                        format!("<failure message=\"{}\"/>", escape(t.message.as_str()))
                    }
                    TestOutcome::Skipped => {
                        s += 1;
                        format!("<skipped message=\"{}\"/>", escape(t.message.as_str()))
                    }
                    TestOutcome::Passed => String::new(),
                    TestOutcome::Error => {
                        e += 1;
                        format!("<error message=\"{}\"/>", escape(t.message.as_str()))
                    }
                };
                let _ = write!(
                    cases,
                    "<testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">{body}</testcase>",
                    escape(label.as_str()),
                    escape(t.id.as_str()),
                    t.duration_ms as f64 / 1000.0
                );
            }
            if sh.tests.is_empty() {
                // No report: the shard itself is the test case.
                n += 1;
                let body = match &sh.state {
                    st if st.is_green() => String::new(),
                    st @ State::ConditionFalse { .. } => {
                        s += 1;
                        format!("<skipped message=\"{}\"/>", escape(st.to_string().as_str()))
                    }
                    st => {
                        f += 1;
                        format!("<failure message=\"{}\"/>", escape(st.to_string().as_str()))
                    }
                };
                let _ = write!(
                    cases,
                    "<testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">{body}</testcase>",
                    escape(step.name.as_str()),
                    escape(label.as_str()),
                    sh.duration_ms as f64 / 1000.0
                );
            }
            let _ = writeln!(
                suites,
                "<testsuite name=\"{}\" tests=\"{n}\" failures=\"{f}\" errors=\"{e}\" skipped=\"{s}\" time=\"{:.3}\">{cases}</testsuite>",
                escape(label.as_str()),
                sh.duration_ms as f64 / 1000.0
            );
            total += n;
            failures += f;
            errors += e;
            skipped += s;
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"buildfleet {}\" tests=\"{total}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">\n{suites}</testsuites>\n",
        escape(status.run_id.as_str()),
        status.duration_ms as f64 / 1000.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use buildfleet_model::{ShardStatus, StepStatus};

    fn shard(index: u32, state: State, duration_ms: u64) -> ShardStatus {
        ShardStatus {
            duration_ms,
            ..ShardStatus::new(index, state)
        }
    }

    #[test]
    fn shards_without_reports_are_one_case_carrying_their_state() {
        let timed_out = State::TimedOut { after_ms: 5000 };
        let status = RunStatus {
            run_id: "run-1".into(),
            state: State::failed("x"),
            steps: vec![StepStatus {
                name: "build<x>".into(),
                stage: "s".into(),
                state: State::failed("x"),
                shards: vec![shard(0, timed_out, 5000), shard(1, State::Cached, 0)],
                split: None,
            }],
            created_unix_ms: 0,
            duration_ms: 0,
            pipeline_path: String::new(),
            notices: Vec::new(),
            context: Default::default(),
        };
        let xml = render(&status);
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"build&lt;x&gt;#0\" time=\"5.000\"><failure message=\"timed out after 5.0s\"/>"),
            "{xml}"
        );
        assert!(
            xml.contains("name=\"build&lt;x&gt;#1\" time=\"0.000\"></testcase>"),
            "{xml}"
        );
    }
}
