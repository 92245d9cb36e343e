//! Domain ⇄ wire conversions. The only place coordinator logic meets prost.

use buildfleet_proto::v1 as pb;

use crate::cache_report::{CacheOutcome, CacheReport};
use crate::events::{Event, EventKind, LogStream};
use crate::run::{InputRoot, Run};
use crate::scheduler::{LeaseSpec, RunnerView};
use crate::state::{Failure, State};
use crate::test_result::{TestOutcome, TestResult};

pub fn state_to_pb(s: &State) -> pb::State {
    use pb::StateKind as K;
    let timeout_ms = match s {
        State::TimedOut { after_ms } => Some(*after_ms),
        _ => None,
    };
    let (kind, exit_code, signal, reason) = match s {
        State::Pending => (K::Pending, None, None, String::new()),
        State::Waiting => (K::Waiting, None, None, String::new()),
        State::Running => (K::Running, None, None, String::new()),
        State::Succeeded => (K::Succeeded, None, None, String::new()),
        State::Cached => (K::Cached, None, None, String::new()),
        State::Failed(f) => (K::Failed, f.exit_code, f.signal, f.reason.clone()),
        State::TimedOut { .. } => (K::TimedOut, None, None, String::new()),
        State::Cancelled { reason } => (K::Cancelled, None, None, reason.clone()),
        State::RunnerLost { runner } => (K::RunnerLost, None, None, runner.clone()),
        State::Skipped { reason } => (K::Skipped, None, None, reason.clone()),
    };
    pb::State {
        kind: kind as i32,
        exit_code,
        signal,
        reason,
        timeout_ms,
    }
}

/// Wire → domain. An unknown or unspecified kind is an error, never a default.
pub fn state_from_pb(s: &pb::State) -> Result<State, String> {
    use pb::StateKind as K;
    let kind = K::try_from(s.kind).map_err(|_| format!("unknown state kind {}", s.kind))?;
    Ok(match kind {
        K::Unspecified => return Err("state kind is unspecified".into()),
        K::Pending => State::Pending,
        K::Waiting => State::Waiting,
        K::Running => State::Running,
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
                .ok_or("a timed-out state must say its timeout")?,
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
    })
}

pub fn stream_to_pb(s: LogStream) -> pb::LogStream {
    match s {
        LogStream::Stdout => pb::LogStream::Stdout,
        LogStream::Stderr => pb::LogStream::Stderr,
        LogStream::System => pb::LogStream::System,
    }
}

pub fn stream_from_pb(s: i32) -> LogStream {
    match pb::LogStream::try_from(s) {
        Ok(pb::LogStream::Stdout) => LogStream::Stdout,
        Ok(pb::LogStream::Stderr) => LogStream::Stderr,
        _ => LogStream::System,
    }
}

