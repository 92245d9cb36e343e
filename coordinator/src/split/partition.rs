//! Longest processing time first: items sorted by predicted duration, each
//! given to the shard with the least work so far. Its makespan is at most
//! 4/3 of the optimum (Graham), and never more than the average load plus
//! the longest item.
//!
//! Items without history are predicted at the median of the known ones, and
//! the plan says how many were — a silent alphabetical fallback would hide
//! that the balance is a guess.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::time::Duration;

use thiserror::Error;

/// Used when no item has history: every item counts the same, so the split
/// balances item counts.
const NO_HISTORY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SplitError {
    #[error("a step must be split into at least one shard")]
    NoShards,
}

/// Where the prediction for items without history came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimate {
    /// The median of the items that have history.
    Median(Duration),
    /// No item has history; all count as equal.
    NoHistory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// In name order, so a shard's command line is stable.
    pub items: Vec<String>,
    pub predicted: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub shards: Vec<ShardPlan>,
    /// Items that had no history and were predicted by `estimate`.
    pub without_history: usize,
    pub estimate: Estimate,
    /// Names given more than once: each runs once, and the plan says so.
    pub duplicates: Vec<String>,
}

impl Plan {
    /// The predicted wall time: the busiest shard's.
    pub fn makespan(&self) -> Duration {
        self.shards
            .iter()
            .map(|s| s.predicted)
            .max()
            .unwrap_or_default()
    }
}

fn median(mut known: Vec<Duration>) -> Option<Duration> {
    if known.is_empty() {
        return None;
    }
    known.sort_unstable();
    let mid = known.len() / 2;
    Some(if known.len() % 2 == 1 {
        known[mid]
    } else {
        (known[mid - 1] + known[mid]) / 2
    })
}

/// Splits `items` (name, known duration) over `shards`. The result does not
/// depend on the order of `items`: ties are broken by name, then by shard
/// index, so the same inputs always give the same split.
pub fn plan(items: &[(String, Option<Duration>)], shards: u32) -> Result<Plan, SplitError> {
    if shards == 0 {
        return Err(SplitError::NoShards);
    }
    let mut seen = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    let mut unique: Vec<(&str, Option<Duration>)> = Vec::with_capacity(items.len());
    for (name, duration) in items {
        if seen.insert(name.as_str()) {
            unique.push((name, *duration));
        } else {
            duplicates.insert(name.clone());
        }
    }
    let estimate = match median(unique.iter().filter_map(|(_, d)| *d).collect()) {
        Some(m) => Estimate::Median(m),
        None => Estimate::NoHistory,
    };
    let fill = match estimate {
        Estimate::Median(m) => m,
        Estimate::NoHistory => NO_HISTORY,
    };
    let without_history = unique.iter().filter(|(_, d)| d.is_none()).count();
    let mut weighted: Vec<(Duration, &str)> = unique
        .iter()
        .map(|(name, d)| (d.unwrap_or(fill), *name))
        .collect();
    weighted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));

    let mut out: Vec<ShardPlan> = (0..shards)
        .map(|_| ShardPlan {
            items: Vec::new(),
            predicted: Duration::ZERO,
        })
        .collect();
    let mut least_loaded: BinaryHeap<Reverse<(Duration, u32)>> =
        (0..shards).map(|i| Reverse((Duration::ZERO, i))).collect();
    for (duration, name) in weighted {
        let Reverse((load, index)) = least_loaded.pop().expect("one entry per shard");
        let shard = &mut out[index as usize];
        shard.items.push(name.to_owned());
        shard.predicted = load + duration;
        least_loaded.push(Reverse((shard.predicted, index)));
    }
    for shard in &mut out {
        shard.items.sort();
    }
    Ok(Plan {
        shards: out,
        without_history,
        estimate,
        duplicates: duplicates.into_iter().collect(),
    })
}

/// `shards: auto`: the fewest shards whose predicted makespan fits
/// `target`, never more than `max_shards`, the runner slots that exist, or
/// the number of items. When nothing fits, the most allowed shards.
pub fn choose_shard_count(
    items: &[(String, Option<Duration>)],
    target: Duration,
    max_shards: u32,
    slots: u32,
) -> Result<Plan, SplitError> {
    let unique = items.iter().map(|(n, _)| n).collect::<BTreeSet<_>>().len() as u32;
    let limit = max_shards.min(slots).min(unique).max(1);
    let mut best = plan(items, 1)?;
    for k in 2..=limit {
        if best.makespan() <= target {
            break;
        }
        best = plan(items, k)?;
    }
    Ok(best)
}
