//! What earlier runs taught: per-item durations (for balancing split steps)
//! and flaky tests, keyed by project and step.
//!
//! Plain Rust over the coordinator's database (`crate::db`); the
//! scheduler is tested against its in-memory table.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::db::DbError;
use crate::db::{Kv, MemoryKv};

/// Weight of the newest sample in an item's running estimate: recent runs
/// matter most (tests change), one noisy run does not dominate.
const NEWEST_WEIGHT: f64 = 0.5;

/// Value layout version, the first byte of every stored value.
const FORMAT: u8 = 1;

/// What history knows of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemHistory {
    pub estimate: Duration,
    pub samples: u32,
}

/// Durations and flaky marks, behind whichever table the coordinator opened.
#[derive(Clone)]
pub struct History {
    kv: Arc<dyn Kv>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("History")
    }
}

impl Default for History {
    fn default() -> Self {
        History::new(Arc::new(MemoryKv::default()))
    }
}

/// `kind \0 project \0 step \0`: project and step names cannot hold NUL.
fn prefix(kind: &str, project: &str, step: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(kind.len() + project.len() + step.len() + 3);
    for part in [kind, project, step] {
        key.extend_from_slice(part.as_bytes());
        key.push(0);
    }
    key
}

fn encode(a: u64, b: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(13);
    v.push(FORMAT);
    v.extend_from_slice(&a.to_le_bytes());
    v.extend_from_slice(&b.to_le_bytes());
    v
}

fn decode(v: &[u8]) -> Option<(u64, u32)> {
    if v.len() != 13 || v[0] != FORMAT {
        return None;
    }
    let a = u64::from_le_bytes(v[1..9].try_into().ok()?);
    let b = u32::from_le_bytes(v[9..13].try_into().ok()?);
    Some((a, b))
}

impl History {
    pub fn new(kv: Arc<dyn Kv>) -> History {
        History { kv }
    }

    /// Every item of `step` with a known duration.
    pub fn durations(
        &self,
        project: &str,
        step: &str,
    ) -> Result<BTreeMap<String, ItemHistory>, DbError> {
        let p = prefix("d", project, step);
        let mut out = BTreeMap::new();
        for (key, value) in self.kv.scan(&p)? {
            let Some((micros, samples)) = decode(&value) else {
                tracing::warn!(step, "unreadable duration history entry skipped");
                continue;
            };
            let item = String::from_utf8_lossy(&key[p.len()..]).into_owned();
            let estimate = Duration::from_micros(micros);
            out.insert(item, ItemHistory { estimate, samples });
        }
        Ok(out)
    }

    /// Folds new measurements into each item's running estimate.
    pub fn record_durations(
        &self,
        project: &str,
        step: &str,
        samples: &[(String, Duration)],
    ) -> Result<(), DbError> {
        if samples.is_empty() {
            return Ok(());
        }
        let p = prefix("d", project, step);
        let mut writes = Vec::with_capacity(samples.len());
        for (item, took) in samples {
            let mut key = p.clone();
            key.extend_from_slice(item.as_bytes());
            let sample = took.as_micros() as f64;
            let (micros, count) = match self.kv.get(&key)?.as_deref().and_then(decode) {
                Some((old, n)) => (
                    (old as f64 * (1.0 - NEWEST_WEIGHT) + sample * NEWEST_WEIGHT) as u64,
                    n.saturating_add(1),
                ),
                None => (sample as u64, 1),
            };
            writes.push((key, encode(micros, count)));
        }
        self.kv.put(writes)
    }

    /// Counts one more flaky result for each test.
    pub fn record_flaky(
        &self,
        project: &str,
        step: &str,
        tests: &[String],
        unix_secs: u64,
    ) -> Result<(), DbError> {
        let p = prefix("f", project, step);
        let mut writes = Vec::new();
        for test in tests {
            let mut key = p.clone();
            key.extend_from_slice(test.as_bytes());
            let before = self
                .kv
                .get(&key)?
                .as_deref()
                .and_then(decode)
                .map_or(0, |(_, n)| n);
            writes.push((key, encode(unix_secs, before.saturating_add(1))));
        }
        self.kv.put(writes)
    }

    /// How many times each test was flaky before (0 if never).
    pub fn flaky_count(&self, project: &str, step: &str, test: &str) -> Result<u32, DbError> {
        let mut key = prefix("f", project, step);
        key.extend_from_slice(test.as_bytes());
        Ok(self
            .kv
            .get(&key)?
            .as_deref()
            .and_then(decode)
            .map_or(0, |(_, n)| n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::RocksKv;

    fn tables() -> Vec<(History, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let rocks = RocksKv::open(&dir.path().join("history")).unwrap();
        vec![
            (History::default(), None),
            (History::new(Arc::new(rocks)), Some(dir)),
        ]
    }

    #[test]
    fn durations_are_kept_per_project_and_step_and_smoothed() {
        for (h, _dir) in tables() {
            let ms = Duration::from_millis;
            h.record_durations("p", "t", &[("a".into(), ms(100)), ("b".into(), ms(40))])
                .unwrap();
            h.record_durations("p", "t", &[("a".into(), ms(300))])
                .unwrap();
            h.record_durations("p", "t2", &[("a".into(), ms(7))])
                .unwrap();
            h.record_durations("q", "t", &[("z".into(), ms(9))])
                .unwrap();
            let d = h.durations("p", "t").unwrap();
            assert_eq!(d.len(), 2, "{d:?}");
            assert_eq!(
                d["a"],
                ItemHistory {
                    estimate: ms(200),
                    samples: 2
                }
            );
            assert_eq!(
                d["b"],
                ItemHistory {
                    estimate: ms(40),
                    samples: 1
                }
            );
            assert_eq!(h.durations("p", "t2").unwrap()["a"].estimate, ms(7));
            assert!(h.durations("p", "none").unwrap().is_empty());
        }
    }

    #[test]
    fn flaky_marks_count_up() {
        for (h, _dir) in tables() {
            assert_eq!(h.flaky_count("p", "t", "x::y").unwrap(), 0);
            h.record_flaky("p", "t", &["x::y".into()], 1).unwrap();
            h.record_flaky("p", "t", &["x::y".into()], 2).unwrap();
            assert_eq!(h.flaky_count("p", "t", "x::y").unwrap(), 2);
            assert_eq!(h.flaky_count("p", "u", "x::y").unwrap(), 0);
        }
    }

    #[test]
    fn rocks_history_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history");
        {
            let h = History::new(Arc::new(RocksKv::open(&path).unwrap()));
            h.record_durations("p", "t", &[("a".into(), Duration::from_millis(5))])
                .unwrap();
        }
        let h = History::new(Arc::new(RocksKv::open(&path).unwrap()));
        assert_eq!(
            h.durations("p", "t").unwrap()["a"].estimate,
            Duration::from_millis(5)
        );
    }
}
