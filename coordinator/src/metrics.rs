//! The coordinator's Prometheus series. Counters and histograms are bumped
//! by the scheduler as shards are leased and as a run's events are
//! written; gauges are set from the scheduler's state at each scrape
//! ([`FleetGauges`]), so they are never stale.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use buildfleet_model::State;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The state of the fleet at one moment, computed by the scheduler.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FleetGauges {
    /// Per label set a shard needs (sorted, comma-joined; empty for
    /// none): shards waiting for a runner, and the longest wait.
    pub queued: BTreeMap<String, (u64, Duration)>,
    pub runners_busy: u64,
    pub runners_idle: u64,
    pub runners_draining: u64,
    pub runners_unavailable: u64,
    pub approvals_waiting: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    state: String,
    failure_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    labels: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

/// How a webhook delivery ended.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    Delivered,
    /// One attempt failed (it may be retried).
    AttemptFailed,
    /// Every attempt failed.
    NotDelivered,
}

pub struct CoordinatorMetrics {
    registry: Registry,
    results: Family<ResultLabels, Counter>,
    shard_seconds: Histogram,
    queue_wait_seconds: Histogram,
    log_bytes: Counter,
    webhooks: Family<OutcomeLabel, Counter>,
    queued: Family<QueueLabels, Gauge>,
    oldest_queued: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    runners: Family<StateLabel, Gauge>,
    approvals_waiting: Gauge,
    /// Where scrape-time gauges come from (the hub, once it exists).
    gauges: parking_lot::Mutex<Option<Box<dyn Fn() -> FleetGauges + Send + Sync>>>,
}

impl std::fmt::Debug for CoordinatorMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorMetrics").finish_non_exhaustive()
    }
}

impl Default for CoordinatorMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("buildfleet");
        let results = Family::<ResultLabels, Counter>::default();
        registry.register(
            "shard_results",
            "Shards ended, by state and failure class",
            results.clone(),
        );
        let shard_seconds = Histogram::new(buildfleet_metrics::duration_buckets());
        registry.register(
            "shard_duration_seconds",
            "How long shards ran, from lease to result",
            shard_seconds.clone(),
        );
        let queue_wait_seconds = Histogram::new(buildfleet_metrics::duration_buckets());
        registry.register(
            "shard_queue_wait_seconds",
            "How long a shard's step had been ready when the shard was leased",
            queue_wait_seconds.clone(),
        );
        let log_bytes = Counter::default();
        registry.register("log_bytes", "Shard log bytes received", log_bytes.clone());
        let webhooks = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts and outcomes",
            webhooks.clone(),
        );
        let queued = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queued_shards",
            "Shards ready and waiting for a runner, by the labels they need",
            queued.clone(),
        );
        let oldest_queued = Family::<QueueLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "oldest_queued_shard_age_seconds",
            "How long the longest-waiting queued shard has waited, by labels",
            oldest_queued.clone(),
        );
        let runners = Family::<StateLabel, Gauge>::default();
        registry.register(
            "runners",
            "Connected runners by state (busy, idle, draining, unavailable)",
            runners.clone(),
        );
        let approvals_waiting = Gauge::default();
        registry.register(
            "approvals_waiting",
            "Steps held for an approval",
            approvals_waiting.clone(),
        );
        CoordinatorMetrics {
            registry,
            results,
            shard_seconds,
            queue_wait_seconds,
            log_bytes,
            webhooks,
            queued,
            oldest_queued,
            runners,
            approvals_waiting,
            gauges: parking_lot::Mutex::new(None),
        }
    }
}

impl CoordinatorMetrics {
    pub fn new() -> Arc<CoordinatorMetrics> {
        Arc::new(CoordinatorMetrics::default())
    }

    /// Where each scrape reads the fleet's gauges from.
    pub fn gauges_from(&self, read: impl Fn() -> FleetGauges + Send + Sync + 'static) {
        *self.gauges.lock() = Some(Box::new(read));
    }

    pub(crate) fn shard_ended(&self, state: &State, ran_for: Option<Duration>) {
        self.results
            .get_or_create(&ResultLabels {
                state: state.label().to_owned(),
                failure_class: failure_class(state).to_owned(),
            })
            .inc();
        if let Some(ran_for) = ran_for {
            self.shard_seconds.observe(ran_for.as_secs_f64());
        }
    }

    pub(crate) fn shard_leased(&self, waited: Duration) {
        self.queue_wait_seconds.observe(waited.as_secs_f64());
    }

    pub(crate) fn log_received(&self, bytes: usize) {
        self.log_bytes.inc_by(bytes as u64);
    }

    pub fn webhook(&self, outcome: Delivery) {
        let outcome = match outcome {
            Delivery::Delivered => "delivered",
            Delivery::AttemptFailed => "attempt_failed",
            Delivery::NotDelivered => "not_delivered",
        };
        self.webhooks
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    fn set_gauges(&self, g: &FleetGauges) {
        // Label sets with nothing queued any more disappear.
        self.queued.clear();
        self.oldest_queued.clear();
        for (labels, (count, oldest)) in &g.queued {
            let key = QueueLabels {
                labels: labels.clone(),
            };
            self.queued.get_or_create(&key).set(*count as i64);
            self.oldest_queued
                .get_or_create(&key)
                .set(oldest.as_secs_f64());
        }
        for (state, n) in [
            ("busy", g.runners_busy),
            ("idle", g.runners_idle),
            ("draining", g.runners_draining),
            ("unavailable", g.runners_unavailable),
        ] {
            self.runners
                .get_or_create(&StateLabel {
                    state: state.to_owned(),
                })
                .set(n as i64);
        }
        self.approvals_waiting.set(g.approvals_waiting as i64);
    }
}

impl buildfleet_metrics::Exposition for CoordinatorMetrics {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn refresh(&self) {
        let gauges = self.gauges.lock().as_ref().map(|read| read());
        if let Some(g) = gauges {
            self.set_gauges(&g);
        }
    }
}

/// What kind of failure, from a small fixed set (a label must not carry
/// free text): the command's exit, a signal, a failed `verify:`, missing
/// or unconfirmed outputs, or anything else the runner reported.
fn failure_class(state: &State) -> &'static str {
    match state {
        State::Failed(f) if f.reason.starts_with("verify-failed") => "verify",
        State::Failed(f) if f.reason.starts_with("output") => "outputs",
        State::Failed(f) if f.signal.is_some() => "signal",
        State::Failed(f) if f.exit_code.is_some() => "exit",
        State::Failed(_) => "other",
        _ => "",
    }
}
