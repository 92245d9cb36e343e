//! Runs as snapshots and as event streams, and submissions: what the CLI,
//! CI systems and the dashboard exchange with the coordinator.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use buildfleet_model::{
    Digest, Event, EventKind, LogEntry, Notice, NoticeKind, RunContext, RunStatus, ShardStatus,
    SplitStatus, State, StateChange, StepStatus, Submission,
};

use super::report::{cache_report, cache_report_from_wire, test_result, test_result_from_wire};
use super::state::{log_stream, log_stream_from_wire, state, state_from_wire};
use super::WireError;
use crate::v1 as pb;

/// A state a watcher must show even when it cannot read it: an unreadable
/// state is a failure that says so, never green.
fn shown_state(s: Option<&pb::State>) -> State {
    match s.map(state_from_wire) {
        Some(Ok(s)) => s,
        Some(Err(e)) => State::failed(format!("unreadable state: {e}")),
        None => State::failed("no state"),
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn notice(n: &Notice) -> pb::Notice {
    pb::Notice {
        kind: n.kind.name().to_owned(),
        text: n.text.clone(),
        unix_ms: unix_ms(n.at),
    }
}

/// A kind from a newer coordinator is shown as a warning rather than
/// dropped.
fn notice_from_wire(n: pb::Notice) -> Notice {
    Notice {
        kind: NoticeKind::parse(&n.kind).unwrap_or(NoticeKind::Warning),
        text: n.text,
        at: UNIX_EPOCH + Duration::from_millis(n.unix_ms),
    }
}

fn context(c: &RunContext) -> pb::RunContext {
    pb::RunContext {
        r#ref: c.git_ref.clone(),
        commit: c.commit.clone(),
        event: c.event.clone(),
        actor: c.actor.clone(),
        dirty: c.dirty,
    }
}

/// A run without a context (from an older client) is for nothing known.
fn context_from_wire(c: Option<pb::RunContext>) -> RunContext {
    let c = c.unwrap_or_default();
    RunContext {
        git_ref: c.r#ref,
        commit: c.commit,
        event: c.event,
        actor: c.actor,
        dirty: c.dirty,
    }
}

/// A run's snapshot as the wire carries it.
pub fn run_status(r: &RunStatus) -> pb::RunStatus {
    pb::RunStatus {
        run_id: r.run_id.clone(),
        state: Some(state(&r.state)),
        steps: r.steps.iter().map(step_status).collect(),
        created_unix_ms: r.created_unix_ms,
        duration_ms: r.duration_ms,
        pipeline_path: r.pipeline_path.clone(),
        notices: r.notices.iter().map(notice).collect(),
        context: Some(context(&r.context)),
    }
}

fn step_status(s: &StepStatus) -> pb::StepStatus {
    pb::StepStatus {
        name: s.name.clone(),
        stage: s.stage.clone(),
        state: Some(state(&s.state)),
        shards: s.shards.iter().map(shard_status).collect(),
        split: s.split.as_ref().map(|i| pb::SplitStatus {
            source: i.source.clone(),
            items: i.items,
            without_history: i.without_history,
            estimate_ms: i.estimate_ms,
            predicted_ms: i.predicted_ms,
            shard_choice: i.shard_choice.clone(),
            duplicates: i.duplicates.clone(),
        }),
    }
}

fn shard_status(sh: &ShardStatus) -> pb::ShardStatus {
    pb::ShardStatus {
        index: sh.index,
        state: Some(state(&sh.state)),
        runner: sh.runner.clone().unwrap_or_default(),
        duration_ms: sh.duration_ms,
        attempt: sh.attempt,
        cache: sh.cache.iter().map(cache_report).collect(),
        tests: sh.tests.iter().map(test_result).collect(),
        items: sh.items,
        predicted_ms: sh.predicted_ms,
        full_log: sh.full_log.map(Into::into),
        log_dropped_bytes: sh.log_dropped_bytes,
        muted_exit_code: sh.muted_exit_code.unwrap_or(0),
        outputs: sh.outputs.iter().map(super::artifact).collect(),
    }
}

/// A snapshot as a watcher reads it: states it cannot read show as
/// failures saying so. A malformed log digest is an error, not a shard
/// without a log: "it has no stored log" would be a lie about the shard.
pub fn run_status_from_wire(r: pb::RunStatus) -> Result<RunStatus, WireError> {
    Ok(RunStatus {
        run_id: r.run_id,
        state: shown_state(r.state.as_ref()),
        steps: r
            .steps
            .into_iter()
            .map(step_status_from_wire)
            .collect::<Result<_, _>>()?,
        created_unix_ms: r.created_unix_ms,
        duration_ms: r.duration_ms,
        pipeline_path: r.pipeline_path,
        notices: r.notices.into_iter().map(notice_from_wire).collect(),
        context: context_from_wire(r.context),
    })
}

fn step_status_from_wire(s: pb::StepStatus) -> Result<StepStatus, WireError> {
    Ok(StepStatus {
        state: shown_state(s.state.as_ref()),
        name: s.name,
        stage: s.stage,
        shards: s
            .shards
            .into_iter()
            .map(shard_status_from_wire)
            .collect::<Result<_, _>>()?,
        split: s.split.map(|i| SplitStatus {
            source: i.source,
            items: i.items,
            without_history: i.without_history,
            estimate_ms: i.estimate_ms,
            predicted_ms: i.predicted_ms,
            shard_choice: i.shard_choice,
            duplicates: i.duplicates,
        }),
    })
}

fn shard_status_from_wire(sh: pb::ShardStatus) -> Result<ShardStatus, WireError> {
    let full_log = sh
        .full_log
        .as_ref()
        .map(Digest::try_from)
        .transpose()
        .map_err(|source| WireError::Digest {
            field: "full_log",
            source,
        })?;
    let outputs = super::artifacts_from_wire(&sh.outputs)?;
    Ok(ShardStatus {
        outputs,
        index: sh.index,
        state: shown_state(sh.state.as_ref()),
        runner: Some(sh.runner).filter(|r| !r.is_empty()),
        duration_ms: sh.duration_ms,
        attempt: sh.attempt,
        cache: sh.cache.iter().map(cache_report_from_wire).collect(),
        tests: sh.tests.iter().map(test_result_from_wire).collect(),
        items: sh.items,
        predicted_ms: sh.predicted_ms,
        full_log,
        log_dropped_bytes: sh.log_dropped_bytes,
        muted_exit_code: Some(sh.muted_exit_code).filter(|&c| c != 0),
    })
}

/// An event as the wire carries it.
pub fn event(e: &Event) -> pb::RunEvent {
    let event = match &e.kind {
        EventKind::State(c) => pb::run_event::Event::State(pb::StateChange {
            step: c.step.clone().unwrap_or_default(),
            shard: c.shard,
            state: Some(state(&c.state)),
            runner: c.runner.clone().unwrap_or_default(),
            duration_ms: c.duration_ms,
            cache: c.cache.iter().map(cache_report).collect(),
        }),
        EventKind::Notice(n) => pb::run_event::Event::Notice(notice(n)),
        EventKind::Context(c) => pb::run_event::Event::Context(context(c)),
        EventKind::Log(l) => pb::run_event::Event::Log(pb::LogChunk {
            step: l.step.clone(),
            shard: l.shard,
            stream: log_stream(l.stream) as i32,
            data: l.data.clone(),
        }),
    };
    pb::RunEvent {
        seq: e.seq,
        at_unix_ms: e.at_unix_ms,
        event: Some(event),
    }
}

/// An event as a watcher reads it; one with nothing in it (from a newer
/// coordinator) is `None`, and its number still counts.
pub fn event_from_wire(e: pb::RunEvent) -> (u64, Option<Event>) {
    let kind = e.event.map(|ev| match ev {
        pb::run_event::Event::State(c) => EventKind::State(StateChange {
            step: Some(c.step).filter(|s| !s.is_empty()),
            shard: c.shard,
            state: shown_state(c.state.as_ref()),
            runner: Some(c.runner).filter(|r| !r.is_empty()),
            duration_ms: c.duration_ms,
            cache: c.cache.iter().map(cache_report_from_wire).collect(),
        }),
        pb::run_event::Event::Log(l) => EventKind::Log(LogEntry {
            step: l.step,
            shard: l.shard,
            stream: log_stream_from_wire(l.stream),
            data: l.data,
        }),
        pb::run_event::Event::Notice(n) => EventKind::Notice(notice_from_wire(n)),
        pb::run_event::Event::Context(c) => EventKind::Context(context_from_wire(Some(c))),
    });
    (
        e.seq,
        kind.map(|kind| Event {
            seq: e.seq,
            at_unix_ms: e.at_unix_ms,
            kind,
        }),
    )
}

/// A submission as the wire carries it.
pub fn submission(s: Submission) -> pb::SubmitRequest {
    pb::SubmitRequest {
        pipeline_yaml: s.pipeline_yaml,
        pipeline_path: s.pipeline_path,
        input_root: Some(s.input_root.into()),
        idempotency_key: s.idempotency_key.unwrap_or_default(),
        no_cache: s.no_cache,
        project: s.project,
        split_items: s
            .split_items
            .into_iter()
            .map(|(step, items)| (step, pb::SplitItems { items }))
            .collect(),
        quarantine: s.quarantine,
        fail_on_flaky: s.fail_on_flaky,
        context: Some(context(&s.context)),
        vars: s.vars.into_iter().collect(),
    }
}

/// A submission as the coordinator takes it: the input root is required.
pub fn submission_from_wire(req: pb::SubmitRequest) -> Result<Submission, WireError> {
    Ok(Submission {
        vars: req.vars.into_iter().collect(),
        input_root: super::digest::input_root(req.input_root.as_ref())?,
        pipeline_path: req.pipeline_path,
        pipeline_yaml: req.pipeline_yaml,
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
        context: context_from_wire(req.context),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> RunStatus {
        RunStatus {
            run_id: "r".into(),
            state: State::Running,
            steps: vec![StepStatus {
                name: "test".into(),
                stage: "s".into(),
                state: State::Running,
                shards: vec![ShardStatus {
                    index: 0,
                    state: State::failed("x"),
                    runner: Some("r1".into()),
                    duration_ms: 5,
                    attempt: 2,
                    cache: Vec::new(),
                    tests: Vec::new(),
                    items: 3,
                    predicted_ms: 4,
                    full_log: Some(Digest::of(b"log")),
                    log_dropped_bytes: 7,
                    muted_exit_code: Some(1),
                    outputs: vec![buildfleet_model::Artifact {
                        path: "cov".into(),
                        digest: Digest::of(b"cov"),
                        kind: buildfleet_model::ArtifactKind::Directory,
                    }],
                }],
                split: Some(SplitStatus {
                    source: "files".into(),
                    items: 3,
                    without_history: 1,
                    estimate_ms: 2,
                    predicted_ms: 4,
                    shard_choice: "fixed".into(),
                    duplicates: vec!["a".into()],
                }),
            }],
            created_unix_ms: 1_700_000_000_000,
            duration_ms: 9,
            pipeline_path: "p.yaml".into(),
            notices: vec![Notice {
                kind: NoticeKind::Stalled,
                text: "slow".into(),
                at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            }],
            context: RunContext {
                git_ref: "refs/heads/main".into(),
                commit: "abc".into(),
                event: "push".into(),
                actor: "alice".into(),
                dirty: true,
            },
        }
    }

    #[test]
    fn snapshots_and_events_survive_the_wire() {
        let s = status();
        assert_eq!(run_status_from_wire(run_status(&s)), Ok(s.clone()));
        let e = Event {
            seq: 3,
            at_unix_ms: 1_700_000_000_123,
            kind: EventKind::State(StateChange {
                step: Some("test".into()),
                shard: None,
                state: State::Succeeded,
                runner: None,
                duration_ms: 1,
                cache: Vec::new(),
            }),
        };
        assert_eq!(event_from_wire(event(&e)), (3, Some(e)));
    }

    #[test]
    fn an_unreadable_state_is_shown_as_a_failure_never_green() {
        let mut wire = run_status(&status());
        wire.state = Some(pb::State {
            kind: 77,
            ..pb::State::default()
        });
        let read = run_status_from_wire(wire).unwrap();
        assert!(!read.state.is_green() && read.state.is_terminal());
        assert!(read.state.to_string().contains("unreadable"));
    }

    #[test]
    fn a_malformed_log_digest_is_an_error_not_a_shard_without_a_log() {
        let mut wire = run_status(&status());
        wire.steps[0].shards[0].full_log = Some(pb::Digest {
            hash: "not hex".into(),
            size_bytes: 3,
        });
        let err = run_status_from_wire(wire).unwrap_err();
        assert!(err.to_string().starts_with("full_log:"), "{err}");
    }
}
