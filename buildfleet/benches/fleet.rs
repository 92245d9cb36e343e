//! Fleet benchmarks, run on demand (never in CI):
//!
//!   cargo bench -p buildfleet --bench fleet
//!
//! 1. Overhead per step: `buildfleet run` of 50 trivial steps chained one after
//!    another, against the same 50 commands in one bash script.
//! 2. Parallel efficiency: 64 shards sleeping 0.5 s each on 8 runners
//!    (ideal: 64 × 0.5 / 8 = 4 s).
//!
//! Both sides of each comparison run in the same process, one after the
//! other, several times; medians are reported, because this machine is
//! shared and noisy.
//!
//! `BUILDFLEET_BENCH_BASELINE=/path/to/an/older/buildfleet` also times that
//! binary on the same pipelines, interleaved with this one, to show what a
//! change costs per step.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const REPS: usize = 5;

fn buildfleet_bin() -> std::path::PathBuf {
    // The bench binary sits in target/<profile>/deps; the CLI one level up.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("buildfleet")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn run_pipeline(file: &Path, runners: u32, data: &Path) {
    run_with(&buildfleet_bin(), file, runners, data)
}

fn run_with(bin: &Path, file: &Path, runners: u32, data: &Path) {
    let out = Command::new(bin)
        // `--no-cache`: every repetition must run its steps, not replay
        // the previous repetition's results from the step cache.
        .args([
            "run",
            "--no-cache",
            "--runners",
            &runners.to_string(),
            "--data",
        ])
        .arg(data)
        .arg(file)
        .output()
        .expect("buildfleet runs");
    assert!(
        out.status.success(),
        "pipeline failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chain_pipeline(steps: usize) -> String {
    let mut y = String::from("version: 1\nstages:\n");
    for i in 0..steps {
        y.push_str(&format!(
            "  - name: s{i}\n    steps:\n      - {{ name: step{i}, run: 'true' }}\n"
        ));
    }
    y
}

fn main() {
    let bin = buildfleet_bin();
    assert!(
        bin.exists(),
        "build the CLI first: {} is missing",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    // Outside the pipeline's directory, so the snapshot never walks the cache.
    let data_dir = tempfile::tempdir().unwrap();
    let data = data_dir.path().to_path_buf();

    // 1. Overhead per step.
    let chain50 = dir.path().join("chain50.yaml");
    std::fs::write(&chain50, chain_pipeline(50)).unwrap();
    let chain1 = dir.path().join("chain1.yaml");
    std::fs::write(&chain1, chain_pipeline(1)).unwrap();
    let script = dir.path().join("fifty.sh");
    std::fs::write(&script, "true\n".repeat(50)).unwrap();
    let bash_one = |_: ()| {
        // Same shape as buildfleet: one `bash -euo pipefail -c` per command.
        for _ in 0..50 {
            let s = Command::new("bash")
                .args(["-euo", "pipefail", "-c", "true"])
                .status()
                .unwrap();
            assert!(s.success());
        }
    };
    run_pipeline(&chain1, 1, &data); // warm-up: page cache, RocksDB files
    let mut t_bash_script = Vec::new();
    let mut t_bash_each = Vec::new();
    let mut t_bf1 = Vec::new();
    let mut t_bf50 = Vec::new();
    for _ in 0..REPS {
        t_bash_script.push(time(|| {
            assert!(Command::new("bash")
                .arg(&script)
                .status()
                .unwrap()
                .success())
        }));
        t_bash_each.push(time(|| bash_one(())));
        t_bf1.push(time(|| run_pipeline(&chain1, 1, &data)));
        t_bf50.push(time(|| run_pipeline(&chain50, 1, &data)));
    }
    let (bs, be, b1, b50) = (
        median(t_bash_script),
        median(t_bash_each),
        median(t_bf1),
        median(t_bf50),
    );
    let per_step = (b50.saturating_sub(b1)).as_secs_f64() / 49.0;
    let bash_per_cmd = be.as_secs_f64() / 50.0;
    println!("== overhead per step (median of {REPS}) ==");
    println!(
        "bash script, 50 commands in one process: {:>8.1} ms",
        bs.as_secs_f64() * 1e3
    );
    println!(
        "bash, 50 × `bash -euo pipefail -c true`:   {:>8.1} ms",
        be.as_secs_f64() * 1e3
    );
    println!(
        "buildfleet run, 1 step (startup + 1):      {:>8.1} ms",
        b1.as_secs_f64() * 1e3
    );
    println!(
        "buildfleet run, 50 chained steps:          {:>8.1} ms",
        b50.as_secs_f64() * 1e3
    );
    println!(
        "per step: {:.2} ms total; {:.2} ms over one bash process per command; whole-command overhead vs the script: {:.2} ms/step",
        per_step * 1e3,
        (per_step - bash_per_cmd) * 1e3,
        (b50.saturating_sub(bs)).as_secs_f64() * 1e3 / 50.0
    );

    // 1b. One command under the shard supervisor, as every shard runs now,
    // against the bare shell.
    let supervised = |_: ()| {
        let parent = std::process::id().to_string();
        for _ in 0..50 {
            let s = Command::new(&bin)
                .args(["__shard-supervisor", "--parent", &parent, "--"])
                .args(["bash", "-euo", "pipefail", "-c", "true"])
                .process_group(0)
                .status()
                .unwrap();
            assert!(s.success());
        }
    };
    let mut t_each = Vec::new();
    let mut t_sup = Vec::new();
    for _ in 0..REPS {
        t_each.push(time(|| bash_one(())));
        t_sup.push(time(|| supervised(())));
    }
    let (e, sup) = (median(t_each), median(t_sup));
    println!("== the shard supervisor (median of {REPS}) ==");
    println!(
        "50 × `bash -euo pipefail -c true`:                 {:>8.1} ms",
        e.as_secs_f64() * 1e3
    );
    println!(
        "50 × the same under `buildfleet __shard-supervisor`: {:>8.1} ms",
        sup.as_secs_f64() * 1e3
    );
    println!(
        "supervisor cost per command: {:.2} ms",
        sup.saturating_sub(e).as_secs_f64() * 1e3 / 50.0
    );

    if let Some(base) = std::env::var_os("BUILDFLEET_BENCH_BASELINE") {
        let base = std::path::PathBuf::from(base);
        let base_data = tempfile::tempdir().unwrap();
        run_with(&base, &chain1, 1, base_data.path());
        let (mut n1, mut n50, mut o1, mut o50) = (vec![], vec![], vec![], vec![]);
        for _ in 0..REPS {
            o1.push(time(|| run_with(&base, &chain1, 1, base_data.path())));
            n1.push(time(|| run_pipeline(&chain1, 1, &data)));
            o50.push(time(|| run_with(&base, &chain50, 1, base_data.path())));
            n50.push(time(|| run_pipeline(&chain50, 1, &data)));
        }
        let per = |a: Vec<Duration>, b: Vec<Duration>| {
            (median(b).saturating_sub(median(a))).as_secs_f64() * 1e3 / 49.0
        };
        let (old_step, new_step) = (per(o1.clone(), o50.clone()), per(n1.clone(), n50.clone()));
        println!(
            "== against {} (interleaved, median of {REPS}) ==",
            base.display()
        );
        println!(
            "baseline: 1 step {:.1} ms, 50 steps {:.1} ms, {:.2} ms/step",
            median(o1).as_secs_f64() * 1e3,
            median(o50).as_secs_f64() * 1e3,
            old_step
        );
        println!(
            "this:     1 step {:.1} ms, 50 steps {:.1} ms, {:.2} ms/step",
            median(n1).as_secs_f64() * 1e3,
            median(n50).as_secs_f64() * 1e3,
            new_step
        );
        println!("difference per step: {:+.2} ms", new_step - old_step);
    }

    // 2. Parallel efficiency.
    let wide = dir.path().join("wide.yaml");
    std::fs::write(
        &wide,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: sleepers, shards: 64, run: 'sleep 0.5' }\n",
    )
    .unwrap();
    let noop = dir.path().join("noop.yaml");
    std::fs::write(&noop, chain_pipeline(1)).unwrap();
    let mut t_wide = Vec::new();
    let mut t_noop = Vec::new();
    for _ in 0..3 {
        t_noop.push(time(|| run_pipeline(&noop, 8, &data)));
        t_wide.push(time(|| run_pipeline(&wide, 8, &data)));
    }
    let (w, n) = (median(t_wide), median(t_noop));
    let work = w.saturating_sub(n);
    println!("== parallel efficiency: 64 × sleep 0.5 on 8 runners (median of 3) ==");
    println!(
        "buildfleet run, wall:                      {:>8.1} ms",
        w.as_secs_f64() * 1e3
    );
    println!(
        "buildfleet run of a 1-step no-op, wall:    {:>8.1} ms (startup)",
        n.as_secs_f64() * 1e3
    );
    println!(
        "efficiency, whole command: {:.1}%; excluding fleet startup: {:.1}%",
        400.0 / w.as_secs_f64(),
        400.0 / work.as_secs_f64().max(1e-9)
    );
}
