//! States and log streams.

use buildfleet_model::{Failure, LogStream, State};

use super::WireError;
use crate::v1 as pb;

/// A state as the wire carries it.
pub fn state(s: &State) -> pb::State {
    use pb::StateKind as K;
    let timeout_ms = match s {
        State::TimedOut { after_ms } => Some(*after_ms),
        _ => None,
    };
    let (kind, exit_code, signal, reason) = match s {
        State::Pending => (K::Pending, None, None, String::new()),
        State::Waiting => (K::Waiting, None, None, String::new()),
        State::Running => (K::Running, None, None, String::new()),
        State::AwaitingApproval => (K::AwaitingApproval, None, None, String::new()),
        State::Succeeded => (K::Succeeded, None, None, String::new()),
        State::Cached => (K::Cached, None, None, String::new()),
        State::Failed(f) => (K::Failed, f.exit_code, f.signal, f.reason.clone()),
        State::TimedOut { .. } => (K::TimedOut, None, None, String::new()),
        State::Cancelled { reason } => (K::Cancelled, None, None, reason.clone()),
        State::RunnerLost { runner } => (K::RunnerLost, None, None, runner.clone()),
        State::Skipped { reason } => (K::Skipped, None, None, reason.clone()),
        State::ConditionFalse { why } => (K::ConditionFalse, None, None, why.clone()),
    };
    pb::State {
        kind: kind as i32,
        exit_code,
        signal,
        reason,
        timeout_ms,
    }
}

/// An unknown or unspecified kind is an error, never a default.
pub fn state_from_wire(s: &pb::State) -> Result<State, WireError> {
    use pb::StateKind as K;
    let kind = K::try_from(s.kind).map_err(|_| WireError::UnknownEnum {
        what: "state kind",
        value: s.kind,
    })?;
    Ok(match kind {
        K::Unspecified => return Err(WireError::Missing("state kind")),
        K::Pending => State::Pending,
        K::Waiting => State::Waiting,
        K::Running => State::Running,
        K::AwaitingApproval => State::AwaitingApproval,
        K::Succeeded => State::Succeeded,
        K::Cached => State::Cached,
        K::Failed => State::Failed(Failure {
            exit_code: s.exit_code,
            signal: s.signal,
            reason: s.reason.clone(),
        }),
        K::TimedOut => State::TimedOut {
            after_ms: s
                .timeout_ms
                .ok_or(WireError::Missing("a timed-out state's timeout"))?,
        },
        K::Cancelled => State::Cancelled {
            reason: s.reason.clone(),
        },
        K::RunnerLost => State::RunnerLost {
            runner: s.reason.clone(),
        },
        K::Skipped => State::Skipped {
            reason: s.reason.clone(),
        },
        K::ConditionFalse => State::ConditionFalse {
            why: s.reason.clone(),
        },
    })
}

/// A log stream as the wire carries it.
pub fn log_stream(s: LogStream) -> pb::LogStream {
    match s {
        LogStream::Stdout => pb::LogStream::Stdout,
        LogStream::Stderr => pb::LogStream::Stderr,
        LogStream::System => pb::LogStream::System,
    }
}

/// An unknown stream is shown as buildfleet's own rather than dropped.
pub fn log_stream_from_wire(s: i32) -> LogStream {
    match pb::LogStream::try_from(s) {
        Ok(pb::LogStream::Stdout) => LogStream::Stdout,
        Ok(pb::LogStream::Stderr) => LogStream::Stderr,
        _ => LogStream::System,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_the_wire_and_unknown_kinds_are_errors() {
        let states = [
            State::Pending,
            State::Waiting,
            State::Running,
            State::AwaitingApproval,
            State::Succeeded,
            State::Cached,
            State::Failed(Failure {
                exit_code: Some(2),
                signal: None,
                reason: "x".into(),
            }),
            State::Failed(Failure {
                exit_code: None,
                signal: Some(9),
                reason: String::new(),
            }),
            State::TimedOut { after_ms: 1500 },
            State::Cancelled {
                reason: "user".into(),
            },
            State::RunnerLost {
                runner: "r1".into(),
            },
            State::Skipped {
                reason: "needs a".into(),
            },
            State::ConditionFalse {
                why: "branch is 'feature'".into(),
            },
        ];
        for s in states {
            assert_eq!(state_from_wire(&state(&s)), Ok(s));
        }
        assert_eq!(
            state_from_wire(&pb::State::default()),
            Err(WireError::Missing("state kind"))
        );
        let future = pb::State {
            kind: 99,
            ..pb::State::default()
        };
        assert!(state_from_wire(&future).is_err());
    }
}
