//! What a caller may do to a run, beyond what its role lets it call: one
//! rule for the gRPC API and the dashboard, so a button never allows what
//! the API refuses.

use std::time::Instant;

use buildfleet_trust::{Caller, Role};

use crate::error::CoordinatorError;
use crate::hub::Hub;

impl Hub {
    /// The caller's role let it in; this checks the run is theirs (a
    /// client's own runs; an admin's any).
    pub fn check_run(
        &self,
        caller: &Caller,
        run_id: &str,
        what: &'static str,
    ) -> Result<(), CoordinatorError> {
        let owner = self.read(|s| s.run(run_id).map(|r| r.owner().map(str::to_owned)))?;
        if caller.may_act_on(owner.as_deref()) {
            return Ok(());
        }
        Err(CoordinatorError::NotYours {
            caller: caller.name.clone(),
            run: run_id.to_owned(),
            what,
        })
    }

    /// Whether `caller` may approve or reject steps of `run_id`.
    pub fn may_decide(&self, caller: &Caller, run_id: &str) -> Result<(), CoordinatorError> {
        if self.config.approvals_by_admins_only && caller.role != Role::Admin {
            return Err(CoordinatorError::ApprovalsForAdmins(caller.name.clone()));
        }
        self.check_run(caller, run_id, "decide approvals of")
    }

    /// Approves or rejects a step waiting for approval, as `caller`
    /// (recorded as [`actor_of`] says), and leases what became ready.
    pub fn decide_as(
        &self,
        caller: &Caller,
        run_id: &str,
        step: &str,
        approve: bool,
        claimed_actor: &str,
        reason: &str,
    ) -> Result<(), CoordinatorError> {
        self.may_decide(caller, run_id)?;
        let actor = actor_of(caller, claimed_actor);
        self.with(|s| s.decide_approval(run_id, step, approve, &actor, reason, Instant::now()))?;
        // An approved step is ready now; a rejection may make `failure()`
        // steps ready: lease them at once, not at the next tick.
        self.dispatch();
        Ok(())
    }
}

/// A runner's lease as `caller` may see it: a shard of another client's
/// run is not named (its run id and step would tell what that team runs).
pub fn lease_as_seen(caller: &Caller, lease: &crate::scheduler::RunnerLease) -> String {
    match caller.may_act_on(lease.owner.as_deref()) {
        true => lease.shard.clone(),
        false => "a shard of another client's run".to_owned(),
    }
}

/// Who a decision or re-run is recorded as: a client as its token's name
/// (a claimed name proves nothing), with the claim beside it; an admin
/// may act for someone (a chat bot approving for the person who asked),
/// so its claim stands.
pub fn actor_of(caller: &Caller, claimed: &str) -> String {
    match caller.owner() {
        None => claimed.to_owned(),
        Some(_) if caller.role == Role::Admin && !claimed.is_empty() => claimed.to_owned(),
        Some(name) if claimed.is_empty() || claimed == name => name.to_owned(),
        Some(name) => format!("{name} (as {claimed})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::RunnerLease;

    fn caller(name: &str, role: Role) -> Caller {
        let grant = buildfleet_trust::Grant {
            name: name.into(),
            role,
            cache_write: false,
        };
        grant.caller()
    }

    #[test]
    fn a_client_sees_its_own_leases_named_and_no_one_elses() {
        let lease = RunnerLease {
            owner: Some("ci".into()),
            shard: "run-1/deploy#0".into(),
        };
        assert_eq!(
            lease_as_seen(&caller("ci", Role::Client), &lease),
            "run-1/deploy#0"
        );
        assert_eq!(
            lease_as_seen(&caller("root", Role::Admin), &lease),
            "run-1/deploy#0"
        );
        let other = lease_as_seen(&caller("other", Role::Client), &lease);
        assert!(
            !other.contains("run-1") && !other.contains("deploy"),
            "{other}"
        );
    }
}