pub fn event_to_pb(e: &Event) -> pb::RunEvent {
    let event = match &e.kind {
        EventKind::State(c) => pb::run_event::Event::State(pb::StateChange {
            step: c.step.clone().unwrap_or_default(),
            shard: c.shard,
            state: Some(state_to_pb(&c.state)),
            runner: c.runner.clone().unwrap_or_default(),
            duration_ms: c.duration_ms,
            cache: c.cache.iter().map(cache_report_to_pb).collect(),
        }),
        EventKind::Notice(n) => pb::run_event::Event::Notice(notice_to_pb(n)),
        EventKind::Log(l) => pb::run_event::Event::Log(pb::LogChunk {
            step: l.step.clone(),
            shard: l.shard,
            stream: stream_to_pb(l.stream) as i32,
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
        run_id: run.id.clone(),
        state: Some(state_to_pb(&run.state)),
        steps: run
            .steps
            .iter()
            .map(|s| pb::StepStatus {
                name: s.name.clone(),
                stage: s.stage.clone(),
                state: Some(state_to_pb(&s.state)),
                shards: s
                    .shards
                    .iter()
                    .map(|sh| pb::ShardStatus {
                        index: sh.index,
                        state: Some(state_to_pb(&sh.state)),
                        runner: sh.runner.clone().unwrap_or_default(),
                        duration_ms: sh.duration_ms,
                        attempt: sh.attempt,
                        cache: sh.cache.iter().map(cache_report_to_pb).collect(),
                        tests: sh.tests.iter().map(test_to_pb).collect(),
                        items: sh.attempt_items.len() as u32,
                        predicted_ms: sh.predicted.as_millis() as u64,
                        full_log: sh.full_log.as_ref().map(|d| pb::Digest {
                            hash: d.hash.clone(),
                            size_bytes: d.size_bytes as i64,
                        }),
                        log_dropped_bytes: sh.log_dropped,
                        muted_exit_code: sh.muted_exit.unwrap_or(0),
                    })
                    .collect(),
                split: s.split.as_ref().map(|i| pb::SplitStatus {
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
        created_unix_ms: unix_ms(run.created_wall),
        duration_ms: run.duration_ms,
        pipeline_path: run.pipeline_path.clone(),
        notices: run.notices().map(notice_to_pb).collect(),
    }
}

pub fn lease_to_pb(l: LeaseSpec) -> pb::Lease {
    pb::Lease {
        lease_id: l.lease_id,
        run_id: l.run_id,
        step: l.step,
        shard_index: l.shard_index,
        shard_count: l.shard_count,
        command: l.command,
        env: l.env.into_iter().collect(),
        input_root: Some(pb::Digest {
            hash: l.input_root.hash,
            size_bytes: l.input_root.size_bytes as i64,
        }),
        timeout_ms: l.timeout.map_or(0, |t| t.as_millis() as u64),
        outputs: l.outputs,
        caches: l
            .caches
            .into_iter()
            .map(|c| pb::CacheSpec {
                name: c.name,
                key_files: c.key_files,
                paths: c.paths,
                version: c.version.unwrap_or_default(),
                restore: c.restore,
            })
            .collect(),
        use_action_cache: l.action_cache_off.is_none(),
        action_cache_off: l.action_cache_off.unwrap_or_default(),
        quarantine: l.quarantine,
        memory_bytes: l.resources.memory_bytes.unwrap_or(0),
        cpu_millis: l.resources.cpu_millis.unwrap_or(0),
        inputs: l.inputs,
        project: l.project,
        reports: l.reports,
        items: l.items,
        list_items: l.list_items,
        attempt: l.attempt,
        verify: l.verify,
        secrets: l.secrets.into_iter().collect(),
        log_cap_bytes: l.log_cap,
    }
}

pub fn test_to_pb(t: &TestResult) -> pb::TestCaseResult {
    let outcome = match t.outcome {
        TestOutcome::Passed => pb::TestOutcome::Passed,
        TestOutcome::Failed => pb::TestOutcome::Failed,
        TestOutcome::Error => pb::TestOutcome::Error,
        TestOutcome::Skipped => pb::TestOutcome::Skipped,
    };
    pb::TestCaseResult {
        id: t.id.clone(),
        outcome: outcome as i32,
        duration_ms: t.duration_ms,
        message: t.message.clone(),
        report: t.report.clone(),
        flaky: t.flaky,
        quarantined: t.quarantined,
        attempt: t.attempt,
    }
}

/// An unknown outcome is kept as an error with its number, never dropped
/// and never counted as a pass.
pub fn test_from_pb(t: &pb::TestCaseResult) -> TestResult {
    let (outcome, message) = match pb::TestOutcome::try_from(t.outcome) {
        Ok(pb::TestOutcome::Passed) => (TestOutcome::Passed, t.message.clone()),
        Ok(pb::TestOutcome::Failed) => (TestOutcome::Failed, t.message.clone()),
        Ok(pb::TestOutcome::Error) => (TestOutcome::Error, t.message.clone()),
        Ok(pb::TestOutcome::Skipped) => (TestOutcome::Skipped, t.message.clone()),
        Ok(pb::TestOutcome::Unspecified) | Err(_) => (
            TestOutcome::Error,
            format!("unknown test outcome {}; {}", t.outcome, t.message),
        ),
    };
    TestResult {
        id: t.id.clone(),
        outcome,
        duration_ms: t.duration_ms,
        message,
        report: t.report.clone(),
        flaky: t.flaky,
        quarantined: t.quarantined,
        attempt: t.attempt,
    }
}

pub fn cache_report_to_pb(r: &CacheReport) -> pb::CacheReport {
    use pb::CacheOutcome as O;
    let outcome = match r.outcome {
        CacheOutcome::Hit => O::Hit,
        CacheOutcome::Fallback => O::Fallback,
        CacheOutcome::Miss => O::Miss,
        CacheOutcome::SaveFailed => O::SaveFailed,
        CacheOutcome::Saved => O::Saved,
        CacheOutcome::Disabled => O::Disabled,
    };
    pb::CacheReport {
        cache: r.cache.clone(),
        outcome: outcome as i32,
        key: r.key.clone(),
        detail: r.detail.clone(),
    }
}

/// An unknown outcome from a newer runner is kept as a miss with its number,
/// so the report is shown rather than dropped.
pub fn cache_report_from_pb(r: &pb::CacheReport) -> CacheReport {
    use pb::CacheOutcome as O;
    let (outcome, note) = match O::try_from(r.outcome) {
        Ok(O::Hit) => (CacheOutcome::Hit, None),
        Ok(O::Fallback) => (CacheOutcome::Fallback, None),
        Ok(O::Miss) => (CacheOutcome::Miss, None),
        Ok(O::SaveFailed) => (CacheOutcome::SaveFailed, None),
        Ok(O::Saved) => (CacheOutcome::Saved, None),
        Ok(O::Disabled) => (CacheOutcome::Disabled, None),
        Ok(O::Unspecified) | Err(_) => (
            CacheOutcome::Miss,
            Some(format!("unknown cache outcome {}", r.outcome)),
        ),
    };
    let detail = match note {
        Some(n) if r.detail.is_empty() => n,
        Some(n) => format!("{n}; {}", r.detail),
        None => r.detail.clone(),
    };
    CacheReport {
        cache: r.cache.clone(),
        outcome,
        key: r.key.clone(),
        detail,
    }
}

/// An unmet contract always says why, even from a runner that did not.
pub fn contract_from_pb(m: &pb::MutedCheck) -> crate::run::verdict::Contract {
    use crate::run::verdict::Contract;
    match (m.met, m.failure.as_str()) {
        (true, _) => Contract::Met,
        (false, "") => {
            Contract::Unmet("the runner found the step's contract unmet without saying why".into())
        }
        (false, why) => Contract::Unmet(why.to_owned()),
    }
}

pub fn input_root_from_pb(d: Option<pb::Digest>) -> Result<InputRoot, String> {
    let d = d.ok_or("input_root is required: upload the working tree first")?;
    if d.hash.len() != 64 || !d.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("input_root hash `{}` is not 64 hex digits", d.hash));
    }
    if d.size_bytes < 0 {
        return Err(format!("input_root size {} is negative", d.size_bytes));
    }
    Ok(InputRoot {
        hash: d.hash.to_ascii_lowercase(),
        size_bytes: d.size_bytes as u64,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_survive_the_wire() {
        let states = [
            State::Pending,
            State::Waiting,
            State::Running,
            State::Succeeded,
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
        ];
        for s in states {
            assert_eq!(state_from_pb(&state_to_pb(&s)).unwrap(), s);
        }
        assert!(state_from_pb(&pb::State::default()).is_err());
    }

    #[test]
    fn input_root_is_checked() {
        assert!(input_root_from_pb(None).is_err());
        let bad = pb::Digest {
            hash: "abc".into(),
            size_bytes: 1,
        };
        assert!(input_root_from_pb(Some(bad))
            .unwrap_err()
            .contains("64 hex"));
        let good = pb::Digest {
            hash: "A".repeat(64),
            size_bytes: 3,
        };
        assert_eq!(input_root_from_pb(Some(good)).unwrap().hash, "a".repeat(64));
    }
}
