//! A local store in front of a shared bucket: several cache nodes share
//! one S3-compatible bucket and serve each other's blobs, each keeping a
//! fast local tier (RocksDB) of what it used lately.
//!
//! - Writes go through: a blob is verified and stored locally, then put in
//!   the bucket (unless another node already did) before the write is
//!   acknowledged — a node that dies right after loses nothing shared.
//! - Reads try the local tier, then the bucket; a blob from the bucket is
//!   verified (the bucket is trusted no more than a disk) and fills the
//!   local tier. A corrupt object is deleted from the bucket and reported
//!   missing, never served.
//! - Eviction and size limits are the local tier's: evicting a blob
//!   locally leaves it in the bucket, whose own lifecycle rules age it out.
//! - Action-cache and index entries are shared too (written through, read
//!   through); pins stay local, since only local eviction reads them.

mod bucket;
#[cfg(test)]
pub(crate) mod moto;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use bucket::Bucket;
pub use bucket::BucketConfig;

use super::large_files::LargeFiles;
use super::{
    verify, BlobStore, Evictions, MetaTable, StagedBlob, StoreError, StoreLimits, StoredBlob,
    VerifiedBlob,
};
use buildfleet_model::digest::Digest;

pub struct TieredStore<L: BlobStore> {
    local: L,
    bucket: Bucket,
}

impl<L: BlobStore> std::fmt::Debug for TieredStore<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("bucket", &self.bucket.shown())
            .finish_non_exhaustive()
    }
}

fn blob_name(digest: &Digest) -> String {
    format!(
        "cas/{}/{}-{}",
        digest.function.name(),
        digest.to_hex(),
        digest.size_bytes
    )
}

fn meta_dir(table: MetaTable) -> &'static str {
    match table {
        MetaTable::ActionCache => "meta/ac/",
        MetaTable::Index => "meta/index/",
        MetaTable::Pins => "meta/pins/",
    }
}

/// Shared tables: the pins only steer this node's eviction.
fn shared(table: MetaTable) -> bool {
    !matches!(table, MetaTable::Pins)
}

impl<L: BlobStore> TieredStore<L> {
    pub fn new(local: L, config: &BucketConfig) -> Result<TieredStore<L>, StoreError> {
        Ok(TieredStore {
            local,
            bucket: Bucket::open(config)?,
        })
    }

    /// The local tier (tests corrupt it; operators inspect it).
    pub fn local(&self) -> &L {
        &self.local
    }

    /// A blob's bytes from the bucket, verified; a corrupt object is
    /// deleted there and reported absent.
    fn judge_remote(
        &self,
        digest: &Digest,
        data: Option<Bytes>,
    ) -> Result<Option<Bytes>, StoreError> {
        let Some(data) = data else { return Ok(None) };
        if let Err(err) = verify(digest, &data) {
            tracing::error!(%digest, %err, bucket = self.bucket.shown(), "corrupt object in the bucket; deleting it");
            self.bucket.delete(&blob_name(digest))?;
            return Ok(None);
        }
        // Filling the local tier is an optimisation: a failure costs the
        // next read a trip to the bucket, not this read its answer.
        if let Err(err) = self.local.put(digest, data.clone()) {
            tracing::warn!(%digest, %err, "blob from the bucket not kept locally");
        }
        Ok(Some(data))
    }

    /// Puts bytes in the bucket under a digest without checking them, so
    /// tests can plant a corrupt object.
    #[cfg(test)]
    pub(crate) fn write_unverified_remote(&self, digest: &Digest, data: &[u8]) {
        self.bucket
            .put(&blob_name(digest), Bytes::copy_from_slice(data))
            .expect("a planted object");
    }

    fn upload_file(&self, digest: &Digest) -> Result<(), StoreError> {
        // Committed locally first; the bucket gets the committed copy, a
        // file in parts or small bytes whole.
        match self.local.open(digest)? {
            Some(StoredBlob::Bytes(data)) => self.bucket.put_new(&blob_name(digest), data),
            Some(StoredBlob::File(file)) => self.bucket.put_file_new(&blob_name(digest), file),
            None => Ok(()),
        }
    }

