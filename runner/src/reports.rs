//! Reading the JUnit reports a step declared, after it exits. A report that
//! is missing or unreadable is said in the shard's log, never skipped
//! quietly; the step's state still comes from its exit status.

use std::path::Path;
use std::time::{Duration, SystemTime};

use buildfleet_model::TestResult;

use crate::junit;

/// Per-test outcomes from every report, and a note for each problem.
///
/// A report last written before the step started came with the inputs (a
/// committed or restored file), not from this run; counting its tests could
/// show a pass that never happened, so it is refused.
pub async fn read(
    dir: &Path,
    reports: &[String],
    not_before: SystemTime,
) -> (Vec<TestResult>, Vec<String>) {
    let mut tests = Vec::new();
    let mut problems = Vec::new();
    for rel in reports {
        // The runner may read what the step's user may not: a report that
        // is a link out of the work directory is not read.
        let path = match crate::confine::within(dir, rel, crate::confine::Last::Follow) {
            Ok(path) => path,
            Err(e) => {
                problems.push(format!("report {e}; its tests are not counted"));
                continue;
            }
        };
        if let Ok(modified) = tokio::fs::metadata(&path).await.and_then(|m| m.modified()) {
            // Filesystem timestamps can be coarser than the clock.
            if modified + Duration::from_secs(2) < not_before {
                problems.push(format!(
                    "report `{rel}` was not written by this run (it predates the step); its tests are not counted"
                ));
                continue;
            }
        }
        let text = match tokio::fs::read_to_string(&path).await {
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
            Ok(cases) => tests.extend(cases.into_iter().map(|c| TestResult {
                id: c.id(),
                outcome: c.outcome,
                duration_ms: c.duration.as_millis() as u64,
                message: c.message,
                report: rel.clone(),
                // The coordinator knows attempts, history and quarantine.
                flaky: false,
                quarantined: false,
                attempt: 0,
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
            SystemTime::now(),
        )
        .await;
        assert_eq!(tests.len(), 5);
        assert_eq!(tests[1].outcome, buildfleet_model::TestOutcome::Failed);
        assert_eq!(tests[1].report, "ok.xml");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("`gone.xml` was not written"));
        assert!(problems[1].contains("bad.xml") && problems[1].contains("JUnit"));
    }

    #[tokio::test]
    async fn a_report_older_than_the_step_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.xml");
        std::fs::write(&path, include_str!("junit/fixtures/pytest.xml")).unwrap();
        let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
        let (tests, problems) = read(dir.path(), &["old.xml".into()], SystemTime::now()).await;
        assert!(tests.is_empty());
        assert!(problems[0].contains("predates the step"), "{problems:?}");
    }
}
