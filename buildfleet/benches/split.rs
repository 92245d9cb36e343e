//! Split benchmark, run on demand (never in CI):
//!
//!   cargo bench -p buildfleet --bench split
//!
//! 400 items with skewed, known durations — 40 minutes of work scaled down
//! 60× to 40 s of `sleep` — listed by `split: { list }` and run on 16
//! runners (16 shards). Each repetition runs the pipeline twice on a fresh
//! data directory: first with no history (balanced by item count), then
//! split by the durations the first run's JUnit report taught.
//!
//! The wall time is the shard phase: from the first shard's start to the
//! last shard's end, as the shards themselves print them. It is compared
//! with the lower bound max(longest item, total / 16). The whole
//! `buildfleet run` (process start, RocksDB, listing lease) is shown too.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ITEMS: usize = 400;
const RUNNERS: u32 = 16;
const REPS: usize = 3;
/// 40 minutes, scaled down 60×.
const TOTAL_MS: f64 = 40.0 * 60.0 * 1000.0 / 60.0;

/// Zipf-like durations (weight 1/(i+8)^1.1), summing to TOTAL_MS; listed
/// in a scrambled order so the input order carries no hint.
fn items() -> Vec<(String, u64)> {
    let weights: Vec<f64> = (0..ITEMS)
        .map(|i| 1.0 / ((i + 8) as f64).powf(1.1))
        .collect();
    let sum: f64 = weights.iter().sum();
    let mut out: Vec<(String, u64)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let ms = (w / sum * TOTAL_MS).round() as u64;
            (format!("suite/item{:03}_{ms}", (i * 7919) % ITEMS), ms)
        })
        .collect();
    out.sort();
    out
}

const PIPELINE: &str = r#"version: 1
stages:
  - name: s
    steps:
      - name: t
        shards: 16
        split: { list: "cat items.txt" }
        reports: [report.xml]
        cache: false
        run: |
          echo "start $(date +%s.%N)"
          {
            echo '<testsuites><testsuite name="s">'
            for i in $BUILDFLEET_SHARD_ITEMS; do
              ms=${i##*_}
              sleep "$((ms/1000)).$(printf %03d $((ms%1000)))"
              printf '<testcase classname="suite" name="%s" time="%d.%03d"/>\n' "${i#suite/}" $((ms/1000)) $((ms%1000))
            done
            echo '</testsuite></testsuites>'
          } > report.xml
          echo "end $(date +%s.%N)"
"#;

fn buildfleet_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("buildfleet")
}

/// Runs the pipeline; returns the whole command's time and the shard phase.
fn run(file: &Path, data: &Path) -> (Duration, Duration) {
    let t = Instant::now();
    let out = Command::new(buildfleet_bin())
        .args(["run", "--runners", &RUNNERS.to_string(), "--data"])
        .arg(data)
        .arg(file)
        .output()
        .expect("buildfleet runs");
    let whole = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pipeline failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stamp = |word: &str| -> Vec<f64> {
        text.lines()
            .filter_map(|l| {
                l.split_once(" | ")?
                    .1
                    .strip_prefix(word)?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect()
    };
    let (starts, ends) = (stamp("start "), stamp("end "));
    assert_eq!(
        (starts.len(), ends.len()),
        (RUNNERS as usize, RUNNERS as usize),
        "{text}"
    );
    let first = starts.iter().copied().fold(f64::MAX, f64::min);
    let last = ends.iter().copied().fold(0.0, f64::max);
    (whole, Duration::from_secs_f64(last - first))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let items = items();
    let total: u64 = items.iter().map(|i| i.1).sum();
    let longest = items.iter().map(|i| i.1).max().unwrap();
    let bound = Duration::from_millis(longest.max(total / RUNNERS as u64));
    println!(
        "{ITEMS} items, {:.1} s of work (40 min / 60), longest {:.2} s; lower bound max(longest, total/{RUNNERS}) = {:.2} s",
        total as f64 / 1000.0,
        longest as f64 / 1000.0,
        bound.as_secs_f64()
    );
    let dir = tempfile::tempdir().unwrap();
    let list: String = items.iter().map(|(n, _)| format!("{n}\n")).collect();
    std::fs::write(dir.path().join("items.txt"), list).unwrap();
    let file = dir.path().join("buildfleet.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let (mut cold, mut warm, mut cold_whole, mut warm_whole) = (vec![], vec![], vec![], vec![]);
    for rep in 0..REPS {
        let data = tempfile::tempdir().unwrap();
        let (w1, p1) = run(&file, data.path());
        let (w2, p2) = run(&file, data.path());
        println!(
            "rep {rep}: no history {:.2} s (whole run {:.2} s); with history {:.2} s (whole run {:.2} s)",
            p1.as_secs_f64(),
            w1.as_secs_f64(),
            p2.as_secs_f64(),
            w2.as_secs_f64()
        );
        cold.push(p1);
        warm.push(p2);
        cold_whole.push(w1);
        warm_whole.push(w2);
    }
    let ratio = |d: Duration| d.as_secs_f64() / bound.as_secs_f64();
    let (c, w) = (median(cold), median(warm));
    println!(
        "median shard phase: no history {:.2} s = {:.3}× bound; with history {:.2} s = {:.3}× bound (aim ≤ 1.10×)",
        c.as_secs_f64(),
        ratio(c),
        w.as_secs_f64(),
        ratio(w)
    );
    println!(
        "median whole `buildfleet run`: no history {:.2} s, with history {:.2} s",
        median(cold_whole).as_secs_f64(),
        median(warm_whole).as_secs_f64()
    );
}