    /// A write is acknowledged only once the bucket has the blob. If the
    /// bucket refused it, the local copy goes too: otherwise this node
    /// would answer "present" to the client's retry and the retry would
    /// never reach the bucket, leaving the other nodes without it.
    fn shared_or_undone(
        &self,
        digest: &Digest,
        shared: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if let Err(err) = &shared {
            tracing::warn!(%digest, %err, bucket = self.bucket.shown(), "blob not stored in the bucket; dropped locally too, so a retry uploads it again");
            if let Err(undo) = self.local.forget_corrupt(digest) {
                tracing::error!(%digest, %undo, "blob missing from the bucket could not be dropped locally");
            }
        }
        shared
    }

    /// A large blob from the bucket, streamed into the local tier through
    /// a staged file (verified as it arrives, never whole in memory);
    /// false if the bucket lacks it or its copy was corrupt (then deleted).
    fn fetch_large(&self, digest: &Digest) -> Result<bool, StoreError> {
        let staged = self.local.stage(digest)?;
        let Some(staged) = self.bucket.get_into(&blob_name(digest), staged)? else {
            return Ok(false);
        };
        match staged.finish() {
            Ok(verified) => {
                self.local.commit(verified)?;
                Ok(true)
            }
            Err(err) => {
                tracing::error!(%digest, %err, bucket = self.bucket.shown(), "corrupt object in the bucket; deleting it");
                self.bucket.delete(&blob_name(digest))?;
                Ok(false)
            }
        }
    }
}

impl<L: BlobStore> BlobStore for TieredStore<L> {
    fn contains_many(&self, digests: &[Digest]) -> Result<Vec<bool>, StoreError> {
        let mut present = self.local.contains_many(digests)?;
        let (at, names): (Vec<usize>, Vec<String>) = present
            .iter()
            .enumerate()
            .filter(|(_, p)| !**p)
            .map(|(i, _)| (i, blob_name(&digests[i])))
            .unzip();
        if !names.is_empty() {
            for (i, found) in at.into_iter().zip(self.bucket.contains_many(&names)?) {
                present[i] = found;
            }
        }
        Ok(present)
    }

    fn get(&self, digest: &Digest) -> Result<Option<Bytes>, StoreError> {
        if let Some(data) = self.local.get(digest)? {
            return Ok(Some(data));
        }
        if LargeFiles::is_large(digest) {
            return match self.fetch_large(digest)? {
                true => self.local.get(digest),
                false => Ok(None),
            };
        }
        let data = self.bucket.get(&blob_name(digest))?;
        self.judge_remote(digest, data)
    }

    fn get_many(&self, digests: &[Digest]) -> Result<Vec<Option<Bytes>>, StoreError> {
        let mut found = self.local.get_many(digests)?;
        let (at, names): (Vec<usize>, Vec<String>) = found
            .iter()
            .enumerate()
            .filter(|(_, f)| f.is_none())
            .map(|(i, _)| (i, blob_name(&digests[i])))
            .unzip();
        if !names.is_empty() {
            for (i, data) in at.into_iter().zip(self.bucket.get_many(&names)?) {
                found[i] = self.judge_remote(&digests[i], data)?;
            }
        }
        Ok(found)
    }

    fn put(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        self.local.put(digest, data.clone())?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        let shared = self.bucket.put_new(&blob_name(digest), data);
        self.shared_or_undone(digest, shared)
    }

    fn put_many(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        let kept = self.local.put_many(blobs.clone());
        let (at, uploads): (Vec<usize>, Vec<(String, Bytes)>) = blobs
            .iter()
            .zip(&kept)
            .enumerate()
            .filter(|(_, ((digest, _), kept))| kept.is_ok() && !digest.is_empty_blob())
            .map(|(i, ((digest, data), _))| (i, (blob_name(digest), data.clone())))
            .unzip();
        let mut results = kept;
        for (i, shared) in at.into_iter().zip(self.bucket.put_new_many(uploads)) {
            results[i] = self.shared_or_undone(&blobs[i].0, shared);
        }
        results
    }

