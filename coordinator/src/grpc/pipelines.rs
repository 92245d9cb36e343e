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
use buildfleet_trust::Caller;

pub struct PipelinesService {
    pub hub: Arc<Hub>,
}

/// Runs `ListRuns` returns when the caller names no limit.
pub const DEFAULT_RUNS_LISTED: usize = 50;

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
        self.hub.check_run(&caller, &req.run_id, "watch")?;
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
        self.hub.check_run(&caller, &id, "read")?;
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
        self.hub.check_run(&caller, &req.run_id, "cancel")?;
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
        self.hub.decide_as(
            &caller,
            &req.run_id,
            &req.step,
            req.approve,
            &req.actor,
            &req.reason,
        )?;
        Ok(Response::new(pb::DecideResponse {}))
    }

    async fn rerun(
        &self,
        req: Request<pb::RerunRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        self.hub
            .check_run(&caller, &req.run_id, "re-run a step of")?;
        let actor = crate::acting::actor_of(&caller, &req.actor);
        let submitted = self
            .hub
            .rerun(&req.run_id, &req.step, &actor, caller.owner())?;
        Ok(Response::new(pb::SubmitResponse {
            run_id: submitted.run_id,
            deduplicated: submitted.deduplicated,
        }))
    }

    async fn list_runs(
        &self,
        req: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        let caller = Caller::of(&req)?;
        let limit = match req.into_inner().limit {
            0 => DEFAULT_RUNS_LISTED,
            n => n as usize,
        };
        let runs = self
            .hub
            .read(|s| s.newest_runs(limit, |o| caller.may_act_on(o)));
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.iter().map(wire::run_status).collect(),
        }))
    }

    async fn list_runners(
        &self,
        req: Request<pb::ListRunnersRequest>,
    ) -> Result<Response<pb::ListRunnersResponse>, Status> {
        let caller = Caller::of(&req)?;
        let runners = self.hub.read(|s| s.runners());
        Ok(Response::new(pb::ListRunnersResponse {
            runners: runners
                .iter()
                .map(|r| convert::runner_to_pb(r, &caller))
                .collect(),
        }))
    }
}
