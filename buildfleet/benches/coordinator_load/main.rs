//! One coordinator under a large fleet, on demand (never in CI):
//!
//!   cargo bench -p buildfleet --bench coordinator_load
//!
//! 1,000 simulated runners (real gRPC sessions over 10 HTTP/2
//! connections, one slot each, answering every lease at once) and 10,000
//! shards (10 runs of 1,000) against a `buildfleet coordinator` process
//! with its RocksDB. Prints leases per second, lease latency (a runner's
//! result to its next lease), the coordinator's peak memory, and checks
//! that every shard ended once and succeeded. `BUILDFLEET_LOAD=RUNNERS,RUNS,SHARDS`
//! changes the shape (e.g. `100,10,1000`).

#[path = "driver.rs"]
mod driver;

fn main() {
    let shape: Vec<usize> = std::env::var("BUILDFLEET_LOAD")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| v.len() == 3)
        .unwrap_or_else(|| vec![1000, 10, 1000]);
    let (runners, runs, shards) = (shape[0], shape[1], shape[2]);
    let bin = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("buildfleet")))
        .expect("the buildfleet binary beside the bench");
    let coordinator = driver::Coordinator::start(&bin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (mut report, registration) =
        rt.block_on(driver::drive(&coordinator.url, runners, runs, shards, 10));
    report.peak_rss_mb = coordinator.peak_rss_mb();
    println!("registration of {runners} runners: {registration:?}");
    println!(
        "{} runners, {} shards in {:.2?}: {:.0} leases/s; lease latency p50 {:.2?}, p99 {:.2?}, max {:.2?}; coordinator peak memory {:.0} MB; duplicate leases {}, shards not succeeded {}",
        report.runners,
        report.shards,
        report.wall,
        report.leases_per_second,
        report.lease_p50,
        report.lease_p99,
        report.lease_max,
        report.peak_rss_mb,
        report.duplicate_leases,
        report.not_succeeded,
    );
    assert_eq!(report.duplicate_leases, 0, "a shard was leased twice");
    assert_eq!(report.not_succeeded, 0, "a shard did not succeed");
}
