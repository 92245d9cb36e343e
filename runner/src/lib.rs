//! A runner node: one stream to the coordinator; each shard runs in its own process group.
//!
//! Invariant: a result is reported only after the shard's process group is
//! gone and its last log chunk was sent ahead of it.

pub mod agent;
pub mod caching;
pub mod disk;
pub mod error;
pub mod exec;
pub mod junit;
pub mod oom;
pub mod outputs;
pub mod reports;
pub mod shard;
pub mod verify;

pub use agent::{run, RunnerConfig};
pub use error::RunnerError;
