//! Which split item a test belongs to, so durations learned from JUnit
//! reports balance the next split and a failed test re-runs its own item.
//!
//! Items and test ids are written differently by every tool (`tests/a.py`
//! and `tests/a.py::test_x` for pytest items, `tests.a::test_x` in its
//! report; `crate bin::mod::test` for nextest). Both sides are normalised
//! to `/`-separated names with the item's file extension dropped, and a test
//! belongs to the longest item that is a whole-segment prefix of it.

use std::collections::HashMap;
use std::time::Duration;

fn strip_extension(file: &str) -> &str {
    let start = file.rfind('/').map_or(0, |i| i + 1);
    match file[start..].rfind('.') {
        Some(dot) if dot > 0 => &file[..start + dot],
        _ => file,
    }
}

fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let sep = match c {
            ':' if chars.peek() == Some(&':') => {
                chars.next();
                true
            }
            '.' | ' ' | '/' | '\\' => true,
            _ => false,
        };
        if sep {
            if !out.is_empty() && !out.ends_with('/') {
                out.push('/');
            }
        } else {
            out.push(c);
        }
    }
    while out.ends_with('/') {
        out.pop();
    }
    out
}

/// The normalised name of an item: its file part loses its extension.
fn item_key(item: &str) -> String {
    match item.split_once("::") {
        Some((file, rest)) => normalise(&format!("{}::{rest}", strip_extension(file))),
        None => normalise(strip_extension(item)),
    }
}

/// Looks up the item of a test id among one shard's (or one step's) items.
pub struct Attribution<'a> {
    by_key: HashMap<String, &'a str>,
}

impl<'a> Attribution<'a> {
    pub fn new(items: &'a [String]) -> Attribution<'a> {
        let mut by_key = HashMap::with_capacity(items.len());
        for item in items {
            by_key.entry(item_key(item)).or_insert(item.as_str());
        }
        Attribution { by_key }
    }

    pub fn item_of(&self, test_id: &str) -> Option<&'a str> {
        let mut key = normalise(test_id);
        loop {
            if let Some(item) = self.by_key.get(&key) {
                return Some(item);
            }
            let cut = key.rfind('/')?;
            key.truncate(cut);
        }
    }
}

/// Durations learned from one shard's run.
#[derive(Debug, Default, PartialEq)]
pub struct Learned {
    /// Item and how long it took.
    pub samples: Vec<(String, Duration)>,
    /// Tests that matched no item (their time could not be placed).
    pub unmatched_tests: usize,
    /// Items no test matched, given an even share of the shard's
    /// unexplained time.
    pub spread_items: usize,
}

/// Each item's duration: the sum of its tests' times; items none of whose
/// tests appear share what is left of the shard's wall time (all of it for
/// a one-item shard), so every item ran gets an estimate and the caller can
/// say how many were guessed that way.
pub fn learn(items: &[String], tests: &[(String, Duration)], shard_took: Duration) -> Learned {
    let attribution = Attribution::new(items);
    let mut sums: HashMap<&str, Duration> = HashMap::new();
    let mut learned = Learned::default();
    let mut matched_total = Duration::ZERO;
    for (id, took) in tests {
        match attribution.item_of(id) {
            Some(item) => {
                *sums.entry(item).or_default() += *took;
                matched_total += *took;
            }
            None => learned.unmatched_tests += 1,
        }
    }
    let unexplained: Vec<&String> = items
        .iter()
        .filter(|i| !sums.contains_key(i.as_str()))
        .collect();
    if !unexplained.is_empty() {
        let share = shard_took.saturating_sub(matched_total) / unexplained.len() as u32;
        learned.spread_items = unexplained.len();
        learned
            .samples
            .extend(unexplained.into_iter().map(|i| (i.clone(), share)));
    }
    let mut known: Vec<(String, Duration)> =
        sums.into_iter().map(|(i, d)| (i.to_owned(), d)).collect();
    known.sort();
    learned.samples.extend(known);
    learned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pytest_files_and_test_ids_match_their_report_ids() {
        let files = items(&["tests/test_a.py", "tests/sub/test_b.py"]);
        let a = Attribution::new(&files);
        assert_eq!(a.item_of("tests.test_a::test_x"), Some("tests/test_a.py"));
        assert_eq!(
            a.item_of("tests.sub.test_b.TestK::test_y[1.5]"),
            Some("tests/sub/test_b.py")
        );
        assert_eq!(
            a.item_of("tests.test_ab::test_x"),
            None,
            "whole segments only"
        );

        let ids = items(&[
            "tests/test_a.py::test_x[1.5]",
            "tests/test_a.py::TestK::test_y",
        ]);
        let a = Attribution::new(&ids);
        assert_eq!(
            a.item_of("tests.test_a::test_x[1.5]"),
            Some("tests/test_a.py::test_x[1.5]")
        );
        assert_eq!(
            a.item_of("tests.test_a.TestK::test_y"),
            Some("tests/test_a.py::TestK::test_y")
        );
    }

    #[test]
    fn nextest_list_lines_match_their_report_ids() {
        let list = items(&["buildfleet-cache store::tests::put_get"]);
        let a = Attribution::new(&list);
        assert_eq!(
            a.item_of("buildfleet-cache::store::tests::put_get"),
            Some("buildfleet-cache store::tests::put_get")
        );
    }

    #[test]
    fn learning_sums_tests_and_spreads_the_rest() {
        let ms = Duration::from_millis;
        let list = items(&["t/a.py", "t/b.py", "t/c.py"]);
        let tests = vec![
            ("t.a::x".to_string(), ms(100)),
            ("t.a::y".to_string(), ms(50)),
            ("other::z".to_string(), ms(5)),
        ];
        let l = learn(&list, &tests, ms(1150));
        assert_eq!(l.unmatched_tests, 1);
        assert_eq!(l.spread_items, 2);
        assert!(l.samples.contains(&("t/a.py".into(), ms(150))));
        assert!(l.samples.contains(&("t/b.py".into(), ms(500))));
        assert!(l.samples.contains(&("t/c.py".into(), ms(500))));
        let single = learn(&items(&["only"]), &[], ms(42));
        assert_eq!(single.samples, vec![("only".into(), ms(42))]);
    }
}
