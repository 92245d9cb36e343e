//! What a shard reports: its result, cache reports, test outcomes.

use buildfleet_model::{
    CacheName, CacheOutcome, CacheReport, Digest, MutedCheck, ShardReport, State, TestOutcome,
    TestResult,
};

use super::state::{state, state_from_wire};
use crate::v1 as pb;

/// A cache report as the wire carries it.
pub fn cache_report(r: &CacheReport) -> pb::CacheReport {
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
        cache: r.cache.as_str().to_owned(),
        outcome: outcome as i32,
        key: r.key.clone(),
        detail: r.detail.clone(),
    }
}

/// An unknown outcome from a newer runner is kept as a miss with its
/// number, so the report is shown rather than dropped.
pub fn cache_report_from_wire(r: &pb::CacheReport) -> CacheReport {
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
        cache: CacheName::parse(&r.cache),
        outcome,
        key: r.key.clone(),
        detail,
    }
}

/// A test outcome as the wire carries it.
pub fn test_result(t: &TestResult) -> pb::TestCaseResult {
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
pub fn test_result_from_wire(t: &pb::TestCaseResult) -> TestResult {
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

/// A shard's end as the runner sends it.
pub fn shard_result(lease_id: String, r: &ShardReport) -> pb::ShardResult {
    pb::ShardResult {
        lease_id,
        state: Some(state(&r.state)),
        duration_ms: r.duration_ms,
        last_log_seq: r.last_log_seq,
        cache: r.cache.iter().map(cache_report).collect(),
        tests: r.tests.iter().map(test_result).collect(),
        items: r.items.clone(),
        full_log: r.full_log.map(Into::into),
        log_dropped_bytes: r.log_dropped,
        muted: r.muted.as_ref().map(|m| match m {
            MutedCheck::Met => pb::MutedCheck {
                met: true,
                failure: String::new(),
            },
            MutedCheck::Unmet(why) => pb::MutedCheck {
                met: false,
                failure: why.clone(),
            },
        }),
        outputs: r.outputs.iter().map(super::artifact).collect(),
    }
}

/// A shard result as the coordinator reads it, with what was wrong with
/// it: a malformed result still ends the shard — as a failure saying why
/// — so it never hangs in `running` or passes as green.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The lease it answers.
    pub lease_id: String,
    /// What it reports.
    pub report: ShardReport,
    /// What was malformed, for the coordinator's log.
    pub malformed: Option<String>,
}

/// Reads a shard result; see [`Received`].
pub fn shard_report_from_wire(r: pb::ShardResult) -> Received {
    let checked = match r.state.as_ref().map(state_from_wire) {
        Some(Ok(s)) if s.is_terminal() => Ok(s),
        Some(Ok(s)) => Err(format!("a non-terminal result state `{}`", s.name())),
        Some(Err(e)) => Err(format!("an invalid result: {e}")),
        None => Err("a result without a state".to_string()),
    };
    let (mut state, mut malformed) = match checked {
        Ok(s) => (s, None),
        Err(what) => (State::failed(format!("runner reported {what}")), Some(what)),
    };
    let full_log = match r.full_log.as_ref().map(Digest::try_from) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            malformed.get_or_insert_with(|| format!("an invalid full-log digest: {e}"));
            None
        }
        None => None,
    };
    let muted = r.muted.as_ref().map(|m| match (m.met, m.failure.as_str()) {
        (true, _) => MutedCheck::Met,
        // An unmet contract always says why, even from a runner that did not.
        (false, "") => MutedCheck::Unmet(
            "the runner found the step's contract unmet without saying why".into(),
        ),
        (false, why) => MutedCheck::Unmet(why.to_owned()),
    });
    // An unreadable output is a failed shard: its dependants were
    // promised it.
    let outputs = match super::artifacts_from_wire(&r.outputs) {
        Ok(list) => list,
        Err(e) => {
            let what = format!("an unreadable output: {e}");
            state = State::failed(format!("runner reported {what}"));
            malformed.get_or_insert(what);
            Vec::new()
        }
    };
    Received {
        lease_id: r.lease_id,
        report: ShardReport {
            outputs,
            state,
            duration_ms: r.duration_ms,
            last_log_seq: r.last_log_seq,
            cache: r.cache.iter().map(cache_report_from_wire).collect(),
            tests: r.tests.iter().map(test_result_from_wire).collect(),
            items: r.items,
            full_log,
            log_dropped: r.log_dropped_bytes,
            muted,
        },
        malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_the_wire() {
        let report = ShardReport {
            cache: vec![CacheReport {
                cache: CacheName::Step,
                outcome: CacheOutcome::Disabled,
                key: String::new(),
                detail: "secrets".into(),
            }],
            tests: vec![TestResult {
                id: "t::a".into(),
                outcome: TestOutcome::Failed,
                duration_ms: 3,
                message: "boom".into(),
                report: "junit.xml".into(),
                flaky: false,
                quarantined: true,
                attempt: 1,
            }],
            full_log: Some(Digest::of(b"log")),
            muted: Some(MutedCheck::Unmet("missing output dist".into())),
            ..ShardReport::of(State::failed("x"), 12)
        };
        let back = shard_report_from_wire(shard_result("l1".into(), &report));
        assert_eq!(back.lease_id, "l1");
        assert_eq!(back.malformed, None);
        assert_eq!(back.report, report);
    }

    #[test]
    fn a_malformed_result_fails_the_shard_and_says_why() {
        let mut wire = shard_result("l1".into(), &ShardReport::of(State::Running, 1));
        let back = shard_report_from_wire(wire.clone());
        assert!(back.report.state.is_terminal() && !back.report.state.is_green());
        assert!(back.malformed.unwrap().contains("non-terminal"));
        wire.state = None;
        let back = shard_report_from_wire(wire);
        assert!(!back.report.state.is_green());
        let unknown = pb::CacheReport {
            cache: "deps".into(),
            outcome: 42,
            key: String::new(),
            detail: String::new(),
        };
        let read = cache_report_from_wire(&unknown);
        assert_eq!(read.outcome, CacheOutcome::Miss);
        assert!(read.detail.contains("42"));
    }
}
