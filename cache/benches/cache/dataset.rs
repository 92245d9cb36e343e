//! The node-deps dataset and the external tools, set up on first use by the
//! scripts next to the repository, outside it.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Dataset {
    /// The installed tree (`node_modules`).
    pub tree: PathBuf,
    /// The same tree as `tar -I zstd` packs it.
    pub tarball: PathBuf,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cache crate sits in the workspace")
        .to_owned()
}

/// `$BUILDFLEET_BENCH_DIR`, else /var/tmp/buildfleet-bench.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("BUILDFLEET_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/buildfleet-bench"))
}

/// Runs `scripts/bench-node-deps` (a no-op once the dataset is ready).
pub fn node_deps() -> Dataset {
    let dir = bench_dir().join("node-deps");
    let status = Command::new(repo_root().join("scripts/bench-node-deps"))
        .arg(&dir)
        .status()
        .expect("run scripts/bench-node-deps");
    assert!(status.success(), "dataset set-up failed");
    let ready = std::fs::read_to_string(dir.join(".ready")).unwrap_or_default();
    println!("dataset: {} ({})", dir.display(), ready.trim());
    Dataset {
        tree: dir.join("node_modules"),
        tarball: dir.join("node_modules.tar.zst"),
    }
}

/// The `b3sum` to compare with: `$B3SUM`, one on PATH, or one installed
/// by `scripts/bench-b3sum` into the bench directory.
pub fn b3sum() -> PathBuf {
    if let Some(path) = std::env::var_os("B3SUM") {
        return PathBuf::from(path);
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v b3sum"])
        .output()
        .expect("sh");
    if on_path.status.success() {
        return PathBuf::from(String::from_utf8_lossy(&on_path.stdout).trim());
    }
    let output = Command::new(repo_root().join("scripts/bench-b3sum"))
        .output()
        .expect("run scripts/bench-b3sum");
    assert!(
        output.status.success(),
        "installing b3sum failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Regular files under `dir`, as `find -type f` counts them.
pub fn count_files(dir: &Path) -> u64 {
    let out = Command::new("sh")
        .arg("-c")
        .arg("find \"$1\" -type f | wc -l")
        .arg("sh")
        .arg(dir)
        .output()
        .expect("find");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a count")
}
