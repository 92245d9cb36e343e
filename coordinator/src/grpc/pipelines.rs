//! The Pipelines service: thin handlers that unwrap, call the hub, convert.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use buildfleet_proto::v1 as pb;
use futures::Stream;
use tonic::{Request, Response, Status};
use tracing::{info_span, Instrument};

use super::convert;
use crate::error::CoordinatorError;
use crate::hub::Hub;
use crate::pipeline;
use crate::run::RunOptions;

/// Events sent per lock acquisition while streaming history to a watcher.
const WATCH_PAGE: usize = 512;

pub struct PipelinesService {
    pub hub: Arc<Hub>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::pipelines_server::Pipelines for PipelinesService {
    async fn submit(
        &self,
        req: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        if self.hub.is_closing() {
            return Err(Status::unavailable(
                "the coordinator is shutting down; submit again (with the same idempotency key) when it is back",
            ));
        }
        let req = req.into_inner();
        let path = if req.pipeline_path.is_empty() {
            "buildfleet.yaml".to_string()
        } else {
            req.pipeline_path
        };
        let pipeline =
            pipeline::parse(&path, &req.pipeline_yaml).map_err(CoordinatorError::from)?;
        let root = buildfleet_proto::convert::input_root(req.input_root.as_ref())
            .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
        let key = Some(req.idempotency_key).filter(|k| !k.is_empty());
        let split_items: std::collections::BTreeMap<String, Vec<String>> = req
            .split_items
            .into_iter()
            .map(|(step, items)| (step, items.items))
            .collect();
        for step in pipeline.steps() {
            if let Some(crate::pipeline::Split::Files(glob)) = &step.split {
                if split_items.get(&step.name).is_none_or(|i| i.is_empty()) {
                    return Err(CoordinatorError::BadRequest(format!(
                        "step `{}` splits by files, but `{glob}` matches no files in the submitted inputs",
                        step.name
                    ))
                    .into());
                }
            }
        }
        // Secrets are read now, outside the scheduler's lock; a run that
        // needs an unusable one still becomes a run, failed before any step.
        let needed: std::collections::BTreeSet<String> = pipeline
            .steps()
            .flat_map(|s| s.secrets.iter().cloned())
            .collect();
        let resolved = self
            .hub
            .config
            .secrets
            .resolve(&needed, std::time::SystemTime::now());
        let secret_problems = pipeline
            .steps()
            .filter_map(|s| {
                let why: Vec<&str> = s
                    .secrets
                    .iter()
                    .filter_map(|n| resolved.unusable.get(n).map(String::as_str))
                    .collect();
                (!why.is_empty()).then(|| (s.name.clone(), why.join("; ")))
            })
            .collect();
        let options = RunOptions {
            no_cache: req.no_cache,
            project: req.project,
            split_items,
            quarantine: req
                .quarantine
                .into_iter()
                .map(|id| id.trim().to_owned())
                .filter(|id| !id.is_empty())
                .collect(),
            fail_on_flaky: req.fail_on_flaky,
            secret_expiry: resolved
                .expires
                .iter()
                .map(|(name, at)| (name.clone(), crate::run::Expiry::of(*at, Instant::now())))
                .collect(),
            secrets: resolved.values,
            secret_problems,
            warnings: resolved.expiring,
            log_cap: self.hub.config.log_cap,
            pipeline_yaml: req.pipeline_yaml.clone(),
            idempotency_key: key.clone(),
        };
        let submitted = self
            .hub
            .with(|s| s.submit(pipeline, path, root, options, key, Instant::now()));
        self.hub.dispatch();
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
        let req = req.into_inner();
        let run_id = req.run_id;
        let mut newest = self
            .hub
            .read(|s| s.run(&run_id).map(|r| r.events().subscribe()))?;
        let hub = self.hub.clone();
        let mut closing = self.hub.closing();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let span = info_span!("watch", run = %run_id);
        tokio::spawn(
            async move {
                let mut after = req.after_seq;
                loop {
                    newest.borrow_and_update();
                    let page = hub.read(|s| s.events_after(&run_id, after, WATCH_PAGE));
                    let (events, finished) = match page {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(Status::from(e))).await;
                            return;
                        }
                    };
                    for e in &events {
                        if tx.send(Ok(convert::event_to_pb(e))).await.is_err() {
                            return; // watcher went away
                        }
                        after = e.seq;
                    }
                    if finished {
                        return;
                    }
                    if events.is_empty() {
                        tokio::select! {
                            changed = newest.changed() => if changed.is_err() { return },
                            _ = async {
                                while !closing_now(&closing) {
                                    if closing.changed().await.is_err() {
                                        break;
                                    }
                                }
                            } => {
                                let msg = format!("the coordinator is shutting down; watch again with after_seq {after}");
                                let _ = tx.send(Err(Status::unavailable(msg))).await;
                                return;
                            }
                        }
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::RunStatus>, Status> {
        let id = req.into_inner().run_id;
        let status = self.hub.read(|s| s.run(&id).map(convert::run_to_pb))?;
        Ok(Response::new(status))
    }

    async fn cancel(
        &self,
        req: Request<pb::CancelRequest>,
    ) -> Result<Response<pb::CancelResponse>, Status> {
        let req = req.into_inner();
        let (was_running, orders) = self
            .hub
            .with(|s| s.cancel(&req.run_id, &req.reason, Instant::now()))?;
        self.hub.cancel_leases(orders);
        Ok(Response::new(pb::CancelResponse { was_running }))
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

fn closing_now(rx: &tokio::sync::watch::Receiver<bool>) -> bool {
    *rx.borrow()
}
