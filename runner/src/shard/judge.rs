//! What an ended process means: the state it earns, a listing's items, and
//! whether a failed exit is one the quarantine file may mute.

use std::collections::BTreeSet;

use buildfleet_model::{Failure, State, TestResult};

use crate::exec::ExecOutcome;
use crate::oom::OomWatch;

/// The state an ended command earns by its exit alone: the one mapping
/// from an exit to a state. Exit 0 is only `Succeeded` here; the step's
/// other promises (outputs, verify) are the caller's to check. A SIGKILL
/// the kernel's OOM killer sent says so.
pub fn exit_state(outcome: &ExecOutcome, oom: &OomWatch) -> State {
    match outcome {
        ExecOutcome::Exited { code: 0 } => State::Succeeded,
        ExecOutcome::Exited { code } => State::Failed(Failure {
            exit_code: Some(*code),
            signal: None,
            reason: crate::oom::explain_exit(*code, oom).unwrap_or_default(),
        }),
        ExecOutcome::Signalled { signal } => State::Failed(Failure {
            exit_code: None,
            signal: Some(*signal),
            reason: crate::oom::explain_signal(*signal, oom),
        }),
        ExecOutcome::TimedOut { after } => State::TimedOut {
            after_ms: after.as_millis() as u64,
        },
        ExecOutcome::Cancelled { reason } => State::Cancelled {
            reason: reason.clone(),
        },
    }
}

/// A non-zero exit whose reports name failed tests, every one of them in
/// the quarantine list: the coordinator may mute it, so the rest of the
/// step's contract must be checked as for exit 0. Returns the exit code.
pub fn mutable_exit(
    outcome: &ExecOutcome,
    tests: &[TestResult],
    quarantine: &[String],
) -> Option<i32> {
    let ExecOutcome::Exited { code } = outcome else {
        return None;
    };
    let muted: BTreeSet<&str> = quarantine.iter().map(String::as_str).collect();
    let mut failing = tests.iter().filter(|t| t.outcome.is_failure()).peekable();
    let named = failing.peek().is_some();
    (*code != 0 && named && failing.all(|t| muted.contains(t.id.as_str()))).then_some(*code)
}

/// How many tests failed or errored.
pub fn failures(tests: &[TestResult]) -> usize {
    tests.iter().filter(|t| t.outcome.is_failure()).count()
}

/// A list command printing more than this is almost certainly not a list.
pub const MAX_LISTING_BYTES: usize = 16 << 20;

/// A listing lease's items when its command succeeded; else why there are
/// none.
pub fn listing(
    outcome: &ExecOutcome,
    printed: &[u8],
    oom: &OomWatch,
) -> Result<Vec<String>, ListingEnd> {
    let ended = exit_state(outcome, oom);
    if ended != State::Succeeded {
        return Err(ListingEnd::State(ended));
    }
    if printed.len() > MAX_LISTING_BYTES {
        return Err(ListingEnd::Refused(format!(
            "the list command printed more than {} MiB; that is not an item list",
            MAX_LISTING_BYTES >> 20
        )));
    }
    let text = std::str::from_utf8(printed).map_err(|e| {
        ListingEnd::Refused(format!(
            "the list command printed bytes that are not UTF-8: {e}"
        ))
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// Why a listing gave no items.
#[derive(Debug, PartialEq)]
pub enum ListingEnd {
    /// The command itself did not succeed.
    State(State),
    /// It succeeded but printed something that is not an item list.
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, outcome: buildfleet_model::TestOutcome) -> TestResult {
        TestResult {
            id: id.into(),
            outcome,
            duration_ms: 0,
            message: String::new(),
            report: String::new(),
            flaky: false,
            quarantined: false,
            attempt: 1,
        }
    }

    #[test]
    fn only_a_failed_exit_whose_failures_are_all_quarantined_is_mutable() {
        use buildfleet_model::TestOutcome::*;
        let q = vec!["a::x".to_string()];
        let exit1 = ExecOutcome::Exited { code: 1 };
        let tests = [t("a::x", Failed), t("a::y", Passed)];
        assert_eq!(mutable_exit(&exit1, &tests, &q), Some(1));
        let more = [t("a::x", Failed), t("a::y", Error)];
        assert_eq!(mutable_exit(&exit1, &more, &q), None);
        assert_eq!(
            mutable_exit(&exit1, &[t("a::y", Passed)], &q),
            None,
            "no named failure"
        );
        assert_eq!(
            mutable_exit(&ExecOutcome::Exited { code: 0 }, &tests, &q),
            None
        );
        assert_eq!(
            mutable_exit(&ExecOutcome::Signalled { signal: 9 }, &tests, &q),
            None
        );
        assert_eq!(mutable_exit(&exit1, &tests, &[]), None);
    }

    #[test]
    fn exits_map_to_states_once() {
        let oom = OomWatch::start(None);
        let s = exit_state(&ExecOutcome::Exited { code: 3 }, &oom);
        assert!(matches!(
            s,
            State::Failed(Failure {
                exit_code: Some(3),
                ..
            })
        ));
        let s = exit_state(
            &ExecOutcome::TimedOut {
                after: std::time::Duration::from_millis(1500),
            },
            &oom,
        );
        assert_eq!(s, State::TimedOut { after_ms: 1500 });
        let s = exit_state(&ExecOutcome::Signalled { signal: 15 }, &oom);
        assert_eq!(
            s,
            State::Failed(Failure {
                exit_code: None,
                signal: Some(15),
                reason: String::new()
            })
        );
        assert_eq!(
            exit_state(&ExecOutcome::Exited { code: 0 }, &oom),
            State::Succeeded
        );
    }

    #[test]
    fn listings_keep_non_empty_lines_and_refuse_what_is_not_a_list() {
        let oom = OomWatch::start(None);
        let ok = ExecOutcome::Exited { code: 0 };
        assert_eq!(listing(&ok, b"a\n\n  b \n", &oom).unwrap(), ["a", "b"]);
        assert!(matches!(
            listing(&ok, b"\xff\n", &oom),
            Err(ListingEnd::Refused(m)) if m.contains("UTF-8")
        ));
        assert!(matches!(
            listing(&ExecOutcome::Exited { code: 2 }, b"a\n", &oom),
            Err(ListingEnd::State(State::Failed(Failure {
                exit_code: Some(2),
                ..
            })))
        ));
    }
}
