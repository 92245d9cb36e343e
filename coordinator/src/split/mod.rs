//! Splitting a step's work items over shards so the shards finish together
//! and every item runs exactly once.
//!
//! Plain Rust, no I/O: durations come in from history, a plan goes out.

mod partition;

#[cfg(test)]
mod tests;

pub use partition::{choose_shard_count, plan, Estimate, Plan, ShardPlan, SplitError};
