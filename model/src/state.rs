//! Typed states for shards, steps and runs.
//!
//! Every terminal state carries its evidence (exit code, signal, reason) so a
//! summary can say *why*, and only `Succeeded` is green: a skipped step is a
//! state of its own, never folded into success.

use std::fmt;

use crate::duration::fmt_ms;

/// Where a shard, a step or a run is; terminal states carry their evidence.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    /// Not yet startable: dependencies still running.
    Pending,
    /// Ready, waiting for a runner slot (or a runner with the right labels).
    Waiting,
    /// A runner holds it.
    Running,
    /// Ready, but held until someone approves it (`approval:`); holds no
    /// runner slot.
    AwaitingApproval,
    /// Ran, and everything it promised held.
    Succeeded,
    /// Not run: the identical action's earlier successful result was reused
    /// (outputs present, log replayed). Green, and shown as such.
    Cached,
    /// Ran and failed, with the evidence.
    Failed(Failure),
    /// Killed at its time limit.
    TimedOut {
        /// The limit it ran into.
        after_ms: u64,
    },
    /// Stopped on request.
    Cancelled {
        /// Who or what asked, in words.
        reason: String,
    },
    /// Its runner went away and its infra retries are spent.
    RunnerLost {
        /// The runner's name.
        runner: String,
    },
    /// Never started, and why (a dependency failed, a secret is gone).
    /// Fails its run: something it depended on did not happen.
    Skipped {
        /// Completes "skipped because …".
        reason: String,
    },
    /// Never started because its `if:` condition was false (`branch ==
    /// 'main'` on a feature branch, `failure()` when nothing failed). Not
    /// green — no work happened — but it does not fail its run either:
    /// not running was the pipeline's intent.
    ConditionFalse {
        /// The facts that made it false: `branch is 'feature'`.
        why: String,
    },
}

/// Why a shard, step or run failed.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// The command's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// What failed, in words (empty when the exit says it all).
    pub reason: String,
}

impl State {
    /// Ended, one way or another: no transition leaves it.
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            State::Pending | State::Waiting | State::Running | State::AwaitingApproval
        )
    }

    /// Counts as success: only `Succeeded` and `Cached`.
    pub fn is_green(&self) -> bool {
        matches!(self, State::Succeeded | State::Cached)
    }

    /// Does not fail the run it is part of: green, or not run because its
    /// condition said so.
    pub fn passes(&self) -> bool {
        self.is_green() || matches!(self, State::ConditionFalse { .. })
    }

    /// The lower-case name used in summaries and logs.
    pub fn name(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Waiting => "waiting",
            State::Running => "running",
            State::AwaitingApproval => "waiting for approval",
            State::Succeeded => "succeeded",
            State::Cached => "cached",
            State::Failed(_) => "failed",
            State::TimedOut { .. } => "timed out",
            State::Cancelled { .. } => "cancelled",
            State::RunnerLost { .. } => "runner lost",
            State::Skipped { .. } => "skipped",
            State::ConditionFalse { .. } => "skipped (condition false)",
        }
    }

    /// The name as one snake-case word, for machines: metric labels,
    /// where the summary's spaces and parentheses do not belong.
    pub fn label(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Waiting => "waiting",
            State::Running => "running",
            State::AwaitingApproval => "awaiting_approval",
            State::Succeeded => "succeeded",
            State::Cached => "cached",
            State::Failed(_) => "failed",
            State::TimedOut { .. } => "timed_out",
            State::Cancelled { .. } => "cancelled",
            State::RunnerLost { .. } => "runner_lost",
            State::Skipped { .. } => "skipped",
            State::ConditionFalse { .. } => "condition_false",
        }
    }

    /// A failure with only a reason (no exit code or signal).
    pub fn failed(reason: impl Into<String>) -> State {
        State::Failed(Failure {
            reason: reason.into(),
            ..Failure::default()
        })
    }

    /// Rank used to pick the state that represents a group of failed shards:
    /// the most specific evidence wins (a timeout explains more than "failed").
    fn severity(&self) -> u8 {
        match self {
            State::Succeeded | State::Cached | State::ConditionFalse { .. } => 0,
            State::Skipped { .. } => 1,
            State::Cancelled { .. } => 2,
            State::Failed(_) => 3,
            State::RunnerLost { .. } => 4,
            State::TimedOut { .. } => 5,
            State::Pending | State::Waiting | State::Running | State::AwaitingApproval => 6,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Failed(fail) => {
                write!(f, "failed")?;
                if let Some(code) = fail.exit_code {
                    write!(f, " (exit code {code})")?;
                }
                if let Some(sig) = fail.signal {
                    write!(f, " (killed by signal {sig})")?;
                }
                if !fail.reason.is_empty() {
                    write!(f, ": {}", fail.reason)?;
                }
                Ok(())
            }
            State::TimedOut { after_ms } => {
                write!(f, "timed out after {}", fmt_ms(*after_ms))
            }
            State::Cancelled { reason } if !reason.is_empty() => write!(f, "cancelled: {reason}"),
            State::RunnerLost { runner } => write!(f, "runner lost ({runner})"),
            State::Skipped { reason } => write!(f, "skipped because {reason}"),
            State::ConditionFalse { why } => write!(f, "skipped (condition false: {why})"),
            other => f.write_str(other.name()),
        }
    }
}

