//! Approval gates (`approval: { timeout: 24h }`): a step whose turn has
//! come waits as `waiting for approval`, holding no runner slot, until
//! someone approves it (it runs), rejects it (it fails, and the run with
//! it), or its timeout passes (it fails). Who decided, when and why is kept
//! on the step, in the run's notices and in the step's log, and the wait
//! survives a coordinator restart: it is stored with the run.

use std::time::{Duration, Instant, SystemTime};

use buildfleet_model::State;

use super::{clock, Run};
use crate::events::NoticeKind;

/// A step's approval gate once its turn came.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Approval {
    #[serde(with = "clock")]
    pub asked: Instant,
    pub asked_wall: SystemTime,
    pub timeout: Duration,
    pub decision: Option<Decision>,
}

/// Who decided, when, and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub approved: bool,
    pub by: String,
    pub at: SystemTime,
    pub reason: String,
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("run `{run}` has no step `{step}`")]
    UnknownStep { run: String, step: String },
    #[error("step `{step}` is not waiting for approval (it is {state})")]
    NotWaiting { step: String, state: String },
}

impl Run {
    /// The step's turn has come and it needs approval: it waits, and the
    /// scheduler announces it (`approval-needed`).
    pub(super) fn ask_approval(&mut self, step: usize, timeout: Duration, now: Instant) {
        let st = &mut self.steps[step];
        st.approval = Some(Approval {
            asked: now,
            asked_wall: SystemTime::now(),
            timeout,
            decision: None,
        });
        st.state = State::AwaitingApproval;
        for sh in &mut st.shards {
            sh.state = State::AwaitingApproval;
        }
        for shard in 0..self.steps[step].shards.len() {
            self.emit_shard_state(step, shard);
        }
        self.emit_step_state(step);
        let name = self.steps[step].name.clone();
        let line = format!(
            "waiting for approval (times out after {}): `buildfleet approve {} {name}` or `buildfleet reject {} {name} --reason …`",
            humantime::format_duration(timeout),
            self.id,
            self.id
        );
        self.system_log(step, 0, &line);
        self.notice(
            NoticeKind::Approval,
            format!("step {name} is waiting for approval"),
        );
        self.approvals_asked.push(name);
    }

    /// Records a decision on a waiting step: approved, it becomes ready to
    /// lease; rejected, it fails with the reason and the run goes on
    /// deciding its other steps.
    pub fn decide_approval(
        &mut self,
        step_name: &str,
        approved: bool,
        by: &str,
        reason: &str,
        now: Instant,
    ) -> Result<(), ApprovalError> {
        let step = self
            .step_index(step_name)
            .ok_or_else(|| ApprovalError::UnknownStep {
                run: self.id.clone(),
                step: step_name.to_owned(),
            })?;
        let st = &mut self.steps[step];
        if st.state != State::AwaitingApproval {
            return Err(ApprovalError::NotWaiting {
                step: step_name.to_owned(),
                state: st.state.to_string(),
            });
        }
        let by = if by.is_empty() { "someone unnamed" } else { by };
        if let Some(a) = &mut st.approval {
            a.decision = Some(Decision {
                approved,
                by: by.to_owned(),
                at: SystemTime::now(),
                reason: reason.to_owned(),
            });
        }
        let at = humantime::format_rfc3339_seconds(SystemTime::now());
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        let verb = if approved { "approved" } else { "rejected" };
        let line = format!("{verb} by {by} at {at}{why}");
        self.system_log(step, 0, &line);
        self.notice(
            NoticeKind::Approval,
            format!("step {step_name} {verb} by {by} at {at}{why}"),
        );
        self.last_progress = now;
        if approved {
            self.make_ready(step, now);
        } else {
            self.steps[step].listing = super::Listing::Done;
            self.end_step_unrun(step, State::failed(format!("rejected by {by}{why}")));
            self.advance(now);
        }
        Ok(())
    }

    /// Fails the steps whose approval waited past its timeout.
    pub fn expire_approvals(&mut self, now: Instant) {
        for step in 0..self.steps.len() {
            let st = &self.steps[step];
            let Some(a) = &st.approval else { continue };
            if st.state != State::AwaitingApproval || now.duration_since(a.asked) < a.timeout {
                continue;
            }
            let reason = format!(
                "approval timed out after {} (asked at {})",
                humantime::format_duration(a.timeout),
                humantime::format_rfc3339_seconds(a.asked_wall)
            );
            self.system_log(step, 0, &reason);
            let name = self.steps[step].name.clone();
            self.notice(NoticeKind::Approval, format!("step {name}: {reason}"));
            self.steps[step].listing = super::Listing::Done;
            self.end_step_unrun(step, State::failed(reason));
            self.advance(now);
        }
    }

    /// Steps that started waiting for approval since the last call, for
    /// the `approval-needed` notification.
    pub fn take_approvals_asked(&mut self) -> Vec<String> {
        std::mem::take(&mut self.approvals_asked)
    }

    /// Some step waits for a person, not for the fleet: the run is not
    /// stalled.
    pub fn awaits_approval(&self) -> bool {
        self.steps
            .iter()
            .any(|s| s.state == State::AwaitingApproval)
    }
}
