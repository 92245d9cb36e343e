//! The partitioner's promises, as properties: every item exactly once, the
//! same split for the same inputs in any order, and the LPT bounds.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn items(durations: &[Option<u64>]) -> Vec<(String, Option<Duration>)> {
    durations
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("test_{i:03}.py"), d.map(Duration::from_millis)))
        .collect()
}

fn weights(plan: &Plan, items: &[(String, Option<Duration>)]) -> Vec<Duration> {
    let fill = match plan.estimate {
        Estimate::Median(m) => m,
        Estimate::NoHistory => Duration::from_secs(1),
    };
    items.iter().map(|(_, d)| d.unwrap_or(fill)).collect()
}

/// The best possible makespan, by trying every assignment (small inputs).
fn optimum(weights: &[Duration], shards: usize) -> Duration {
    fn go(i: usize, w: &[Duration], loads: &mut Vec<Duration>, best: &mut Duration) {
        if i == w.len() {
            *best = (*best).min(loads.iter().copied().max().unwrap_or_default());
            return;
        }
        for s in 0..loads.len() {
            loads[s] += w[i];
            if loads[s] < *best {
                go(i + 1, w, loads, best);
            }
            loads[s] -= w[i];
        }
    }
    let mut best = Duration::MAX;
    go(0, weights, &mut vec![Duration::ZERO; shards], &mut best);
    best
}

proptest! {
    #[test]
    fn every_item_lands_in_exactly_one_shard(
        durations in prop::collection::vec(prop::option::of(1u64..100_000), 0..200),
        shards in 1u32..20,
    ) {
        let items = items(&durations);
        let plan = plan(&items, shards).unwrap();
        prop_assert_eq!(plan.shards.len(), shards as usize);
        let mut seen = BTreeSet::new();
        for shard in &plan.shards {
            for item in &shard.items {
                prop_assert!(seen.insert(item.clone()), "{} in two shards", item);
            }
        }
        let all: BTreeSet<String> = items.iter().map(|(n, _)| n.clone()).collect();
        prop_assert_eq!(seen, all);
        prop_assert_eq!(plan.without_history, durations.iter().filter(|d| d.is_none()).count());
    }

    #[test]
    fn the_same_items_in_any_order_give_the_same_split(
        durations in prop::collection::vec(prop::option::of(1u64..1000), 1..60),
        shards in 1u32..8,
        seed in any::<u64>(),
    ) {
        let items = items(&durations);
        let mut shuffled = items.clone();
        // A deterministic shuffle from the seed.
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        prop_assert_eq!(plan(&items, shards).unwrap(), plan(&shuffled, shards).unwrap());
    }

    #[test]
    fn makespan_is_within_the_list_scheduling_bound(
        durations in prop::collection::vec(prop::option::of(1u64..100_000), 1..300),
        shards in 1u32..32,
    ) {
        let items = items(&durations);
        let plan = plan(&items, shards).unwrap();
        let w = weights(&plan, &items);
        let total: Duration = w.iter().sum();
        let longest = w.iter().copied().max().unwrap();
        let lower = longest.max(total / shards);
        prop_assert!(plan.makespan() >= lower);
        prop_assert!(plan.makespan() <= total / shards + longest, "{:?} > {:?} + {:?}", plan.makespan(), total / shards, longest);
        let predicted: Duration = plan.shards.iter().map(|s| s.predicted).sum();
        prop_assert_eq!(predicted, total);
    }

    #[test]
    fn makespan_is_within_grahams_four_thirds_of_the_optimum(
        durations in prop::collection::vec(1u64..1000, 1..9),
        shards in 1u32..4,
    ) {
        let items = items(&durations.iter().map(|d| Some(*d)).collect::<Vec<_>>());
        let plan = plan(&items, shards).unwrap();
        let opt = optimum(&weights(&plan, &items), shards as usize);
        let k = f64::from(shards);
        let bound = opt.as_secs_f64() * (4.0 / 3.0 - 1.0 / (3.0 * k));
        prop_assert!(plan.makespan().as_secs_f64() <= bound + 1e-9, "{:?} vs optimum {:?}", plan.makespan(), opt);
    }
}

#[test]
fn shell_words_quote_only_what_needs_it() {
    let items = vec![
        "tests/test_a.py".to_string(),
        "it's here.py".to_string(),
        "a b".to_string(),
    ];
    assert_eq!(
        shell_words(&items),
        "tests/test_a.py 'it'\\''s here.py' 'a b'"
    );
}

#[test]
fn assign_never_makes_empty_shards() {
    let items: Vec<String> = (0..3).map(|i| format!("f{i}")).collect();
    let plan = assign(&items, 8).unwrap();
    assert_eq!(plan.shards.len(), 3);
    assert!(plan.shards.iter().all(|s| s.items.len() == 1));
    assert_eq!(assign(&items, 2).unwrap().shards.len(), 2);
}

#[test]
fn unknown_items_are_predicted_at_the_median_and_counted() {
    let items = items(&[Some(10), Some(30), Some(20), None, None]);
    let plan = plan(&items, 2).unwrap();
    assert_eq!(plan.estimate, Estimate::Median(Duration::from_millis(20)));
    assert_eq!(plan.without_history, 2);
    let none = super::plan(&items[3..], 2).unwrap();
    assert_eq!(none.estimate, Estimate::NoHistory);
    assert_eq!(none.shards[0].items.len() + none.shards[1].items.len(), 2);
    assert_eq!(
        none.shards[0].items.len(),
        1,
        "equal weights balance counts"
    );
}

#[test]
fn duplicates_run_once_and_are_reported() {
    let mut items = items(&[Some(5), Some(5)]);
    items.push(items[0].clone());
    let plan = plan(&items, 2).unwrap();
    assert_eq!(plan.duplicates, vec!["test_000.py".to_string()]);
    let total: usize = plan.shards.iter().map(|s| s.items.len()).sum();
    assert_eq!(total, 2);
    assert_eq!(super::plan(&items, 0), Err(SplitError::NoShards));
}

#[test]
fn auto_picks_the_fewest_shards_that_fit_within_the_limits() {
    // 12 items of 10 s: 120 s of work.
    let items = items(&[Some(10_000); 12]);
    let fit = choose_shard_count(&items, Duration::from_secs(40), 16, 16).unwrap();
    assert_eq!(fit.shards.len(), 3);
    assert_eq!(fit.makespan(), Duration::from_secs(40));
    let capped = choose_shard_count(&items, Duration::from_secs(10), 4, 16).unwrap();
    assert_eq!(capped.shards.len(), 4, "max_shards caps it");
    let slots = choose_shard_count(&items, Duration::from_secs(10), 16, 2).unwrap();
    assert_eq!(slots.shards.len(), 2, "runner slots cap it");
    let few = choose_shard_count(&items[..3], Duration::from_secs(1), 16, 16).unwrap();
    assert_eq!(few.shards.len(), 3, "never more shards than items");
}
