//! Shared by the scheduling tests: runners as the scheduler sees them.
#![allow(dead_code)]

pub mod schedule;

use std::time::SystemTime;

use buildfleet_coordinator::scheduler::RunnerView;

/// A connected runner named `id`, free, with `slots` and `labels`.
pub fn runner(id: &str, slots: u32, labels: &[&str]) -> RunnerView {
    RunnerView {
        id: id.into(),
        name: id.into(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        slots,
        busy: 0,
        connected_at: SystemTime::now(),
        unavailable: None,
        draining: None,
        isolation: String::new(),
    }
}
