//! The coordinator's RocksDB: the one place in this crate that knows it.
//! Its errors become `DbError`s here, so nothing else names RocksDB types.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, Options, WriteBatch, DB};

use super::{DbError, Entry, Kv};

pub struct RocksKv {
    db: DB,
}

fn io(e: rocksdb::Error) -> DbError {
    DbError::Io(e.to_string())
}

impl RocksKv {
    pub fn open(path: &Path) -> Result<RocksKv, DbError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, path).map_err(|e| DbError::Open {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(RocksKv { db })
    }
}

impl Kv for RocksKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DbError> {
        self.db.get(key).map_err(io)
    }

    fn put(&self, writes: Vec<Entry>) -> Result<(), DbError> {
        let mut batch = WriteBatch::default();
        for (k, v) in writes {
            batch.put(k, v);
        }
        self.db.write(batch).map_err(io)
    }

    fn delete(&self, keys: Vec<Vec<u8>>) -> Result<(), DbError> {
        let mut batch = WriteBatch::default();
        for k in keys {
            batch.delete(k);
        }
        self.db.write(batch).map_err(io)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, DbError> {
        let mut out = Vec::new();
        for entry in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = entry.map_err(io)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }
}
