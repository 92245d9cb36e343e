//! Splitting a step's work items over shards so the shards finish together
//! and every item runs exactly once: `partition` (longest processing time
//! first, `shards: auto`'s count), `step` (a split step's items and history
//! → its shards and what the summary says of the choice), `attribute`
//! (which item a test belongs to, and the durations a shard's report
//! teaches). Parsing `split:` is the pipeline's; leasing and re-running
//! shards is the scheduler's.
//!
//! Plain Rust, no I/O: durations come in from history, a plan goes out.

pub mod attribute;
mod partition;
mod step;

#[cfg(test)]
mod tests;

pub use partition::{choose_shard_count, plan, Estimate, Plan, ShardPlan, SplitError};
pub use step::{plan_split, Planned, SplitInfo};

/// Items as one shell word each, space separated, for
/// `BUILDFLEET_SHARD_ITEMS` (so `pytest $BUILDFLEET_SHARD_ITEMS` works for
/// plain names and `eval` handles any name).
pub fn shell_words(items: &[String]) -> String {
    items
        .iter()
        .map(|item| {
            let plain = !item.is_empty()
                && item
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
            if plain {
                item.clone()
            } else {
                format!("'{}'", item.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a split step's shards divide its items: the count is capped at the
/// number of items so no shard runs with an empty list (which most test
/// runners would read as "run everything").
pub fn assign(items: &[String], shards: u32) -> Result<Plan, SplitError> {
    let unique = items
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u32;
    let with_history: Vec<(String, Option<std::time::Duration>)> =
        items.iter().map(|i| (i.clone(), None)).collect();
    plan(&with_history, shards.min(unique).max(1))
}
