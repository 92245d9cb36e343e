//! The storage interface history needs: point reads, batched writes, and a
//! prefix scan in key order.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::HistoryError;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError>;
    /// All writes land together or not at all.
    fn put(&self, writes: Vec<Entry>) -> Result<(), HistoryError>;
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, HistoryError>;
    /// Removes these keys together.
    fn delete(&self, keys: Vec<Vec<u8>>) -> Result<(), HistoryError>;
}

/// For a coordinator started without a data directory, and for tests: the
/// history lives as long as the process.
#[derive(Default)]
pub struct MemoryKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Kv for MemoryKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, HistoryError> {
        Ok(self.map.lock().get(key).cloned())
    }

    fn put(&self, writes: Vec<Entry>) -> Result<(), HistoryError> {
        self.map.lock().extend(writes);
        Ok(())
    }

    fn delete(&self, keys: Vec<Vec<u8>>) -> Result<(), HistoryError> {
        let mut map = self.map.lock();
        for k in keys {
            map.remove(&k);
        }
        Ok(())
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, HistoryError> {
        Ok(self
            .map
            .lock()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
