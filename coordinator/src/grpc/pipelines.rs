//! The Pipelines service: thin handlers that unwrap, call the hub, convert.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use buildfleet_proto::v1 as pb;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use crate::error::CoordinatorError;
use crate::hub::Hub;
use buildfleet_proto::convert as wire;
use buildfleet_trust::{Caller, Role};

pub struct PipelinesService {
    pub hub: Arc<Hub>,
}

impl PipelinesService {
    /// The guard let the caller's role in; this checks the run is theirs
    /// (a client's own runs; an admin's any).
    fn check_run(&self, caller: &Caller, run_id: &str, what: &'static str) -> Result<(), Status> {
        let owner = self
            .hub
            .read(|s| s.run(run_id).map(|r| r.owner().map(str::to_owned)))?;
        if caller.may_act_on(owner.as_deref()) {
            return Ok(());
        }
        Err(CoordinatorError::NotYours {
            caller: caller.name.clone(),
            run: run_id.to_owned(),
            what,
        }
        .into())
    }
}

/// Who a decision or re-run is recorded as: a client as its token's name
/// (a claimed name proves nothing), with the claim beside it; an admin
/// may act for someone (a chat bot approving for the person who asked),
/// so its claim stands.
fn actor_of(caller: &Caller, claimed: &str) -> String {
    match caller.owner() {
        None => claimed.to_owned(),
        Some(_) if caller.role == Role::Admin && !claimed.is_empty() => claimed.to_owned(),
        Some(name) if claimed.is_empty() || claimed == name => name.to_owned(),
        Some(name) => format!("{name} (as {claimed})"),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::pipelines_server::Pipelines for PipelinesService {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = Caller::of(&req)?;
        let submission = wire::submission_from_wire(req.into_inner())
            .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
        let submitted = self.hub.submit_as(submission, caller.owner())?;
        Ok(Response::new(pb::SubmitResponse {
            run_id: submitted.run_id,
            deduplicated: submitted.deduplicated,
        }))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        self.check_run(&caller, &req.run_id, "watch")?;
        let events = self.hub.watch(req.run_id, req.after_seq)?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|e| match e {
            Ok(e) => Ok(wire::event(&e)),
            Err(e) => Err(Status::from(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::RunStatus>, Status> {
        let caller = Caller::of(&req)?;
        let id = req.into_inner().run_id;
        self.check_run(&caller, &id, "read")?;
        let status = self
            .hub
            .read(|s| s.run(&id).map(|r| wire::run_status(&r.status())))?;
        Ok(Response::new(status))
    }

    async fn cancel(
        &self,
        req: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        self.check_run(&caller, &req.run_id, "cancel")?;
        let (was_running, orders) = self
            .hub
            .with(|s| s.cancel(&req.run_id, &req.reason, Instant::now()))?;
        self.hub.cancel_leases(orders);
        Ok(Response::new(pb::CancelResponse { was_running }))
    }

    async fn decide(
        &self,
        req: Request<pb::DecideRequest>,
    ) -> Result<Response<pb::DecideResponse>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        if self.hub.config.approvals_by_admins_only && caller.role != Role::Admin {
            return Err(CoordinatorError::ApprovalsForAdmins(caller.name).into());
        }
        self.check_run(&caller, &req.run_id, "decide approvals of")?;
        let actor = actor_of(&caller, &req.actor);
        self.hub.with(|s| {
            s.decide_approval(
                &req.run_id,
                &req.step,
                req.approve,
                &actor,
                &req.reason,
                Instant::now(),
            )
        })?;
        // An approved step is ready now; a rejection may make `failure()`
        // steps ready: lease them at once, not at the next tick.
        self.hub.dispatch();
        Ok(Response::new(pb::DecideResponse {}))
    }

    async fn rerun(
        &self,
        req: Request<pb::RerunRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        self.check_run(&caller, &req.run_id, "re-run a step of")?;
        let actor = actor_of(&caller, &req.actor);
        let submitted = self
            .hub
            .rerun(&req.run_id, &req.step, &actor, caller.owner())?;
        Ok(Response::new(pb::SubmitResponse {
            run_id: submitted.run_id,
            deduplicated: submitted.deduplicated,
        }))
    }

    async fn list_runners(
        &self,
        _req: Request<pb::ListRunnersRequest>,
    ) -> Result<Response<pb::ListRunnersResponse>, Status> {
        let runners = self.hub.read(|s| s.runners());
        Ok(Response::new(pb::ListRunnersResponse {
            runners: runners.iter().map(convert::runner_to_pb).collect(),
        }))
    }
}
