//! Uploading a snapshot: ask what is missing, then send only that.

use bytes::Bytes;

use super::{CasClient, BATCH_BLOB_LIMIT, BATCH_TARGET_BYTES};
use crate::error::CacheError;
use crate::tree::{BlobSource, Snapshot};
use buildfleet_model::digest::Digest;

/// What an upload did; `skipped_blobs` were already on the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub uploaded_blobs: u64,
    pub uploaded_bytes: u64,
    pub skipped_blobs: u64,
}

impl CasClient {
    /// Uploads every blob of `snapshot` the server lacks: small ones packed
    /// into batches, large files streamed from disk.
    pub async fn upload_snapshot(&self, snapshot: &Snapshot) -> Result<UploadStats, CacheError> {
        let all: Vec<Digest> = snapshot.blobs().map(|(d, _)| *d).collect();
        let missing = self.find_missing(&all).await?;
        let mut stats = UploadStats {
            skipped_blobs: (all.len() - missing.len()) as u64,
            ..UploadStats::default()
        };

        let mut batch: Vec<(Digest, Bytes)> = Vec::new();
        let mut batch_bytes = 0u64;
        for digest in missing {
            let source = snapshot
                .source(&digest)
                .expect("find_missing only returns digests we asked about");
            if digest.size_bytes >= BATCH_BLOB_LIMIT {
                match source {
                    BlobSource::File(path) => self.write_file(digest, path).await?,
                    BlobSource::Inline(bytes) => self.write_bytes(digest, bytes.clone()).await?,
                }
            } else {
                if batch_bytes + digest.size_bytes > BATCH_TARGET_BYTES {
                    self.batch_update(std::mem::take(&mut batch)).await?;
                    batch_bytes = 0;
                }
                batch.push((digest, read_checked(&digest, source).await?));
                batch_bytes += digest.size_bytes;
            }
            stats.uploaded_blobs += 1;
            stats.uploaded_bytes += digest.size_bytes;
        }
        if !batch.is_empty() {
            self.batch_update(batch).await?;
        }
        Ok(stats)
    }
}

/// Reads a small blob's bytes and checks they still match the snapshot: a
/// file edited after snapshotting must fail loudly, not upload new content.
async fn read_checked(digest: &Digest, source: &BlobSource) -> Result<Bytes, CacheError> {
    let owned = source.clone();
    let data = tokio::task::spawn_blocking(move || owned.read()).await??;
    if Digest::of(&data) != *digest {
        return Err(match source {
            BlobSource::File(path) => CacheError::SourceChanged { path: path.clone() },
            BlobSource::Inline(_) => CacheError::Internal(format!(
                "in-memory directory {digest} does not hash to its digest"
            )),
        });
    }
    Ok(data)
}
