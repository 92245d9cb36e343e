//! The runner's Prometheus series: its slots, the shards running now,
//! shards ended by state, and whether it holds a coordinator session. A
//! runner pod's liveness probe reads this endpoint.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

pub struct RunnerMetrics {
    registry: Registry,
    slots: Gauge,
    running: Gauge,
    ended: Family<StateLabel, Counter>,
    handed_back: Counter,
    connected: Gauge,
}

impl std::fmt::Debug for RunnerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerMetrics").finish_non_exhaustive()
    }
}

impl Default for RunnerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("buildfleet_runner");
        let slots = Gauge::default();
        registry.register("slots", "Shards this runner runs at once", slots.clone());
        let running = Gauge::default();
        registry.register("shards_running", "Shards running now", running.clone());
        let ended = Family::<StateLabel, Counter>::default();
        registry.register(
            "shards_ended",
            "Shards this runner ran to an end, by the state it reported",
            ended.clone(),
        );
        let handed_back = Counter::default();
        registry.register(
            "shards_handed_back",
            "Leases given back to the coordinator (draining, low disk, drain grace over)",
            handed_back.clone(),
        );
        let connected = Gauge::default();
        registry.register(
            "connected",
            "1 while registered with a coordinator, else 0",
            connected.clone(),
        );
        RunnerMetrics {
            registry,
            slots,
            running,
            ended,
            handed_back,
            connected,
        }
    }
}

impl RunnerMetrics {
    pub fn new() -> Arc<RunnerMetrics> {
        Arc::new(RunnerMetrics::default())
    }

    pub(crate) fn set_slots(&self, slots: u32) {
        self.slots.set(i64::from(slots));
    }

    pub(crate) fn started(&self) {
        self.running.inc();
    }

    /// A shard's task ended: with the state it reported, or handed back.
    pub(crate) fn ended(&self, state: Option<&buildfleet_model::State>) {
        self.running.dec();
        match state {
            Some(state) => self
                .ended
                .get_or_create(&StateLabel {
                    state: state.label().to_owned(),
                })
                .inc(),
            None => self.handed_back.inc(),
        };
    }

    pub(crate) fn handed_back(&self) {
        self.handed_back.inc();
    }

    pub(crate) fn connected(&self, yes: bool) {
        self.connected.set(i64::from(yes));
    }
}

impl buildfleet_metrics::Exposition for RunnerMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }
}