/// The state of a group (a step's shards, a run's steps) once all members are
/// terminal: green only if every member passes, otherwise the most telling
/// member failure. Members skipped by their condition take no part, so a
/// run whose deploy was skipped on a feature branch is as green as its
/// build; a group of nothing but those is `Succeeded`. `None` while any
/// member is still going.
pub fn combine<'a>(members: impl IntoIterator<Item = &'a State>) -> Option<State> {
    let mut worst: Option<&State> = None;
    // A group is `Cached` only when every member was; one real run makes it
    // `Succeeded`, so a summary never claims work was skipped that ran.
    let mut all_cached = true;
    let mut any = false;
    for s in members {
        if !s.is_terminal() {
            return None;
        }
        if matches!(s, State::ConditionFalse { .. }) {
            continue;
        }
        any = true;
        all_cached &= *s == State::Cached;
        if worst.is_none_or(|w| s.severity() > w.severity()) {
            worst = Some(s);
        }
    }
    Some(match worst {
        Some(w) if !w.is_green() => w.clone(),
        _ if any && all_cached => State::Cached,
        _ => State::Succeeded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_succeeded_is_green() {
        assert!(State::Succeeded.is_green());
        for s in [
            State::Skipped { reason: "x".into() },
            State::failed("x"),
            State::Cancelled {
                reason: String::new(),
            },
            State::TimedOut { after_ms: 1 },
            State::RunnerLost { runner: "r".into() },
        ] {
            assert!(!s.is_green(), "{s} must not be green");
            assert!(s.is_terminal());
        }
    }

    #[test]
    fn combine_waits_for_all_and_prefers_specific_failures() {
        assert_eq!(combine(&[State::Succeeded, State::Running]), None);
        assert_eq!(
            combine(&[State::Succeeded, State::Succeeded]),
            Some(State::Succeeded)
        );
        let timed_out = State::TimedOut { after_ms: 5 };
        assert_eq!(
            combine(&[State::failed("a"), timed_out.clone(), State::Succeeded]),
            Some(timed_out)
        );
        assert_eq!(
            combine(&[State::Succeeded, State::Skipped { reason: "r".into() }]),
            Some(State::Skipped { reason: "r".into() })
        );
        assert_eq!(combine(&[]), Some(State::Succeeded));
    }

    #[test]
    fn cached_is_green_and_a_group_is_cached_only_when_every_member_is() {
        assert!(State::Cached.is_green());
        assert_eq!(
            combine(&[State::Cached, State::Cached]),
            Some(State::Cached)
        );
        assert_eq!(
            combine(&[State::Cached, State::Succeeded]),
            Some(State::Succeeded)
        );
        assert_eq!(
            combine(&[State::Cached, State::failed("x")]),
            Some(State::failed("x"))
        );
    }

    #[test]
    fn a_condition_false_member_passes_without_being_green_or_failing_its_group() {
        let skipped = State::ConditionFalse {
            why: "branch is 'feature'".into(),
        };
        assert!(skipped.is_terminal() && skipped.passes() && !skipped.is_green());
        assert_eq!(
            skipped.to_string(),
            "skipped (condition false: branch is 'feature')"
        );
        assert_eq!(
            combine(&[State::Cached, skipped.clone()]),
            Some(State::Cached)
        );
        assert_eq!(
            combine(&[State::Succeeded, skipped.clone()]),
            Some(State::Succeeded)
        );
        assert_eq!(
            combine(&[skipped.clone(), State::failed("x")]),
            Some(State::failed("x"))
        );
        // A dependency-failed skip is not the same thing: it fails.
        let dep = State::Skipped { reason: "r".into() };
        assert!(!dep.passes());
        assert_eq!(combine(&[skipped, dep.clone()]), Some(dep));
    }

    #[test]
    fn display_names_the_evidence() {
        let s = State::Failed(Failure {
            exit_code: Some(3),
            signal: None,
            reason: String::new(),
        });
        assert_eq!(s.to_string(), "failed (exit code 3)");
        assert_eq!(
            State::TimedOut { after_ms: 2500 }.to_string(),
            "timed out after 2.5s"
        );
        assert_eq!(
            State::Skipped {
                reason: "needs `build`, which failed".into()
            }
            .to_string(),
            "skipped because needs `build`, which failed"
        );
    }
}
