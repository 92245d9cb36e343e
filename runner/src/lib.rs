//! A runner node: one stream to the coordinator; each shard runs under a
//! supervisor, in its own process group and (where the host allows) cgroup.
//!
//! Invariant: a result is reported only after the shard's processes are
//! gone and its last log chunk was sent ahead of it; no process of a shard
//! outlives its runner.

pub mod agent;
pub mod caching;
pub mod cgroup;
pub mod confine;
pub mod disk;
pub mod error;
pub mod exec;
pub mod junit;
pub mod metrics;
pub mod oom;
pub mod outputs;
pub mod reports;
pub mod services;
pub mod shard;
pub mod step_users;
pub mod supervisor;
pub mod verify;
pub mod wire;

pub use agent::{run, RunnerConfig};
pub use error::RunnerError;
pub use metrics::RunnerMetrics;
