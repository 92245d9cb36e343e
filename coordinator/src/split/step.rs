//! Turning a split step's items and their history into shards: how many
//! (fixed, capped at the item count, or `shards: auto`) and which items each
//! runs, with the facts the summary shows about the choice.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{choose_shard_count, plan, Estimate, Plan};
use crate::history::ItemHistory;
use crate::pipeline::Shards;
use buildfleet_model::duration::fmt_ms;

/// How a split step's items were divided, for the summary and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitInfo {
    /// `files` or `list`.
    pub source: String,
    pub items: usize,
    pub without_history: usize,
    /// What an item without history was predicted to take.
    pub estimate: Duration,
    /// The busiest shard's predicted time.
    pub predicted: Duration,
    pub shard_choice: String,
    pub duplicates: Vec<String>,
}

impl SplitInfo {
    /// One line for the step's log: never a silent guess.
    pub fn describe(&self, shards: usize) -> String {
        let history = match (self.without_history, self.items) {
            (0, _) => "all with duration history".to_owned(),
            (n, m) if n == m => "no duration history used, so balanced by count".to_owned(),
            (n, _) => format!(
                "{n} without duration history, predicted at the median {}",
                fmt_ms(self.estimate.as_millis() as u64)
            ),
        };
        let mut line = format!(
            "split: {} item(s) from `{}` over {shards} shard(s) ({}); {history}; predicted {}",
            self.items,
            self.source,
            self.shard_choice,
            fmt_ms(self.predicted.as_millis() as u64)
        );
        if !self.duplicates.is_empty() {
            line.push_str(&format!(
                "; {} item(s) listed more than once run once: {}",
                self.duplicates.len(),
                self.duplicates.join(", ")
            ));
        }
        line
    }
}

/// The shards (items and predicted time each) and the facts of the choice.
pub struct Planned {
    pub shards: Vec<(Vec<String>, Duration)>,
    pub info: SplitInfo,
}

/// `slots` counts the runner slots that could run the step (0 = none
/// connected yet, which does not cap the count); `budget` is the stage's
/// share of `target_minutes`.
pub fn plan_split(
    source: &'static str,
    shards: Shards,
    items: &[String],
    known: &BTreeMap<String, ItemHistory>,
    slots: u32,
    budget: Option<Duration>,
) -> Planned {
    let weighted: Vec<(String, Option<Duration>)> = items
        .iter()
        .map(|i| (i.clone(), known.get(i).map(|h| h.estimate)))
        .collect();
    let unique = items
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u32;
    let slots_cap = if slots == 0 { u32::MAX } else { slots };
    let any_history = weighted.iter().any(|(_, d)| d.is_some());
    let (plan, choice) = match shards {
        Shards::Fixed(n) => {
            let k = n.min(unique).max(1);
            let choice = if k < n {
                format!("{n} asked, capped at the item count")
            } else {
                "fixed".to_owned()
            };
            (plan(&weighted, k), choice)
        }
        Shards::Auto { max } if !any_history => {
            let k = max.min(slots_cap).min(unique).max(1);
            let choice = format!("auto: no history yet, so the most allowed ({k})");
            (plan(&weighted, k), choice)
        }
        Shards::Auto { max } => {
            let budget = budget.unwrap_or(Duration::MAX);
            let p = choose_shard_count(&weighted, budget, max, slots_cap);
            let choice = match &p {
                Ok(p) if p.makespan() <= budget => format!(
                    "auto: the fewest that fit the stage's {} share of target_minutes",
                    fmt_ms(budget.as_millis() as u64)
                ),
                Ok(_) => format!(
                    "auto: the most allowed (max_shards {max}, {} runner slot(s)); the stage's {} share of target_minutes does not fit",
                    if slots == 0 { "unknown".to_owned() } else { slots.to_string() },
                    fmt_ms(budget.as_millis() as u64)
                ),
                Err(_) => String::new(),
            };
            (p, choice)
        }
    };
    // `plan` only fails for zero shards, which the counts above rule out.
    let plan: Plan = plan.expect("at least one shard");
    let info = SplitInfo {
        source: source.to_owned(),
        items: items.len() - plan.duplicates.len().min(items.len()),
        without_history: plan.without_history,
        estimate: match plan.estimate {
            Estimate::Median(d) => d,
            Estimate::NoHistory => Duration::ZERO,
        },
        predicted: if any_history {
            plan.makespan()
        } else {
            Duration::ZERO
        },
        shard_choice: choice,
        duplicates: plan.duplicates.clone(),
    };
    let shards = plan
        .shards
        .into_iter()
        .map(|s| {
            (
                s.items,
                if any_history {
                    s.predicted
                } else {
                    Duration::ZERO
                },
            )
        })
        .collect();
    Planned { shards, info }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(pairs: &[(&str, u64)]) -> BTreeMap<String, ItemHistory> {
        pairs
            .iter()
            .map(|(n, s)| {
                let h = ItemHistory {
                    estimate: Duration::from_secs(*s),
                    samples: 1,
                };
                (n.to_string(), h)
            })
            .collect()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("i{i:02}")).collect()
    }

    #[test]
    fn fixed_counts_are_capped_at_the_items_and_history_balances() {
        let p = plan_split(
            "files",
            Shards::Fixed(8),
            &names(3),
            &BTreeMap::new(),
            4,
            None,
        );
        assert_eq!(p.shards.len(), 3);
        assert_eq!(p.info.without_history, 3);
        assert!(p.info.describe(3).contains("no duration history used"));

        let h = known(&[("i00", 9), ("i01", 5), ("i02", 4)]);
        let p = plan_split("files", Shards::Fixed(2), &names(3), &h, 4, None);
        assert_eq!(p.info.predicted, Duration::from_secs(9));
        assert_eq!(
            p.shards.iter().map(|s| s.1).max(),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn auto_picks_the_fewest_shards_that_fit_the_budget() {
        let h = known(&[("i00", 60), ("i01", 60), ("i02", 60), ("i03", 60)]);
        let p = plan_split(
            "list",
            Shards::Auto { max: 16 },
            &names(4),
            &h,
            16,
            Some(Duration::from_secs(120)),
        );
        assert_eq!(p.shards.len(), 2, "{}", p.info.shard_choice);
        assert!(p.info.shard_choice.contains("fewest"));
        let p = plan_split(
            "list",
            Shards::Auto { max: 16 },
            &names(4),
            &h,
            3,
            Some(Duration::from_secs(30)),
        );
        assert_eq!(p.shards.len(), 3, "runner slots cap it");
        assert!(p.info.shard_choice.contains("does not fit"));
        let p = plan_split(
            "list",
            Shards::Auto { max: 16 },
            &names(4),
            &BTreeMap::new(),
            3,
            Some(Duration::from_secs(30)),
        );
        assert_eq!(p.shards.len(), 3);
        assert!(p.info.shard_choice.contains("no history"));
    }
}
