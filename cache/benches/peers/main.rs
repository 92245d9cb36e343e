//! buildfleet's cache side by side with a peer REAPI server, measured by a
//! client that speaks only standard REAPI (the generated gRPC stubs: no
//! `CasClient`, no buildfleet extension), run on demand, never in CI:
//!
//!   cargo bench -p buildfleet-cache --bench peers
//!
//! Servers, each a process of its own (so its peak memory is its own):
//! buildfleet's cache over RocksDB with BLAKE3 and with SHA-256 digests
//! (this very binary, re-executed as a server), and BuildGrid from PyPI
//! in memory and on disk (a venv made under `$BUILDFLEET_BENCH_DIR`,
//! default /var/tmp/buildfleet-bench; skipped, and said, when it cannot
//! be made). Workloads, each at concurrency 1 and 8 (one connection per
//! client task): 64 × 16 MiB over ByteStream up then down, and 100,000 ×
//! 2 KiB through BatchUpdateBlobs then BatchReadBlobs. Medians of
//! `BUILDFLEET_BENCH_REPS` (default 3) runs, a fresh server for each.
//! The loopback ceiling (`iperf3`, when installed) is measured in the same
//! run.

mod client;
mod servers;
mod workloads;

use std::time::Duration;

fn main() {
    if let Some(spec) = std::env::var_os(servers::SERVE_ENV) {
        servers::serve_here(&spec.to_string_lossy());
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks a libtest harness for its tests
    }
    let reps: usize = std::env::var("BUILDFLEET_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let data = workloads::Data::make();
    if let Ok(which) = std::env::var("BUILDFLEET_PEERS_PROFILE") {
        let only = std::env::var("BUILDFLEET_PEERS_ONLY").unwrap_or_default();
        let peer = servers::Peer::all()
            .into_iter()
            .find(|p| p.label().contains(&only))
            .expect("a peer matching BUILDFLEET_PEERS_ONLY");
        if let Err(why) = workloads::profile(&peer, &data, &which) {
            println!("{}: {why}", peer.label());
        }
        return;
    }
    println!("loopback ceiling: {}", loopback_ceiling());
    let mut rows = Vec::new();
    // `BUILDFLEET_PEERS_ONLY=BLAKE3` runs only the peers whose label
    // contains it (for profiling one server).
    let only = std::env::var("BUILDFLEET_PEERS_ONLY").unwrap_or_default();
    for peer in servers::Peer::all()
        .into_iter()
        .filter(|p| p.label().contains(&only))
    {
        match workloads::measure(&peer, &data, reps) {
            Ok(row) => {
                println!("{}", row.line(&peer));
                rows.push((peer, row));
            }
            Err(why) => println!("{}: skipped — {why}", peer.label()),
        }
    }
    println!();
    println!("| | upload MB/s c1 / c8 | download MB/s c1 / c8 | BatchUpdate blobs/s c1 / c8 | BatchRead blobs/s c1 / c8 | peak memory |");
    println!("|---|---|---|---|---|---|");
    for (peer, row) in &rows {
        println!("{}", row.line(peer));
    }
}

/// TCP throughput over loopback with one stream, from `iperf3`, so the
/// figures above have a ceiling measured in the same run.
fn loopback_ceiling() -> String {
    let Ok(mut server) = std::process::Command::new("iperf3")
        .args(["-s", "-1", "-p", "5299"])
        .stdout(std::process::Stdio::null())
        .spawn()
    else {
        return "not measured (iperf3 is not installed: apt-get install iperf3)".into();
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = std::process::Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", "5299", "-t", "3", "-f", "m"])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("receiver"))
            .map(|l| {
                l.split_whitespace()
                    .skip(6)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .next()
            .unwrap_or_else(|| "iperf3 printed no result".into()),
        Err(e) => format!("iperf3 failed: {e}"),
    }
}
