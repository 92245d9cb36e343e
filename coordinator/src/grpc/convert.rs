//! Domain ⇄ wire conversions of the coordinator's own messages (runs,
//! events, runners); the shared vocabulary converts through
//! `buildfleet_proto::convert`. The only place coordinator logic meets prost.

use buildfleet_proto::convert::{cache_report, log_stream, state, test_result};
use buildfleet_proto::v1 as pb;

use crate::error::CoordinatorError;
use crate::events::{Event, EventKind};
use crate::run::Run;
use crate::scheduler::RunnerView;
use crate::submission::Submission;

pub fn event_to_pb(e: &Event) -> pb::RunEvent {
    let event = match &e.kind {
        EventKind::State(c) => pb::run_event::Event::State(pb::StateChange {
            step: c.step.clone().unwrap_or_default(),
            shard: c.shard,
            state: Some(state(&c.state)),
            runner: c.runner.clone().unwrap_or_default(),
            duration_ms: c.duration_ms,
            cache: c.cache.iter().map(cache_report).collect(),
        }),
        EventKind::Notice(n) => pb::run_event::Event::Notice(notice_to_pb(n)),
        EventKind::Log(l) => pb::run_event::Event::Log(pb::LogChunk {
            step: l.step.clone(),
            shard: l.shard,
            stream: log_stream(l.stream) as i32,
            data: l.data.clone(),
        }),
    };
    pb::RunEvent {
        seq: e.seq,
        event: Some(event),
    }
}

pub fn notice_to_pb(n: &crate::events::Notice) -> pb::Notice {
    pb::Notice {
        kind: n.kind.name().to_owned(),
        text: n.text.clone(),
        unix_ms: unix_ms(n.at),
    }
}

pub fn run_to_pb(run: &Run) -> pb::RunStatus {
    pb::RunStatus {
        run_id: run.id().to_owned(),
        state: Some(state(run.state())),
        steps: run
            .steps()
            .iter()
            .map(|s| pb::StepStatus {
                name: s.name().to_owned(),
                stage: s.stage().to_owned(),
                state: Some(state(s.state())),
                shards: s
                    .shards()
                    .iter()
                    .map(|sh| pb::ShardStatus {
                        index: sh.index(),
                        state: Some(state(sh.state())),
                        runner: sh.runner().unwrap_or_default().to_owned(),
                        duration_ms: sh.duration_ms(),
                        attempt: sh.attempt(),
                        cache: sh.cache().iter().map(cache_report).collect(),
                        tests: sh.tests().iter().map(test_result).collect(),
                        items: sh.attempt_items().len() as u32,
                        predicted_ms: sh.predicted().as_millis() as u64,
                        full_log: sh.full_log().map(Into::into),
                        log_dropped_bytes: sh.log_dropped(),
                        muted_exit_code: sh.muted_exit().unwrap_or(0),
                    })
                    .collect(),
                split: s.split().as_ref().map(|i| pb::SplitStatus {
                    source: i.source.clone(),
                    items: i.items as u32,
                    without_history: i.without_history as u32,
                    estimate_ms: i.estimate.as_millis() as u64,
                    predicted_ms: i.predicted.as_millis() as u64,
                    shard_choice: i.shard_choice.clone(),
                    duplicates: i.duplicates.clone(),
                }),
            })
            .collect(),
        created_unix_ms: unix_ms(run.created_wall()),
        duration_ms: run.duration_ms(),
        pipeline_path: run.pipeline_path().to_owned(),
        notices: run.notices().map(notice_to_pb).collect(),
    }
}

pub fn runner_to_pb(r: &RunnerView) -> pb::RunnerInfo {
    pb::RunnerInfo {
        runner_id: r.id.clone(),
        name: r.name.clone(),
        labels: r.labels.clone(),
        slots: r.slots,
        busy_slots: r.busy,
        connected_unix_ms: unix_ms(r.connected_at),
        unavailable: r.availability().unwrap_or_default().to_owned(),
        isolation: r.isolation.clone(),
    }
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A submission as the hub takes it; the input root is checked here.
pub fn submission(req: pb::SubmitRequest) -> Result<Submission, CoordinatorError> {
    let input_root = buildfleet_proto::convert::input_root(req.input_root.as_ref())
        .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
    Ok(Submission {
        pipeline_path: req.pipeline_path,
        pipeline_yaml: req.pipeline_yaml,
        input_root,
        idempotency_key: Some(req.idempotency_key).filter(|k| !k.is_empty()),
        split_items: req
            .split_items
            .into_iter()
            .map(|(step, items)| (step, items.items))
            .collect(),
        no_cache: req.no_cache,
        project: req.project,
        quarantine: req.quarantine,
        fail_on_flaky: req.fail_on_flaky,
    })
}
