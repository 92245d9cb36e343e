//! The CLI's gRPC edge: the coordinator's Pipelines service, spoken in
//! `buildfleet_model` types. Everything that renders a run (progress,
//! summary, JUnit, logs) sees only those.

use anyhow::{Context, Result};
use buildfleet_model::{Event, RunStatus, Submission};
use buildfleet_proto::convert;
use buildfleet_proto::v1 as pb;
use buildfleet_trust::{AuthChannel, ClientTrust};
use futures::{Stream, StreamExt};
use pb::pipelines_client::PipelinesClient;

/// A connection presenting `trust`'s token, with Nagle off.
pub async fn channel(url: &str, trust: &ClientTrust) -> Result<AuthChannel> {
    Ok(buildfleet_trust::connect(url, trust).await?)
}

/// The raw client, for tests that speak the protocol itself.
pub async fn pipelines(url: &str, trust: &ClientTrust) -> Result<PipelinesClient<AuthChannel>> {
    Ok(PipelinesClient::new(channel(url, trust).await?)
        .max_decoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(buildfleet_proto::MAX_MESSAGE_BYTES))
}

/// What a submission came to.
pub enum Submitted {
    Run(String),
    /// The coordinator rejected the pipeline file, saying why.
    Invalid(String),
}

/// One watched event: its number, and the event (`None` for a kind this
/// build cannot read; its number still counts for resuming).
pub type Watched = (u64, Option<Event>);

pub struct Coordinator {
    client: PipelinesClient<AuthChannel>,
}

impl Coordinator {
    pub async fn connect(url: &str, trust: &ClientTrust) -> Result<Coordinator> {
        Ok(Coordinator {
            client: pipelines(url, trust).await?,
        })
    }

    pub async fn submit(&mut self, submission: Submission) -> Result<Submitted> {
        match self.client.submit(convert::submission(submission)).await {
            Ok(r) => Ok(Submitted::Run(r.into_inner().run_id)),
            Err(s) if s.code() == tonic::Code::InvalidArgument => {
                Ok(Submitted::Invalid(s.message().to_string()))
            }
            Err(s) => Err(s).context("submitting the pipeline"),
        }
    }

    /// The run's events after `after`, until it ends; an error in the
    /// stream (or opening it) says why it broke, for a resume.
    pub async fn watch(
        &mut self,
        run_id: &str,
        after: u64,
    ) -> Result<impl Stream<Item = Result<Watched>>> {
        let request = pb::WatchRequest {
            run_id: run_id.to_owned(),
            after_seq: after,
        };
        let stream = self.client.watch(request).await?.into_inner();
        Ok(stream.map(|e| Ok(convert::event_from_wire(e?))))
    }

    pub async fn get(&mut self, run_id: &str) -> Result<RunStatus> {
        let request = pb::GetRequest {
            run_id: run_id.to_owned(),
        };
        let status = self.client.get(request).await?.into_inner();
        convert::run_status_from_wire(status)
            .context("the coordinator sent a run this client cannot read")
    }

    /// Approves (`approve`) or rejects a step waiting for approval.
    pub async fn decide(
        &mut self,
        run_id: &str,
        step: &str,
        approve: bool,
        actor: &str,
        reason: &str,
    ) -> Result<(), tonic::Status> {
        let request = pb::DecideRequest {
            run_id: run_id.to_owned(),
            step: step.to_owned(),
            approve,
            reason: reason.to_owned(),
            actor: actor.to_owned(),
        };
        self.client.decide(request).await.map(|_| ())
    }

    /// Starts a re-run of one step of an earlier run; the new run's id.
    pub async fn rerun(
        &mut self,
        run_id: &str,
        step: &str,
        actor: &str,
    ) -> Result<String, tonic::Status> {
        let request = pb::RerunRequest {
            run_id: run_id.to_owned(),
            step: step.to_owned(),
            actor: actor.to_owned(),
        };
        Ok(self.client.rerun(request).await?.into_inner().run_id)
    }

    /// How many runners are connected.
    pub async fn runner_count(&mut self) -> Result<usize> {
        Ok(self.runners().await?.len())
    }

    /// The connected runners, as the coordinator sees them.
    pub async fn runners(&mut self) -> Result<Vec<crate::listing::RunnerRow>> {
        let runners = self.client.list_runners(pb::ListRunnersRequest {}).await?;
        Ok(runners
            .into_inner()
            .runners
            .into_iter()
            .map(runner_row)
            .collect())
    }

    /// Up to `limit` runs, newest first.
    pub async fn runs(&mut self, limit: u32) -> Result<Vec<RunStatus>> {
        let runs = self
            .client
            .list_runs(pb::ListRunsRequest { limit })
            .await?
            .into_inner()
            .runs;
        runs.into_iter()
            .map(|r| {
                convert::run_status_from_wire(r)
                    .context("the coordinator sent a run this client cannot read")
            })
            .collect()
    }
}

fn runner_row(r: pb::RunnerInfo) -> crate::listing::RunnerRow {
    crate::listing::RunnerRow {
        runner_id: r.runner_id,
        name: r.name,
        labels: r.labels,
        slots: r.slots,
        busy_slots: r.busy_slots,
        leases: r.leases,
        disk_free_bytes: r.disk_free_bytes,
        unavailable: r.unavailable,
        last_seen_unix_ms: r.last_seen_unix_ms,
        connected_unix_ms: r.connected_unix_ms,
        isolation: r.isolation,
    }
}
