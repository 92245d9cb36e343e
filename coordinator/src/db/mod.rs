//! The coordinator's database: one key-value store holding duration and
//! flaky history and (when it is on disk) the stored runs. This module owns
//! it — opening, the `Kv` interface both users write through, and the
//! backends: RocksDB on disk (`rocks`, the only code here that knows
//! RocksDB) and a table in memory. One conformance suite holds both to the
//! same contract.

#[cfg(test)]
mod conformance;
mod rocks;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use thiserror::Error;

pub use rocks::RocksKv;

use crate::history::History;
use crate::persist::RunStore;

#[derive(Debug, Error)]
pub enum DbError {
    #[error("coordinator database at {path}: {message}")]
    Open { path: String, message: String },
    #[error("coordinator database: {0}")]
    Io(String),
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What the coordinator needs of a store: point reads, atomic batches,
/// prefix scans in key order, batched deletes.
pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError>;
    /// All writes land together or not at all.
    fn put(&self, writes: Vec<Entry>) -> Result<(), DbError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, DbError>;
    /// Removes these keys together.
    fn delete(&self, keys: Vec<Vec<u8>>) -> Result<(), DbError>;
}

/// For a coordinator started without a data directory, and for tests: the
/// data lives as long as the process.
#[derive(Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self.map.lock().get(key).cloned())
    }

    fn put(&self, writes: Vec<Entry>) -> Result<(), DbError> {
        self.map.lock().extend(writes);
        Ok(())
    }

    fn delete(&self, keys: Vec<Vec<u8>>) -> Result<(), DbError> {
        let mut map = self.map.lock();
        for k in keys {
            map.remove(&k);
        }
        Ok(())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, DbError> {
        Ok(self
            .map
            .lock()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// The opened database.
#[derive(Clone)]
pub struct Db {
    kv: Arc<dyn Kv>,
    /// On disk (RocksDB) rather than in memory.
    durable: bool,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db(durable: {})", self.durable)
    }
}

impl Db {
    /// RocksDB under `dir`, or memory (said in the log) when there is
    /// none. Opened before any port is bound, so a locked or broken
    /// database stops start-up.
    pub fn open(dir: Option<&Path>) -> Result<Db, DbError> {
        match dir {
            Some(dir) => Ok(Db {
                kv: Arc::new(RocksKv::open(dir)?),
                durable: true,
            }),
            None => {
                tracing::info!("no history directory: durations and flaky marks last until this coordinator stops");
                Ok(Db::in_memory())
            }
        }
    }

    pub fn in_memory() -> Db {
        Db {
            kv: Arc::new(MemoryKv::default()),
            durable: false,
        }
    }

    /// Duration and flaky history.
    pub fn history(&self) -> History {
        History::new(self.kv.clone())
    }

    /// The run store, when the database is on disk (keeping every log
    /// twice in memory would buy nothing).
    pub fn run_store(&self) -> Option<RunStore> {
        self.durable.then(|| RunStore::new(self.kv.clone()))
    }
}
