//! Restoring a dependency tree on a runner: buildfleet with a warm LocalCas
//! and with a cold (empty) one — a fresh runner pod — against what CI
//! caches do today (`tar -I zstd -xf`), a real copy (`cp -a`) and `cp -al`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use buildfleet_cache::{snapshot, CasClient, LocalCas, MaterialiseStats, RocksStore};

use crate::dataset::{count_files, Dataset};
use crate::server::BenchServer;
use crate::{ms, remove_tree, reps, time, time_cpu, verdict, Timings};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Warm,
    Tar,
    CpA,
    CpAl,
    Cold,
    NoLocalCache,
}

const METHODS: [Method; 6] = [
    Method::Warm,
    Method::Tar,
    Method::CpA,
    Method::CpAl,
    Method::Cold,
    Method::NoLocalCache,
];

impl Method {
    fn label(self) -> &'static str {
        match self {
            Method::Warm => "buildfleet, warm LocalCas (hard links)",
            Method::Tar => "tar -I zstd -xf node_modules.tar.zst",
            Method::CpA => "cp -a (a real copy)",
            Method::CpAl => "cp -al (floor)",
            Method::Cold => "buildfleet, cold (empty) LocalCas",
            Method::NoLocalCache => "buildfleet, no LocalCas (plain materialise)",
        }
    }
}

