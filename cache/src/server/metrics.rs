//! The cache's Prometheus series: action-cache hits and misses per scope
//! kind, blob reads found and missing, bytes in and out, and — read from
//! the store at each scrape — its size and what eviction removed.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::BlobStore;
use buildfleet_model::cache::{SCOPE_PREFIX, SHARED_SCOPE};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    scope: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: String,
}

pub struct CacheMetrics {
    registry: Registry,
    store: Arc<dyn BlobStore>,
    action_lookups: Family<LookupLabels, Counter>,
    blob_reads: Family<ResultLabel, Counter>,
    bytes: Family<DirectionLabel, Counter>,
    stored_bytes: Gauge,
    metadata_bytes: Gauge,
    evicted_blobs: Counter<u64, AtomicU64>,
    evicted_bytes: Counter<u64, AtomicU64>,
    /// The store's eviction totals at the last scrape.
    evicted_seen: Mutex<(u64, u64)>,
}

impl CacheMetrics {
    pub fn new(store: Arc<dyn BlobStore>) -> Arc<CacheMetrics> {
        let mut registry = Registry::with_prefix("buildfleet_cache");
        let action_lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "action_lookups",
            "Action-cache lookups by scope kind (shared, overlay, instance) and result (hit, miss)",
            action_lookups.clone(),
        );
        let blob_reads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "blob_reads",
            "Blobs asked for by BatchReadBlobs and ByteStream Read, by result (hit, miss)",
            blob_reads.clone(),
        );
        let bytes = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "bytes",
            "Blob bytes served (read) and stored (written)",
            bytes.clone(),
        );
        let stored_bytes = Gauge::default();
        registry.register(
            "stored_bytes",
            "Size of the stored blobs",
            stored_bytes.clone(),
        );
        let metadata_bytes = Gauge::default();
        registry.register(
            "metadata_bytes",
            "Size of the action-cache, index and pin entries",
            metadata_bytes.clone(),
        );
        let evicted_blobs = Counter::<u64, AtomicU64>::default();
        registry.register(
            "evicted_blobs",
            "Blobs evicted to stay within --max-size",
            evicted_blobs.clone(),
        );
        let evicted_bytes = Counter::<u64, AtomicU64>::default();
        registry.register(
            "evicted_bytes",
            "Bytes evicted to stay within --max-size",
            evicted_bytes.clone(),
        );
        Arc::new(CacheMetrics {
            registry,
            store,
            action_lookups,
            blob_reads,
            bytes,
            stored_bytes,
            metadata_bytes,
            evicted_blobs,
            evicted_bytes,
            evicted_seen: Mutex::new((0, 0)),
        })
    }

    pub(crate) fn action_lookup(&self, instance: &str, hit: bool) {
        // The kind, not the name: one overlay per ref would make a series
        // per branch.
        let scope = if instance == SHARED_SCOPE {
            "shared"
        } else if instance.starts_with(SCOPE_PREFIX) {
            "overlay"
        } else {
            "instance"
        };
        self.action_lookups
            .get_or_create(&LookupLabels {
                scope: scope.to_owned(),
                result: hit_or_miss(hit).to_owned(),
            })
            .inc();
    }

    pub(crate) fn blobs_read(&self, hits: u64, misses: u64, bytes: u64) {
        for (hit, n) in [(true, hits), (false, misses)] {
            if n > 0 {
                self.blob_reads
                    .get_or_create(&ResultLabel {
                        result: hit_or_miss(hit).to_owned(),
                    })
                    .inc_by(n);
            }
        }
        self.moved("read", bytes);
    }

    pub(crate) fn bytes_written(&self, bytes: u64) {
        self.moved("written", bytes);
    }

    fn moved(&self, direction: &str, bytes: u64) {
        if bytes > 0 {
            self.bytes
                .get_or_create(&DirectionLabel {
                    direction: direction.to_owned(),
                })
                .inc_by(bytes);
        }
    }
}

fn hit_or_miss(hit: bool) -> &'static str {
    if hit {
        "hit"
    } else {
        "miss"
    }
}

impl buildfleet_metrics::Exposition for CacheMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn refresh(&self) {
        self.stored_bytes
            .set(i64::try_from(self.store.total_bytes()).unwrap_or(i64::MAX));
        self.metadata_bytes
            .set(i64::try_from(self.store.meta_bytes()).unwrap_or(i64::MAX));
        let (blobs, bytes) = self.store.evictions().totals();
        let mut seen = self.evicted_seen.lock();
        self.evicted_blobs.inc_by(blobs.saturating_sub(seen.0));
        self.evicted_bytes.inc_by(bytes.saturating_sub(seen.1));
        *seen = (blobs.max(seen.0), bytes.max(seen.1));
    }
}
