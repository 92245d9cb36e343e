//! Per-test outcomes read from a shard's JUnit reports: one vocabulary for
//! the runner that reads them, the coordinator that judges them and the
//! summary and merged report that show them.

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TestOutcome {
    /// It passed.
    Passed,
    /// An assertion failed.
    Failed,
    /// The test could not run properly (a broken fixture, a crash).
    Error,
    /// The tool skipped it.
    Skipped,
}

impl TestOutcome {
    /// A failure or an error: what fails a step and what quarantine mutes.
    pub fn is_failure(self) -> bool {
        matches!(self, TestOutcome::Failed | TestOutcome::Error)
    }
}

/// One test's outcome as a shard reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TestResult {
    /// `classname::name`, stable across runs (history, flaky marks).
    pub id: String,
    /// How it ended.
    pub outcome: TestOutcome,
    /// How long it took, by the report.
    pub duration_ms: u64,
    /// The failure, error or skip message (first line).
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
