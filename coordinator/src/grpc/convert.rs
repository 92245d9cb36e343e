//! Domain ⇄ wire conversions of the coordinator's own messages (runners);
//! runs, events, submissions and the rest of the shared vocabulary convert
//! through `buildfleet_proto::convert`. The only place coordinator logic
//! meets prost.

use buildfleet_proto::v1 as pb;

use crate::scheduler::RunnerView;

/// A runner as `caller` may see it (leases of others' runs unnamed).
pub fn runner_to_pb(r: &RunnerView, caller: &buildfleet_trust::Caller) -> pb::RunnerInfo {
    pb::RunnerInfo {
        runner_id: r.id.clone(),
        name: r.name.clone(),
        labels: r.labels.clone(),
        slots: r.slots,
        busy_slots: r.busy,
        connected_unix_ms: unix_ms(r.connected_at),
        unavailable: r.availability().unwrap_or_default().to_owned(),
        isolation: r.isolation.clone(),
        disk_free_bytes: r.disk_free,
        last_seen_unix_ms: unix_ms(r.last_seen),
        leases: r
            .leases
            .iter()
            .map(|l| crate::acting::lease_as_seen(caller, l))
            .collect(),
    }
}

use buildfleet_model::unix_ms;
