//! Uses of blobs since their use was last written, kept in memory: a read
//! (BatchReadBlobs, ByteStream, FindMissingBlobs) writes nothing to
//! RocksDB. Eviction walks the stored use order oldest first and gives a
//! blob used since a second chance — its use is written then, moving it to
//! the back — so the order eviction acts on stays least-recently-used
//! while reads cost no write. A shard that grows past its cap writes its
//! uses out (bounding memory), and a clean close writes them all, so only
//! a crash forgets recent uses (its blobs are then merely older than they
//! were).

use parking_lot::Mutex;

use buildfleet_model::digest::Digest;

/// Digests are uniform and only sound (hashed) blobs are marked, so
/// SipHash's flooding defence buys nothing here and costs a tenth of a
/// BatchReadBlobs.
type HashSet<T> = foldhash::HashSet<T>;

/// Uses kept per shard before they are written out: 64 shards of this
/// many digests stay within a few tens of megabytes.
pub(super) const SHARD_CAP: usize = 4096;

pub(super) struct Recency {
    shards: Vec<Mutex<HashSet<Digest>>>,
}

impl Recency {
    pub(super) fn new(shards: usize) -> Recency {
        Recency {
            shards: (0..shards)
                .map(|_| Mutex::new(HashSet::default()))
                .collect(),
        }
    }

    /// Records uses of `digests`, all of shard `shard`; true when the shard
    /// is now over its cap and should be written out.
    pub(super) fn mark(&self, shard: usize, digests: impl IntoIterator<Item = Digest>) -> bool {
        let mut set = self.shards[shard].lock();
        set.extend(digests);
        set.len() > SHARD_CAP
    }

    /// Whether `digest` was used since its use was written; forgets it.
    pub(super) fn take(&self, shard: usize, digest: &Digest) -> bool {
        self.shards[shard].lock().remove(digest)
    }

    /// Every use recorded in `shard`, forgotten here.
    pub(super) fn drain(&self, shard: usize) -> Vec<Digest> {
        self.shards[shard].lock().drain().collect()
    }

    pub(super) fn shards(&self) -> usize {
        self.shards.len()
    }
}
