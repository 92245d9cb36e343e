//! A bounded load on one coordinator process: 200 simulated runners (real
//! gRPC sessions) and 2,000 shards in 4 runs. The coordinator keeps its
//! promises under it: every shard is leased once and ends succeeded, no
//! lease is lost or handed out twice. Speed is the benchmark's business
//! (`cargo bench -p buildfleet --bench coordinator_load`), not this test's.

#[path = "../benches/coordinator_load/driver.rs"]
mod driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_runners_take_two_thousand_shards_each_once() {
    let coordinator = driver::Coordinator::start(env!("CARGO_BIN_EXE_buildfleet").as_ref());
    let (report, _) = driver::drive(&coordinator.url, 200, 4, 500, 4).await;
    assert_eq!(report.shards, 2000);
    assert_eq!(report.duplicate_leases, 0, "{report:?}");
    assert_eq!(report.not_succeeded, 0, "{report:?}");
    assert!(
        report.leases_per_second > 0.0 && report.lease_max > std::time::Duration::ZERO,
        "every lease was measured: {report:?}"
    );
}
