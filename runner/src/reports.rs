//! Reading the JUnit reports a step declared, after it exits. A report that
//! is missing or unreadable is said in the shard's log, never skipped
//! quietly; the step's state still comes from its exit status.

use std::path::Path;

use buildfleet_proto::v1 as pb;

use crate::junit::{self, Outcome};

/// Per-test outcomes from every report, and a note for each problem.
pub async fn read(dir: &Path, reports: &[String]) -> (Vec<pb::TestCaseResult>, Vec<String>) {
    let mut tests = Vec::new();
    let mut problems = Vec::new();
    for rel in reports {
        let text = match tokio::fs::read_to_string(dir.join(rel)).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!(
                    "report `{rel}` was not written; its tests are not counted"
                ));
                continue;
            }
            Err(e) => {
                problems.push(format!("report `{rel}` cannot be read: {e}"));
                continue;
            }
        };
        match junit::parse(rel, &text) {
            Ok(cases) => tests.extend(cases.into_iter().map(|c| {
                let outcome = match c.outcome {
                    Outcome::Passed => pb::TestOutcome::Passed,
                    Outcome::Failed => pb::TestOutcome::Failed,
                    Outcome::Error => pb::TestOutcome::Error,
                    Outcome::Skipped => pb::TestOutcome::Skipped,
                };
                pb::TestCaseResult {
                    id: c.id(),
                    outcome: outcome as i32,
                    duration_ms: c.duration.as_millis() as u64,
                    message: c.message,
                    report: rel.clone(),
                }
            })),
            Err(e) => problems.push(format!("report unusable: {e}")),
        }
    }
    (tests, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_reports_and_names_missing_and_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ok.xml"),
            include_str!("junit/fixtures/pytest.xml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.xml"), "<html/>").unwrap();
        let (tests, problems) = read(
            dir.path(),
            &["ok.xml".into(), "gone.xml".into(), "bad.xml".into()],
        )
        .await;
        assert_eq!(tests.len(), 5);
        assert_eq!(tests[1].outcome, pb::TestOutcome::Failed as i32);
        assert_eq!(tests[1].report, "ok.xml");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`gone.xml` was not written"));
        assert!(problems[1].contains("bad.xml") && problems[1].contains("JUnit"));
    }
}
