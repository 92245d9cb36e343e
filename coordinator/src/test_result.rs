//! Per-test outcomes a runner read from a shard's JUnit reports, kept on the
//! shard so the summary can list failed tests with where to find them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TestOutcome {
    Passed,
    Failed,
    Error,
    Skipped,
}

impl TestOutcome {
    pub fn is_failure(self) -> bool {
        matches!(self, TestOutcome::Failed | TestOutcome::Error)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    pub id: String,
    pub outcome: TestOutcome,
    pub duration_ms: u64,
    pub message: String,
    /// The report file it came from.
    pub report: String,
    /// Failed on an earlier attempt, passed on a flaky re-run.
    pub flaky: bool,
    /// Listed in the quarantine file.
    pub quarantined: bool,
    /// The attempt this outcome comes from (1 = first run).
    pub attempt: u32,
}
