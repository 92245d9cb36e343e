//! Passing a ~500 MB artifact to a dependent step on a warm runner, against
//! `cp -a` of the same tree — run on demand (never in CI):
//!
//!   cargo bench -p buildfleet --bench artifacts
//!
//! A real embedded fleet (RocksDB cache, coordinator, one runner with its
//! local CAS) runs `build` (declares the tree as its output) → `use` (needs
//! it, runs `test -d tree`), and beside them `plain` (no dependency, runs
//! `true`) as the fixed cost of a shard. The first run uploads the tree and
//! warms the runner's local CAS; in every later run `build` is reused from
//! the step cache and `use` receives the artifact from the warm local CAS.
//! The cost of passing it is `use`'s shard time minus `plain`'s, measured
//! beside `cp -a` and `cp -al` of the same tree, interleaved, medians.
//!
//! The tree is made once under `$BUILDFLEET_BENCH_DIR/artifact-tree`
//! (default `/var/tmp/buildfleet-bench`): 2,000 directories × 10 files of
//! 16 KiB plus 20 files of 10 MiB, random bytes (~512 MiB, 20,020 files).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use buildfleet::fleet::{EmbeddedFleet, FleetOptions};
use buildfleet::wire::{Coordinator, Submitted};
use buildfleet_cache::CasClient;
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_model::{RunStatus, Submission};