    fn stage(&self, digest: &Digest) -> Result<StagedBlob, StoreError> {
        self.local.stage(digest)
    }

    fn commit(&self, blob: VerifiedBlob) -> Result<(), StoreError> {
        let digest = blob.digest();
        self.local.commit(blob)?;
        if digest.is_empty_blob() {
            return Ok(());
        }
        let shared = self.upload_file(&digest);
        self.shared_or_undone(&digest, shared)
    }

    fn open(&self, digest: &Digest) -> Result<Option<StoredBlob>, StoreError> {
        if let Some(found) = self.local.open(digest)? {
            return Ok(Some(found));
        }
        // From the bucket, through the local tier.
        if LargeFiles::is_large(digest) {
            return match self.fetch_large(digest)? {
                true => self.local.open(digest),
                false => Ok(None),
            };
        }
        Ok(self.get(digest)?.map(StoredBlob::Bytes))
    }

    fn forget_corrupt(&self, digest: &Digest) -> Result<(), StoreError> {
        self.local.forget_corrupt(digest)?;
        self.bucket.delete(&blob_name(digest))
    }

    fn total_bytes(&self) -> u64 {
        self.local.total_bytes()
    }

    fn meta_bytes(&self) -> u64 {
        self.local.meta_bytes()
    }

    fn evictions(&self) -> &Evictions {
        self.local.evictions()
    }

    fn limits(&self) -> StoreLimits {
        self.local.limits()
    }

    fn meta_get(&self, table: MetaTable, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        if let Some(value) = self.local.meta_get(table, key)? {
            return Ok(Some(value));
        }
        if !shared(table) {
            return Ok(None);
        }
        let value = self
            .bucket
            .get(&format!("{}{}", meta_dir(table), hex::encode(key)))?;
        if let Some(value) = &value {
            if let Err(err) = self.local.meta_put(table, key, value.clone()) {
                tracing::warn!(%err, "entry from the bucket not kept locally");
            }
        }
        Ok(value)
    }

    fn meta_put(&self, table: MetaTable, key: &[u8], value: Bytes) -> Result<(), StoreError> {
        self.local.meta_put(table, key, value.clone())?;
        if !shared(table) {
            return Ok(());
        }
        let stored = self
            .bucket
            .put(&format!("{}{}", meta_dir(table), hex::encode(key)), value);
        // As with blobs: not acknowledged, and not served from here alone.
        if let Err(err) = &stored {
            tracing::warn!(%err, "entry not stored in the bucket; dropped locally too");
            if let Err(undo) = self.local.meta_delete(table, key) {
                tracing::error!(%undo, "entry missing from the bucket could not be dropped locally");
            }
        }
        stored
    }

    fn meta_delete(&self, table: MetaTable, key: &[u8]) -> Result<(), StoreError> {
        self.local.meta_delete(table, key)?;
        if !shared(table) {
            return Ok(());
        }
        self.bucket
            .delete(&format!("{}{}", meta_dir(table), hex::encode(key)))
    }

    fn meta_scan_prefix(
        &self,
        table: MetaTable,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Bytes)>, StoreError> {
        if !shared(table) {
            return self.local.meta_scan_prefix(table, prefix);
        }
        // The bucket holds every node's entries; hex keeps key order.
        let dir = meta_dir(table);
        let names = self.bucket.list(&format!("{dir}{}", hex::encode(prefix)))?;
        let values = self.bucket.get_many(&names)?;
        let mut out = Vec::with_capacity(names.len());
        for (name, value) in names.iter().zip(values) {
            let (Some(value), Some(key)) = (
                value,
                name.strip_prefix(dir).and_then(|h| hex::decode(h).ok()),
            ) else {
                continue;
            };
            out.push((key, value));
        }
        Ok(out)
    }
}