pub fn run(rt: &tokio::runtime::Runtime, data: &Dataset, scratch: &Path) {
    let reps = reps(5);
    println!("\n== restore of node_modules (median of {reps}, interleaved) ==");
    let (t_snap, snap) = time(|| snapshot(&data.tree).expect("snapshot"));
    let files_on_disk = count_files(&data.tree);
    println!(
        "tree: {} files ({} by find -type f), {} dirs, {} symlinks, {:.1} MB; snapshot {:.0} ms",
        snap.file_count,
        files_on_disk,
        snap.directory_count,
        snap.symlink_count,
        snap.total_bytes as f64 / 1e6,
        ms(t_snap)
    );
    assert_eq!(
        snap.file_count, files_on_disk,
        "the snapshot must hold every file tar and cp copy"
    );
    let store = Arc::new(RocksStore::open(scratch.join("restore-rocks")).expect("rocks"));
    let server = BenchServer::start(store);
    let client = rt
        .block_on(CasClient::connect(&server.url))
        .expect("connect");
    let (t_up, up) = time(|| rt.block_on(client.upload_snapshot(&snap)).expect("upload"));
    println!(
        "uploaded {} blobs, {:.1} MB in {:.0} ms (once, not compared)",
        up.uploaded_blobs,
        up.uploaded_bytes as f64 / 1e6,
        ms(t_up)
    );

    // The warm runner: its LocalCas already holds the tree.
    let warm = LocalCas::open(scratch.join("cas-warm"), None).expect("local cas");
    let prime = scratch.join("prime");
    rt.block_on(client.materialise_with(&snap.root, &prime, Some(&warm)))
        .expect("prime");
    remove_tree(&prime);

    let dest_root = scratch.join("dest");
    let dest = dest_root.join("node_modules");
    let cold_dir = scratch.join("cas-cold");
    let mut timings: Vec<Timings> = METHODS.iter().map(|_| Timings::new()).collect();
    // Cores busy in this process (client and server threads); the external
    // commands run in child processes and show as 0.
    let mut cores: Vec<Vec<f64>> = METHODS.iter().map(|_| Vec::new()).collect();
    for rep in 0..reps {
        // Rotate the order so no method always runs right after another.
        for k in 0..METHODS.len() {
            let i = (k + rep) % METHODS.len();
            let method = METHODS[i];
            remove_tree(&dest_root);
            std::fs::create_dir_all(&dest_root).expect("dest");
            remove_tree(&cold_dir);
            let cold = LocalCas::open(&cold_dir, None).expect("cold cas");
            let (elapsed, busy, stats) =
                time_cpu(|| restore(rt, &client, &snap.root, method, data, &dest, &warm, &cold));
            timings[i].push(elapsed);
            cores[i].push(busy.iter().sum());
            if rep == 0 {
                check(method, &dest, &snap.root, stats);
            }
        }
    }
    remove_tree(&dest_root);
    remove_tree(&cold_dir);

    println!("| method | median | min–max | vs tar+zstd | vs cp -al | cores busy (in-process) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let median = |m: Method| timings[METHODS.iter().position(|&x| x == m).unwrap()].median();
    let (tar, cpal) = (median(Method::Tar), median(Method::CpAl));
    for ((method, t), busy) in METHODS.iter().zip(&timings).zip(&cores) {
        let m = t.median();
        let mut busy = busy.clone();
        busy.sort_by(f64::total_cmp);
        println!(
            "| {} | {:.0} ms | {:.0}–{:.0} ms | {:.2}× faster | {:.2}× its time | {:.1} |",
            method.label(),
            ms(m),
            ms(t.percentile(0.0)),
            ms(t.max()),
            tar.as_secs_f64() / m.as_secs_f64(),
            m.as_secs_f64() / cpal.as_secs_f64(),
            busy[busy.len() / 2]
        );
    }
    let w = median(Method::Warm).as_secs_f64();
    let vs_tar = tar.as_secs_f64() / w;
    let vs_cp = w / cpal.as_secs_f64();
    println!(
        "aim: warm ≥10× faster than tar+zstd: {vs_tar:.1}× {}; within 2× of cp -al: {vs_cp:.2}× {}",
        verdict(vs_tar >= 10.0),
        verdict(vs_cp <= 2.0)
    );
    let c = median(Method::Cold).as_secs_f64();
    let cold_vs_tar = tar.as_secs_f64() / c;
    let cold_vs_cp = c / median(Method::CpA).as_secs_f64();
    println!(
        "aim: cold ≥3× faster than tar+zstd: {cold_vs_tar:.1}× {}; within 2× of cp -a: {cold_vs_cp:.2}× {}",
        verdict(cold_vs_tar >= 3.0),
        verdict(cold_vs_cp <= 2.0)
    );
    let cache = warm.stats();
    println!(
        "warm LocalCas: {} entries, {:.1} MB, {} stale dropped, {} evicted",
        cache.entries,
        cache.bytes as f64 / 1e6,
        cache.stale_dropped,
        cache.evicted
    );
    drop(server);
}

#[allow(clippy::too_many_arguments)]
fn restore(
    rt: &tokio::runtime::Runtime,
    client: &CasClient,
    root: &buildfleet_cache::Digest,
    method: Method,
    data: &Dataset,
    dest: &Path,
    warm: &LocalCas,
    cold: &LocalCas,
) -> Option<MaterialiseStats> {
    let materialise = |local: Option<&LocalCas>| {
        Some(
            rt.block_on(client.materialise_with(root, dest, local))
                .expect("materialise"),
        )
    };
    match method {
        Method::Warm => materialise(Some(warm)),
        Method::Cold => materialise(Some(cold)),
        Method::NoLocalCache => materialise(None),
        Method::Tar => {
            let parent = dest.parent().expect("dest has a parent");
            let status = Command::new("tar")
                .args(["-I", "zstd", "-xf"])
                .arg(&data.tarball)
                .arg("-C")
                .arg(parent)
                .status()
                .expect("tar");
            assert!(status.success(), "tar failed");
            None
        }
        Method::CpA | Method::CpAl => {
            let flags = if method == Method::CpA { "-a" } else { "-al" };
            let status = Command::new("cp")
                .arg(flags)
                .arg(&data.tree)
                .arg(dest)
                .status()
                .expect("cp");
            assert!(status.success(), "cp {flags} failed");
            None
        }
    }
}

/// Checks once (outside the timed region) that each method restored the
/// whole tree, and that the warm restore really was warm.
fn check(
    method: Method,
    dest: &Path,
    root: &buildfleet_cache::Digest,
    stats: Option<MaterialiseStats>,
) {
    let got = snapshot(dest).expect("snapshot of a restore").root;
    assert_eq!(got, *root, "{} restored a different tree", method.label());
    if let Some(stats) = stats {
        println!(
            "  {}: {} files linked, {} copied, {} blobs fetched ({:.1} MB), {} found locally",
            method.label(),
            stats.linked_files,
            stats.copied_files,
            stats.fetched_blobs,
            stats.fetched_bytes as f64 / 1e6,
            stats.local_blobs
        );
        if method == Method::Warm {
            assert_eq!(stats.fetched_blobs, 0, "a warm restore fetches nothing");
            assert_eq!(stats.copied_files, 0, "same filesystem: every file linked");
        }
    }
}