fn reps() -> usize {
    std::env::var("BUILDFLEET_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

fn bench_dir() -> PathBuf {
    std::env::var_os("BUILDFLEET_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/buildfleet-bench"))
}

/// A tiny xorshift stream: incompressible, distinct bytes without a crate.
fn fill(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let bytes = seed.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn make_tree(root: &Path) -> (u64, u64) {
    let ready = root.with_extension("ready");
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(root);
        let mut small = vec![0u8; 16 * 1024];
        for d in 0..2000 {
            let dir = root.join(format!("pkg{:02}/mod{d:04}", d % 50));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..10 {
                fill(&mut small, &mut seed);
                std::fs::write(dir.join(format!("f{f}.js")), &small).unwrap();
            }
        }
        let mut big = vec![0u8; 10 * 1024 * 1024];
        for b in 0..20 {
            fill(&mut big, &mut seed);
            std::fs::write(root.join(format!("blob{b:02}.bin")), &big).unwrap();
        }
        std::fs::write(&ready, "").unwrap();
    }
    let out = Command::new("du").args(["-sb"]).arg(root).output().unwrap();
    let bytes = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    (20_020, bytes)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn shard_ms(status: &RunStatus, step: &str) -> u64 {
    status
        .steps
        .iter()
        .find(|s| s.name == step)
        .and_then(|s| s.shards.first())
        .map_or(0, |sh| sh.duration_ms)
}

async fn run(c: &mut Coordinator, cas: &CasClient, yaml: &str, input: &Path) -> RunStatus {
    let snap = buildfleet_cache::snapshot(input).unwrap();
    cas.upload_snapshot(&snap).await.unwrap();
    let id = match c
        .submit(Submission {
            pipeline_path: "artifacts.yaml".into(),
            pipeline_yaml: yaml.to_owned(),
            input_root: snap.root,
            idempotency_key: None,
            split_items: Default::default(),
            no_cache: false,
            project: "bench".into(),
            quarantine: Vec::new(),
            fail_on_flaky: false,
            context: Default::default(),
            vars: Default::default(),
        })
        .await
        .unwrap()
    {
        Submitted::Run(id) => id,
        Submitted::Invalid(why) => panic!("{why}"),
    };
    loop {
        let status = c.get(&id).await.unwrap();
        if status.state.is_terminal() {
            assert!(status.state.is_green(), "{:?}", status.state);
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let ok = cmd.status().unwrap().success();
    let took = t.elapsed();
    assert!(ok, "{cmd:?} failed");
    took
}

fn main() {
    let base = bench_dir();
    let tree = base.join("artifact-tree");
    std::fs::create_dir_all(&base).unwrap();
    let (files, bytes) = make_tree(&tree);
    println!(
        "tree: {files} files, {:.0} MiB at {}",
        bytes as f64 / 1048576.0,
        tree.display()
    );
    let scratch = tempfile::tempdir_in(&base).unwrap();
    let input = scratch.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("marker"), "1").unwrap();
    let yaml = format!(
        r#"version: 1
env: {{ TREE: "{}" }}
stages:
  - name: build
    steps:
      - {{ name: build, inputs: [marker], run: 'cp -a "$TREE" tree', outputs: [tree] }}
      - {{ name: plain, needs: [], cache: false, run: 'true' }}
  - name: use
    steps:
      - {{ name: use, needs: [build], cache: false, run: 'test -d tree/pkg00' }}
"#,
        tree.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = scratch.path().join("data");
    let supervisor = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("buildfleet");
    let fleet = rt
        .block_on(EmbeddedFleet::start(FleetOptions {
            data_dir: data,
            cache_limits: buildfleet_cache::StoreLimits::unlimited(),
            runners: 1,
            coordinator: CoordinatorConfig::default(),
            kill_grace: Duration::from_millis(500),
            min_free_disk: 0,
            runner_labels: Vec::new(),
            supervisor,
            step_users: buildfleet_runner::step_users::StepUsers::Runner,
            dashboard: None,
        }))
        .unwrap();
    let (mut coordinator, cas) = rt.block_on(async {
        (
            Coordinator::connect(&fleet.coordinator_url, &fleet.client)
                .await
                .unwrap(),
            CasClient::connect_with(&fleet.cache_url, &fleet.client)
                .await
                .unwrap(),
        )
    });
    let t = Instant::now();
    let first = rt.block_on(run(&mut coordinator, &cas, &yaml, &input));
    println!(
        "first run (build + upload, cold local CAS): {} (build {} ms, use {} ms)",
        ms(t.elapsed()),
        shard_ms(&first, "build"),
        shard_ms(&first, "use")
    );
    let (mut passed, mut cp, mut cpl, mut uses, mut plains) =
        (vec![], vec![], vec![], vec![], vec![]);
    // The shard's time includes removing its directory afterwards; the
    // copies are timed with their removal too, so like is compared to like.
    let (mut cp_rm, mut cpl_rm) = (vec![], vec![]);
    for rep in 0..reps() {
        let status = rt.block_on(run(&mut coordinator, &cas, &yaml, &input));
        let cached = status
            .steps
            .iter()
            .any(|s| s.name == "build" && s.state == buildfleet_model::State::Cached);
        assert!(cached, "build must be reused: {:?}", status.steps);
        let (u, p) = (shard_ms(&status, "use"), shard_ms(&status, "plain"));
        uses.push(Duration::from_millis(u));
        plains.push(Duration::from_millis(p));
        passed.push(Duration::from_millis(u.saturating_sub(p)));
        let dest = scratch.path().join(format!("cp{rep}"));
        let copy = timed(Command::new("cp").arg("-a").arg(&tree).arg(&dest));
        let rm = timed(Command::new("rm").arg("-rf").arg(&dest));
        cp.push(copy);
        cp_rm.push(copy + rm);
        let link = timed(Command::new("cp").arg("-al").arg(&tree).arg(&dest));
        let rm = timed(Command::new("rm").arg("-rf").arg(&dest));
        cpl.push(link);
        cpl_rm.push(link + rm);
    }
    let (pass, copy, link) = (median(passed), median(cp), median(cpl));
    println!("| method | median of {} |", reps());
    println!("| --- | ---: |");
    println!(
        "| `use` shard (artifact placed + `test -d`) | {} |",
        ms(median(uses))
    );
    println!(
        "| `plain` shard (`true`, no artifact) | {} |",
        ms(median(plains))
    );
    println!("| **artifact passed (use − plain)** | **{}** |", ms(pass));
    let (copy_rm, link_rm) = (median(cp_rm), median(cpl_rm));
    println!("| `cp -a tree dest` | {} |", ms(copy));
    println!("| `cp -a` + `rm -rf` | {} |", ms(copy_rm));
    println!("| `cp -al tree dest` | {} |", ms(link));
    println!("| `cp -al` + `rm -rf` | {} |", ms(link_rm));
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(0.001);
    println!(
        "cp -a ÷ artifact: {:.1}× ({:.1}× counting removal); artifact ÷ cp -al: {:.2}× ({:.2}× counting removal)",
        ratio(copy, pass),
        ratio(copy_rm, pass),
        ratio(pass, link),
        ratio(pass, link_rm)
    );
    rt.block_on(fleet.shutdown());
}
