//! Runs survive a coordinator restart: each run's state is stored as a
//! snapshot and its events one by one, in the coordinator's RocksDB (through
//! the same `Kv` as history). After `kill -9` and a restart the runs are
//! read back, shards that were in flight are leased again, and watchers
//! resume from the last event they saw, numbered as before.

use std::sync::Arc;

use crate::db::{DbError, Kv};
use crate::events::Event;
use crate::run::Run;

const RUN: &[u8] = b"run\0";
const EVENT: &[u8] = b"ev\0";

/// The first byte of every stored value. postcard is not self-describing:
/// bytes written by another layout could decode into wrong values, so a
/// value of another format is skipped, with a warning, rather than read.
/// Bump it whenever a stored type changes shape.
/// 2: secret expiries on the run, muted exit codes on shards.
/// 3: the run context (ref, commit, event, actor) in the run's options.
/// 4: the time of each event. Runs of format 3 have the same shape and
/// are read as they are; their events are read without times (0).
const FORMAT: u8 = 4;

/// An event as format 3 stored it: no time.
#[derive(serde::Deserialize)]
struct EventV3 {
    seq: u64,
    kind: crate::events::EventKind,
}

/// Where runs are kept.
#[derive(Clone)]
pub struct RunStore {
    kv: Arc<dyn Kv>,
}

impl std::fmt::Debug for RunStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunStore")
    }
}

fn key(prefix: &[u8], run: &str, seq: Option<u64>) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(run.as_bytes());
    if let Some(seq) = seq {
        k.push(0);
        k.extend_from_slice(&seq.to_be_bytes());
    }
    k
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, DbError> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_allocvec(v).map_err(|e| DbError::Io(format!("cannot encode: {e}")))?);
    Ok(out)
}

/// Why a stored value cannot be read back.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("stored in format {0}, this version reads {FORMAT}")]
    Format(u8),
    #[error("empty value")]
    Empty,
    #[error("{0}")]
    Layout(#[from] postcard::Error),
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Unreadable> {
    match bytes.split_first() {
        Some((&FORMAT | 3, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&other, _)) => Err(Unreadable::Format(other)),
        None => Err(Unreadable::Empty),
    }
}

/// An event of this format, or of format 3 (the only shape change since).
fn decode_event(bytes: &[u8]) -> Result<Event, Unreadable> {
    match bytes.split_first() {
        Some((&3, rest)) => {
            let old: EventV3 = postcard::from_bytes(rest)?;
            Ok(Event {
                seq: old.seq,
                at_unix_ms: 0,
                kind: old.kind,
            })
        }
        _ => decode(bytes),
    }
}

impl RunStore {
    pub fn new(kv: Arc<dyn Kv>) -> RunStore {
        RunStore { kv }
    }

    /// Appends `events` and, if `snapshot`, replaces the run's state: one
    /// atomic write, so a crash never leaves a state ahead of its events.
    pub fn save(&self, run: &Run, events: &[Arc<Event>], snapshot: bool) -> Result<(), DbError> {
        let mut writes = Vec::with_capacity(events.len() + 1);
        for e in events {
            writes.push((key(EVENT, run.id(), Some(e.seq)), encode(e.as_ref())?));
        }
        if snapshot {
            writes.push((key(RUN, run.id(), None), encode(run)?));
        }
        self.kv.put(writes)
    }

    /// Every stored run's state (without events); undecodable entries are
    /// skipped with a warning.
    pub fn load_runs(&self) -> Result<Vec<Run>, DbError> {
        let mut out = Vec::new();
        for (k, v) in self.kv.scan(RUN)? {
            let id = String::from_utf8_lossy(&k[RUN.len()..]).into_owned();
            match decode::<Run>(&v) {
                Ok(run) => out.push(run),
                Err(e) => tracing::warn!(run = %id, error = %e, "stored run unreadable; skipped"),
            }
        }
        Ok(out)
    }

    /// A run's events in order, up to the first gap (numbering stays dense).
    pub fn load_events(&self, run: &str) -> Result<Vec<Event>, DbError> {
        let mut prefix = key(EVENT, run, None);
        prefix.push(0);
        let mut events = Vec::new();
        for (_, v) in self.kv.scan(&prefix)? {
            match decode_event(&v) {
                Ok(e) => events.push(e),
                Err(e) => tracing::warn!(%run, error = %e, "stored event unreadable; skipped"),
            }
        }
        events.sort_by_key(|e| e.seq);
        let dense = events
            .iter()
            .zip(1..)
            .take_while(|(e, n)| e.seq == *n)
            .count();
        events.truncate(dense);
        Ok(events)
    }

    /// Deletes a run and its events.
    pub fn forget(&self, run: &str) -> Result<(), DbError> {
        let mut prefix = key(EVENT, run, None);
        prefix.push(0);
        let mut keys: Vec<Vec<u8>> = self.kv.scan(&prefix)?.into_iter().map(|(k, _)| k).collect();
        keys.push(key(RUN, run, None));
        self.kv.delete(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, Notice, NoticeKind};

    #[derive(serde::Serialize)]
    struct EventV3Out<'a> {
        seq: u64,
        kind: &'a EventKind,
    }

    #[test]
    fn events_stored_before_times_were_kept_read_back_without_a_time() {
        let kind = EventKind::Notice(Notice {
            kind: NoticeKind::Warning,
            text: "kept across the upgrade".into(),
            at: std::time::UNIX_EPOCH,
        });
        let mut old = vec![3u8];
        old.extend(
            postcard::to_allocvec(&EventV3Out {
                seq: 7,
                kind: &kind,
            })
            .unwrap(),
        );
        let e = decode_event(&old).unwrap();
        assert_eq!((e.seq, e.at_unix_ms, &e.kind), (7, 0, &kind));

        let now = Event {
            seq: 8,
            at_unix_ms: 1_700_000_000_000,
            kind: kind.clone(),
        };
        assert_eq!(decode_event(&encode(&now).unwrap()).unwrap(), now);
        assert!(matches!(decode_event(&[2, 0]), Err(Unreadable::Format(2))));
    }
}
