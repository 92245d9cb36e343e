//! Ids that every role derives alike, so no id has to be stored: the
//! run's trace and root span from the run id, each shard attempt's span
//! from (run, step, shard, attempt).

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn span_id(bytes: &[u8]) -> SpanId {
    let mut s = [0u8; 8];
    s.copy_from_slice(&bytes[..8]);
    match SpanId::from_bytes(s) {
        SpanId::INVALID => SpanId::from(1u64),
        id => id,
    }
}

/// The run's trace id and its root span's id.
pub fn run_ids(run_id: &str) -> (TraceId, SpanId) {
    let b = hash(&[b"run", run_id.as_bytes()]);
    let mut t = [0u8; 16];
    t.copy_from_slice(&b[..16]);
    let trace = match TraceId::from_bytes(t) {
        TraceId::INVALID => TraceId::from(1u128),
        id => id,
    };
    (trace, span_id(&b[16..24]))
}

/// The span id of one attempt of a shard (`None`: the step's listing).
pub fn attempt_span_id(run_id: &str, step: &str, shard: Option<u32>, attempt: u32) -> SpanId {
    let shard = shard.map_or(u64::MAX, u64::from).to_le_bytes();
    let b = hash(&[
        b"attempt",
        run_id.as_bytes(),
        step.as_bytes(),
        &shard,
        &attempt.to_le_bytes(),
    ]);
    span_id(&b)
}

fn remote(trace: TraceId, span: SpanId) -> Context {
    let sc = SpanContext::new(
        trace,
        span,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    Context::new().with_remote_span_context(sc)
}

/// The run's root span as a parent.
pub fn run_context(run_id: &str) -> Context {
    let (trace, root) = run_ids(run_id);
    remote(trace, root)
}

/// One shard attempt's span as a parent.
pub fn attempt_context(run_id: &str, step: &str, shard: Option<u32>, attempt: u32) -> Context {
    let (trace, _) = run_ids(run_id);
    remote(trace, attempt_span_id(run_id, step, shard, attempt))
}

/// The W3C `traceparent` of one shard attempt: what its lease carries.
pub fn attempt_traceparent(run_id: &str, step: &str, shard: Option<u32>, attempt: u32) -> String {
    let (trace, _) = run_ids(run_id);
    let span = attempt_span_id(run_id, step, shard, attempt);
    format!("00-{trace}-{span}-01")
}

/// A `traceparent` read back as a parent context; `None` when it is not
/// one (empty, another version, malformed, all-zero ids).
pub fn parse_traceparent(s: &str) -> Option<Context> {
    let mut parts = s.trim().split('-');
    let (v, t, p, f) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |x: &str| {
        x.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if parts.next().is_some()
        || v != "00"
        || t.len() != 32
        || p.len() != 16
        || f.len() != 2
        || !hex(t)
        || !hex(p)
        || !hex(f)
    {
        return None;
    }
    let flags = TraceFlags::new(u8::from_str_radix(f, 16).ok()?) & TraceFlags::SAMPLED;
    let sc = SpanContext::new(
        TraceId::from_hex(t).ok()?,
        SpanId::from_hex(p).ok()?,
        flags,
        true,
        TraceState::default(),
    );
    sc.is_valid()
        .then(|| Context::new().with_remote_span_context(sc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_alike_and_differ_per_run_and_attempt() {
        assert_eq!(run_ids("run-1"), run_ids("run-1"));
        assert_ne!(run_ids("run-1").0, run_ids("run-2").0);
        let a1 = attempt_span_id("run-1", "test", Some(0), 1);
        assert_ne!(a1, attempt_span_id("run-1", "test", Some(0), 2));
        assert_ne!(a1, attempt_span_id("run-1", "test", Some(1), 1));
        assert_ne!(a1, attempt_span_id("run-1", "test", None, 1));
    }

    #[test]
    fn a_traceparent_round_trips_and_junk_is_refused() {
        let tp = attempt_traceparent("run-1", "build", Some(2), 1);
        let cx = parse_traceparent(&tp).expect("parses");
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id(), run_ids("run-1").0);
        assert_eq!(sc.span_id(), attempt_span_id("run-1", "build", Some(2), 1));
        assert!(sc.is_sampled());
        for junk in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            assert!(parse_traceparent(junk).is_none(), "{junk:?}");
        }
    }
}
