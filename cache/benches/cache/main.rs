//! Cache benchmarks, run on demand (never in CI):
//!
//!   cargo bench --bench cache                 # everything
//!   cargo bench --bench cache -- restore      # or: transfer, hashing
//!
//! 1. restore: warm restore of an npm `node_modules` tree (~24,000 files)
//!    through a runner's LocalCas, against `tar -I zstd -xf` of the same
//!    tree and `cp -al` (the floor); cold restores shown for honesty.
//! 2. transfer: CasClient upload and download over loopback against a real
//!    server (RocksStore and MemoryStore): 64 × 16 MiB and 100,000 × 2 KiB
//!    blobs, and the latency of single small RPCs.
//! 3. hashing: our snapshot of the tree against `b3sum` on the same files.
//!
//! The machine is shared and noisy, so the sides of each comparison run
//! interleaved in one process and medians are reported. The dataset is
//! prepared once by `scripts/bench-node-deps` under `$BUILDFLEET_BENCH_DIR`
//! (default /var/tmp/buildfleet-bench); `BUILDFLEET_BENCH_REPS` overrides
//! the repetitions.

mod dataset;
mod hashing;
mod restore;
mod server;
mod transfer;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Medians and percentiles of a set of timings.
#[derive(Default)]
pub struct Timings(Vec<Duration>);

impl Timings {
    pub fn new() -> Timings {
        Timings(Vec::new())
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    pub fn median(&self) -> Duration {
        let v = self.sorted();
        v[v.len() / 2]
    }

    /// The nearest-rank percentile `p` (0–100).
    pub fn percentile(&self, p: f64) -> Duration {
        let v = self.sorted();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        *self.0.iter().max().expect("timings")
    }
}

/// CPU time (user + system) of this process's threads so far, grouped by
/// what they do: the client runtime (`bf-client`), the server runtime
/// (`bf-server`), RocksDB's background threads, and the rest. Read from
/// /proc, to tell which side a CPU-bound transfer spends its time on.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub client: Duration,
    pub server: Duration,
    pub rocksdb: Duration,
    pub other: Duration,
}

impl CpuSplit {
    pub fn now() -> CpuSplit {
        let mut split = CpuSplit::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return split;
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let name = head.split_once(" (").map_or("", |(_, n)| n);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            // utime and stime: fields 14 and 15 of the line, 11 and 12 after
            // the name; in USER_HZ (100 on Linux).
            let cpu = Duration::from_millis((ticks(11) + ticks(12)) * 10);
            let bucket = if name.starts_with("bf-client") {
                &mut split.client
            } else if name.starts_with("bf-server") {
                &mut split.server
            } else if name.starts_with("rocksdb") {
                &mut split.rocksdb
            } else {
                &mut split.other
            };
            *bucket += cpu;
        }
        split
    }

    pub fn total(&self) -> Duration {
        self.client + self.server + self.rocksdb + self.other
    }

    /// Cores each group kept busy over `wall`, since `earlier`.
    pub fn busy_since(&self, earlier: &CpuSplit, wall: Duration) -> [f64; 4] {
        let per = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() / wall.as_secs_f64();
        [
            per(self.client, earlier.client),
            per(self.server, earlier.server),
            per(self.rocksdb, earlier.rocksdb),
            per(self.other, earlier.other),
        ]
    }
}

/// Wall time and cores kept busy per thread group while `f` runs. Threads
/// that ended meanwhile are not counted, so the figures are lower bounds.
pub fn time_cpu<T>(f: impl FnOnce() -> T) -> (Duration, [f64; 4], T) {
    let before = CpuSplit::now();
    let (wall, out) = time(f);
    (wall, CpuSplit::now().busy_since(&before, wall), out)
}

pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "✔"
    } else {
        "✘ (missed)"
    }
}

/// `BUILDFLEET_BENCH_REPS`, else `default`.
pub fn reps(default: usize) -> usize {
    std::env::var("BUILDFLEET_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Removes a directory tree (read-only files are fine: unlinking depends
/// on the directory's mode, not the file's).
pub fn remove_tree(path: &Path) {
    match std::fs::remove_dir_all(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot remove {}: {e}", path.display()),
    }
}

/// A scratch directory under the bench directory (same filesystem as the
/// dataset), removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn create() -> Scratch {
        let base = dataset::bench_dir();
        std::fs::create_dir_all(&base).expect("bench dir");
        let dir = base.join(format!("work-{}", std::process::id()));
        remove_tree(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

fn machine_notes() {
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    println!(
        "machine: {} cores ({}), {} RAM, kernel {}, bench dir on {} ({})",
        sh("nproc"),
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs"),
        sh("free -h | awk '/Mem:/ {print $2}'"),
        sh("uname -r"),
        sh(&format!(
            "df --output=source {} | tail -1",
            dataset::bench_dir().display()
        )),
        sh(&format!("stat -f -c %T {}", dataset::bench_dir().display())),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else selects benchmarks.
    let selected: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| selected.is_empty() || selected.iter().any(|s| s == name);
    machine_notes();
    let scratch = Scratch::create();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bf-client")
        .enable_all()
        .build()
        .expect("client runtime");
    if wants("restore") || wants("hashing") {
        let data = dataset::node_deps();
        if wants("restore") {
            restore::run(&runtime, &data, scratch.path());
        }
        if wants("hashing") {
            hashing::run(&data);
        }
    }
    if wants("transfer") {
        transfer::run(&runtime, scratch.path());
    }
}
