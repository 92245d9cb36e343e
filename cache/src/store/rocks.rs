//! The persistent store. The only module that knows RocksDB exists.
//!
//! Each blob has two keys written in one batch: a tiny presence marker (`m`)
//! and the data (`d`). Presence checks dominate cache traffic
//! (FindMissingBlobs on every submit), and reading the marker keeps them from
//! pulling large values out of blob files.

use std::path::Path;

use bytes::Bytes;
use rocksdb::{DBCompressionType, Options, WriteBatch, DB};

use super::{verify, BlobStore, StoreError};
use crate::digest::Digest;

/// Values at least this large go to blob files, so compactions of the LSM tree
/// don't keep rewriting multi-megabyte file contents.
const MIN_BLOB_SIZE: u64 = 64 * 1024;

const MARKER: u8 = b'm';
const DATA: u8 = b'd';

/// A RocksDB-backed [`BlobStore`].
pub struct RocksStore {
    db: DB,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn key(kind: u8, digest: &Digest) -> [u8; 41] {
    let mut key = [0u8; 41];
    key[0] = kind;
    key[1..33].copy_from_slice(&digest.hash);
    key[33..].copy_from_slice(&digest.size_bytes.to_be_bytes());
    key
}

fn backend(operation: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError {
    move |source| StoreError::Backend {
        operation,
        source: Box::new(source),
    }
}

impl RocksStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<RocksStore, StoreError> {
        let path = path.as_ref();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Only lz4 is compiled in; RocksDB's default (snappy) would fail to open.
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(MIN_BLOB_SIZE);
        opts.set_blob_compression_type(DBCompressionType::Lz4);
        let db = DB::open(&opts, path).map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Ok(RocksStore { db })
    }

    fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(key(MARKER, digest));
        batch.delete(key(DATA, digest));
        self.db.write(batch).map_err(backend("delete"))
    }

    /// Writes arbitrary bytes under a digest, bypassing verification, so tests
    /// can prove that corrupt data is never served.
    #[cfg(test)]
    pub(crate) fn write_unverified(&self, digest: &Digest, data: &[u8]) {
        let mut batch = WriteBatch::default();
        batch.put(key(MARKER, digest), b"");
        batch.put(key(DATA, digest), data);
        self.db.write(batch).expect("raw write");
    }
}

impl BlobStore for RocksStore {
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError> {
        let keys = digests.iter().map(|d| key(MARKER, d));
        let found = self.db.multi_get(keys);
        digests
            .iter()
            .zip(found)
            .map(|(digest, res)| {
                let present = res.map_err(backend("multi_get"))?.is_some();
                Ok(present || digest.is_empty_blob())
            })
            .collect()
    }

    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        if digest.is_empty_blob() {
            return Ok(Some(Bytes::new()));
        }
        let Some(value) = self
            .db
            .get_pinned(key(DATA, digest))
            .map_err(backend("get"))?
        else {
            return Ok(None);
        };
        if let Err(err) = verify(digest, &value) {
            // Disk rot or a bug: serving it would spread the damage to every
            // client, and keeping it would block a clean re-upload.
            tracing::error!(%digest, %err, "corrupt blob in RocksDB store; deleting");
            drop(value);
            self.delete(digest)?;
            return Ok(None);
        }
        Ok(Some(Bytes::copy_from_slice(&value)))
    }

    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        verify(digest, &data)?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        // Re-writing a large blob that is already there only costs compaction.
        if self
            .db
            .get_pinned(key(MARKER, digest))
            .map_err(backend("get"))?
            .is_some()
        {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        batch.put(key(DATA, digest), &data);
        batch.put(key(MARKER, digest), b"");
        self.db.write(batch).map_err(backend("put"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_blob_is_never_served_and_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path()).unwrap();
        let data = Bytes::from(vec![7u8; 100_000]);
        let digest = Digest::of(&data);
        store.put(&digest, data.clone()).unwrap();
        assert_eq!(store.get(&digest).unwrap(), Some(data.clone()));

        let mut garbage = data.to_vec();
        garbage[500] ^= 0xff;
        store.write_unverified(&digest, &garbage);
        assert_eq!(store.contains_many(&[digest]).unwrap(), vec![true]);

        assert_eq!(store.get(&digest).unwrap(), None);
        assert_eq!(store.contains_many(&[digest]).unwrap(), vec![false]);
        assert_eq!(store.get(&digest).unwrap(), None);

        // A clean upload heals the store.
        store.put(&digest, data.clone()).unwrap();
        assert_eq!(store.get(&digest).unwrap(), Some(data));
    }

    #[test]
    fn blobs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let data = Bytes::from_static(b"persistent");
        let digest = Digest::of(&data);
        {
            let store = RocksStore::open(dir.path()).unwrap();
            store.put(&digest, data.clone()).unwrap();
        }
        let store = RocksStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&digest).unwrap(), Some(data));
    }
}
