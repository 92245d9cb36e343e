//! An in-process store for tests and for embedding a cache without disk.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::RwLock;

use super::{verify, BlobStore, StoreError};
use crate::digest::Digest;

/// Blobs in a hash map. Nothing survives the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blobs: RwLock<HashMap<Digest, Bytes>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Number of stored blobs; the empty blob is implicit and not counted.
    pub fn len(&self) -> usize {
        self.blobs.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.read().is_empty()
    }
}

impl BlobStore for MemoryStore {
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError> {
        let blobs = self.blobs.read();
        Ok(digests
            .iter()
            .map(|d| d.is_empty_blob() || blobs.contains_key(d))
            .collect())
    }

    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        if digest.is_empty_blob() {
            return Ok(Some(Bytes::new()));
        }
        let Some(data) = self.blobs.read().get(digest).cloned() else {
            return Ok(None);
        };
        // Memory can't rot on its own, but the contract is uniform so a bug in
        // a writer can never turn into corrupt data served to a reader.
        if let Err(err) = verify(digest, &data) {
            tracing::error!(%digest, %err, "corrupt blob in memory store; deleting");
            self.blobs.write().remove(digest);
            return Ok(None);
        }
        Ok(Some(data))
    }

    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        verify(digest, &data)?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        self.blobs.write().entry(*digest).or_insert(data);
        Ok(())
    }
}
