//! Shared by the scheduling tests: runners as the scheduler sees them.
#![allow(dead_code)]

pub mod schedule;

use std::time::Instant;

use buildfleet_coordinator::pipeline;
use buildfleet_coordinator::run::RunOptions;
use buildfleet_coordinator::scheduler::{RunnerView, Scheduler};
use buildfleet_model::Digest;

/// Submits `yaml` (as `t.yaml`, project `p`) and returns the run's id.
pub fn submit(s: &mut Scheduler, yaml: &str, now: Instant) -> String {
    let options = RunOptions {
        project: "p".into(),
        ..RunOptions::default()
    };
    submit_as(s, yaml, options, now)
}

/// Submits `yaml` with these options (the pipeline text, which a restore
/// parses again, is filled in) and returns the run's id.
pub fn submit_as(s: &mut Scheduler, yaml: &str, mut options: RunOptions, now: Instant) -> String {
    options.pipeline_yaml = yaml.into();
    let key = options.idempotency_key.clone();
    let p = pipeline::parse("t.yaml", yaml).expect("valid pipeline");
    s.submit(p, "t.yaml".into(), Digest::empty(), options, key, now)
        .run_id
}

/// A connected runner named `id`, free, with `slots` and `labels`.
pub fn runner(id: &str, slots: u32, labels: &[&str]) -> RunnerView {
    let labels = labels.iter().map(|s| s.to_string()).collect();
    RunnerView::new(id, id, labels, slots, String::new())
}
