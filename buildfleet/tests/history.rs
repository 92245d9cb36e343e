//! `split: { list }` and duration history: a runner lists the items, the
//! coordinator learns each item's time from the JUnit reports, and the next
//! run's split (and `shards: auto` count) follows what it learned.

mod harness;

use std::collections::BTreeMap;

use buildfleet_proto::v1 as pb;
use harness::{kind, stdout_of, step, system_of};

/// Items are `suite/NAME_MS`; the step reports each as a test of class
/// `suite` taking MS milliseconds (without sleeping: history only needs
/// the reports).
const REPORTING_STEP: &str = r#"        reports: [report.xml]
        cache: false
        run: |
          for i in $BUILDFLEET_SHARD_ITEMS; do echo "item $i"; done
          {
            echo '<testsuites><testsuite name="s">'
            for i in $BUILDFLEET_SHARD_ITEMS; do
              ms=${i##*_}
              printf '<testcase classname="suite" name="%s" time="%d.%03d"/>\n' "${i#suite/}" $((ms/1000)) $((ms%1000))
            done
            echo '</testsuite></testsuites>'
          } > report.xml
"#;

fn pipeline(head: &str, step_fields: &str) -> String {
    format!(
        "version: 1\n{head}stages:\n  - name: s\n    steps:\n      - name: t\n{step_fields}{REPORTING_STEP}"
    )
}

/// Which items each shard ran, from the `item X` lines in its log.
fn items_by_shard(events: &[pb::RunEvent], shards: usize) -> Vec<Vec<String>> {
    (0..shards as u32)
        .map(|i| {
            stdout_of(events, "t", i)
                .lines()
                .filter_map(|l| l.strip_prefix("item "))
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_split_learns_durations_and_the_next_split_balances_by_them() {
    let fleet = harness::start(2).await;
    let yaml = pipeline(
        "",
        "        shards: 2\n        split: { list: \"cat items.txt\" }\n",
    );
    let items = "suite/big_6000\nsuite/a_1500\n\nsuite/b_1500\nsuite/c_1500\nsuite/d_1500\n";
    let files = [("items.txt", items)];

    let (first, events) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&first.state), pb::StateKind::Succeeded);
    let split = step(&first, "t").split.clone().expect("split status");
    assert_eq!(
        (split.source.as_str(), split.items, split.without_history),
        ("list", 5, 5)
    );
    assert_eq!(split.predicted_ms, 0, "no history, no prediction");
    let ran: Vec<String> = items_by_shard(&events, 2).concat();
    let mut sorted = ran.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            "suite/a_1500",
            "suite/b_1500",
            "suite/big_6000",
            "suite/c_1500",
            "suite/d_1500"
        ]
    );
    let log = system_of(&events, "t", 0);
    assert!(log.contains("`cat items.txt` listed 5 item(s)"), "{log}");
    assert!(log.contains("no duration history used"), "{log}");

    let (second, events) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&second.state), pb::StateKind::Succeeded);
    let t = step(&second, "t");
    let split = t.split.clone().unwrap();
    assert_eq!(split.without_history, 0);
    assert_eq!(
        split.predicted_ms, 6000,
        "the big item alone sets the makespan"
    );
    let mut shards = items_by_shard(&events, 2);
    shards.sort_by_key(|s| s.len());
    assert_eq!(
        shards[0],
        ["suite/big_6000"],
        "LPT puts the long item alone"
    );
    assert_eq!(shards[1].len(), 4);
    let predicted: Vec<u64> = t.shards.iter().map(|s| s.predicted_ms).collect();
    let mut predicted = predicted;
    predicted.sort();
    assert_eq!(predicted, [6000, 6000], "both shards predicted at 6 s");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_shards_fit_the_stage_budget_once_history_exists() {
    let fleet = harness::start(3).await;
    // One stage, so the whole 1-minute target is its budget; six 20 s items
    // fit in two shards (60 s each).
    let yaml = pipeline(
        "target_minutes: 1\n",
        "        shards: auto\n        split: { list: \"cat items.txt\" }\n",
    );
    let items: String = (0..6).map(|i| format!("suite/i{i}_20000\n")).collect();
    let files = [("items.txt", items.as_str())];
    let (first, _) = fleet.run_with(&yaml, &files, false).await;
    let t = step(&first, "t");
    assert_eq!(t.shards.len(), 3, "no history: every runner slot");
    assert!(t
        .split
        .as_ref()
        .unwrap()
        .shard_choice
        .contains("no history"));

    let (second, _) = fleet.run_with(&yaml, &files, false).await;
    let t = step(&second, "t");
    let split = t.split.clone().unwrap();
    assert_eq!(t.shards.len(), 2, "{}", split.shard_choice);
    assert!(
        split.shard_choice.contains("fewest"),
        "{}",
        split.shard_choice
    );
    assert_eq!(split.predicted_ms, 60_000);
    let counts: BTreeMap<u32, u32> = t.shards.iter().map(|s| (s.index, s.items)).collect();
    assert_eq!(counts.values().sum::<u32>(), 6);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_empty_listing_fails_the_step_and_says_why() {
    let fleet = harness::start(1).await;
    let failing = "version: 1\nstages:\n  - name: s\n    steps:\n      - name: t\n        split: { list: \"echo listing-broke >&2; exit 3\" }\n        run: 'true'\n  - name: after\n    steps:\n      - name: later\n        run: 'true'\n";
    let (status, events) = fleet.run(failing, &[]).await;
    assert_eq!(kind(&status.state), pb::StateKind::Failed);
    let t = step(&status, "t");
    let reason = &t.state.as_ref().unwrap().reason;
    assert!(
        reason.contains("listing items with `echo listing-broke >&2; exit 3` failed (exit code 3)"),
        "{reason}"
    );
    assert!(t.shards.is_empty(), "no shards were made");
    assert_eq!(kind(&step(&status, "later").state), pb::StateKind::Skipped);
    let stderr = harness::log_of(&events, "t", 0, pb::LogStream::Stderr);
    assert!(
        stderr.contains("listing-broke"),
        "the listing's stderr is kept: {stderr}"
    );

    let empty = "version: 1\nstages:\n  - name: s\n    steps:\n      - name: t\n        split: { list: \"printf '\\\\n  \\\\n'\" }\n        run: 'true'\n";
    let (status, _) = fleet.run(empty, &[]).await;
    let reason = step(&status, "t").state.clone().unwrap().reason;
    assert!(reason.contains("printed no items"), "{reason}");
    fleet.stop().await;
}
