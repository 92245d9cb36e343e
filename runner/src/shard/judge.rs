//! What an ended process means: the state it earns, a listing's items, and
//! whether a failed exit is one the quarantine file may mute.

use std::collections::BTreeSet;

use buildfleet_proto::v1 as pb;

use crate::exec::ExecOutcome;
use crate::oom::OomWatch;

pub fn state(kind: pb::StateKind, reason: String) -> pb::State {
    pb::State {
        kind: kind as i32,
        reason,
        ..pb::State::default()
    }
}

/// The state an ended command earns by its exit alone. Exit 0 is only
/// `Succeeded` here; the step's other promises (outputs, verify) are the
/// caller's to check. A SIGKILL the kernel's OOM killer sent says so.
pub fn exit_state(outcome: &ExecOutcome, oom: &OomWatch) -> pb::State {
    match outcome {
        ExecOutcome::Exited { code: 0 } => state(pb::StateKind::Succeeded, String::new()),
        ExecOutcome::Exited { code } => pb::State {
            exit_code: Some(*code),
            ..state(
                pb::StateKind::Failed,
                crate::oom::explain_exit(*code, oom).unwrap_or_default(),
            )
        },
        ExecOutcome::Signalled { signal } => pb::State {
            signal: Some(*signal),
            ..state(
                pb::StateKind::Failed,
                crate::oom::explain_signal(*signal, oom),
            )
        },
        ExecOutcome::TimedOut { after } => pb::State {
            timeout_ms: Some(after.as_millis() as u64),
            ..state(pb::StateKind::TimedOut, String::new())
        },
        ExecOutcome::Cancelled { reason } => state(pb::StateKind::Cancelled, reason.clone()),
    }
}

fn is_failure(t: &pb::TestCaseResult) -> bool {
    t.outcome == pb::TestOutcome::Failed as i32 || t.outcome == pb::TestOutcome::Error as i32
}

/// A non-zero exit whose reports name failed tests, every one of them in
/// the quarantine list: the coordinator may mute it, so the rest of the
/// step's contract must be checked as for exit 0. Returns the exit code.
pub fn mutable_exit(
    outcome: &ExecOutcome,
    tests: &[pb::TestCaseResult],
    quarantine: &[String],
) -> Option<i32> {
    let ExecOutcome::Exited { code } = outcome else {
        return None;
    };
    let muted: BTreeSet<&str> = quarantine.iter().map(String::as_str).collect();
    let mut failing = tests.iter().filter(|t| is_failure(t)).peekable();
    let named = failing.peek().is_some();
    (*code != 0 && named && failing.all(|t| muted.contains(t.id.as_str()))).then_some(*code)
}

/// How many tests failed or errored.
pub fn failures(tests: &[pb::TestCaseResult]) -> usize {
    tests.iter().filter(|t| is_failure(t)).count()
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
    if ended.kind != pb::StateKind::Succeeded as i32 {
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
    State(pb::State),
    /// It succeeded but printed something that is not an item list.
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str, outcome: pb::TestOutcome) -> pb::TestCaseResult {
        pb::TestCaseResult {
            id: id.into(),
            outcome: outcome as i32,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_failed_exit_whose_failures_are_all_quarantined_is_mutable() {
        use pb::TestOutcome::*;
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
        assert_eq!(
            (s.kind, s.exit_code),
            (pb::StateKind::Failed as i32, Some(3))
        );
        let s = exit_state(
            &ExecOutcome::TimedOut {
                after: std::time::Duration::from_millis(1500),
            },
            &oom,
        );
        assert_eq!(
            (s.kind, s.timeout_ms),
            (pb::StateKind::TimedOut as i32, Some(1500))
        );
        let s = exit_state(&ExecOutcome::Signalled { signal: 15 }, &oom);
        assert_eq!((s.signal, s.reason.as_str()), (Some(15), ""));
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
            Err(ListingEnd::State(s)) if s.exit_code == Some(2)
        ));
    }
}
