//! CasClient throughput and small-RPC latency over loopback against a real
//! server, with RocksStore and MemoryStore behind it.

use std::path::Path;
use std::sync::Arc;

use buildfleet_cache::{BlobStore, CasClient, MemoryStore, RocksStore};
use bytes::Bytes;

use crate::server::BenchServer;
use crate::{ms, remove_tree, reps, time_cpu, verdict, Timings};

const LARGE_COUNT: usize = 64;
const LARGE_SIZE: usize = 16 * 1024 * 1024;
const SMALL_COUNT: usize = 100_000;
const SMALL_SIZE: usize = 2 * 1024;
const LATENCY_SAMPLES: usize = 2_000;

#[derive(Clone, Copy)]
enum StoreKind {
    Rocks,
    Memory,
}

impl StoreKind {
    fn label(self) -> &'static str {
        match self {
            StoreKind::Rocks => "RocksStore",
            StoreKind::Memory => "MemoryStore",
        }
    }

    fn open(self, dir: &Path) -> Arc<dyn BlobStore> {
        match self {
            StoreKind::Rocks => Arc::new(RocksStore::open(dir).expect("rocks")),
            StoreKind::Memory => Arc::new(MemoryStore::new()),
        }
    }
}

/// Incompressible bytes, different for every `seed`: the BLAKE3 XOF.
fn random_bytes(seed: &str, len: usize) -> Bytes {
    let mut buf = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut buf);
    Bytes::from(buf)
}

fn split(data: &Bytes, size: usize) -> Vec<Bytes> {
    (0..data.len() / size)
        .map(|i| data.slice(i * size..(i + 1) * size))
        .collect()
}

#[derive(Default)]
struct Row {
    up: Timings,
    down: Timings,
    /// Cores kept busy per thread group (client, server, RocksDB, other),
    /// per rep.
    up_cores: Vec<[f64; 4]>,
    down_cores: Vec<[f64; 4]>,
}

impl Row {
    /// Per-group medians, as "client c + server s + rocksdb r".
    fn cores(v: &[[f64; 4]]) -> String {
        let median = |g: usize| {
            let mut col: Vec<f64> = v.iter().map(|c| c[g]).collect();
            col.sort_by(f64::total_cmp);
            col[col.len() / 2]
        };
        format!(
            "cores: client {:.1}, server {:.1}, rocksdb {:.1}, other {:.1}",
            median(0),
            median(1),
            median(2),
            median(3)
        )
    }
}

pub fn run(rt: &tokio::runtime::Runtime, scratch: &Path) {
    let reps = reps(3);
    println!("\n== CasClient transfer over loopback (median of {reps}; fresh server and store per rep) ==");
    let kinds = [StoreKind::Rocks, StoreKind::Memory];
    let mut large: Vec<Row> = kinds.iter().map(|_| Row::default()).collect();
    let mut small: Vec<Row> = kinds.iter().map(|_| Row::default()).collect();
    for rep in 0..reps {
        for (k, kind) in kinds.iter().enumerate() {
            let dir = scratch.join(format!("transfer-{}-{rep}", kind.label()));
            let server = BenchServer::start(kind.open(&dir));
            let client = rt
                .block_on(CasClient::connect(&server.url))
                .expect("connect");

            let blobs = split(
                &random_bytes(&format!("large {rep} {k}"), LARGE_COUNT * LARGE_SIZE),
                LARGE_SIZE,
            );
            measure(rt, &client, &blobs, &mut large[k]);
            drop(blobs);
            let blobs = split(
                &random_bytes(&format!("small {rep} {k}"), SMALL_COUNT * SMALL_SIZE),
                SMALL_SIZE,
            );
            measure(rt, &client, &blobs, &mut small[k]);

            drop(server);
            remove_tree(&dir);
        }
    }

    let large_bytes = (LARGE_COUNT * LARGE_SIZE) as f64;
    let small_bytes = (SMALL_COUNT * SMALL_SIZE) as f64;
    println!("cores = CPU time / wall time per thread group (client runtime, server runtime, RocksDB and other threads); 2 cores here");
    println!("| store | workload | upload | download |");
    println!("| --- | --- | ---: | ---: |");
    let gbs = |bytes: f64, t: &Timings| bytes / t.median().as_secs_f64() / 1e9;
    let mut worst_large = f64::MAX;
    for (k, kind) in kinds.iter().enumerate() {
        let (up, down) = (
            gbs(large_bytes, &large[k].up),
            gbs(large_bytes, &large[k].down),
        );
        worst_large = worst_large.min(up).min(down);
        println!(
            "| {} | {LARGE_COUNT} × 16 MiB | {up:.2} GB/s ({:.0} ms, {}) | {down:.2} GB/s ({:.0} ms, {}) |",
            kind.label(),
            ms(large[k].up.median()),
            Row::cores(&large[k].up_cores),
            ms(large[k].down.median()),
            Row::cores(&large[k].down_cores),
        );
        let per_s = |t: &Timings| SMALL_COUNT as f64 / t.median().as_secs_f64();
        println!(
            "| {} | {SMALL_COUNT} × 2 KiB | {:.0} blobs/s, {:.2} GB/s ({}) | {:.0} blobs/s, {:.2} GB/s ({}) |",
            kind.label(),
            per_s(&small[k].up),
            gbs(small_bytes, &small[k].up),
            Row::cores(&small[k].up_cores),
            per_s(&small[k].down),
            gbs(small_bytes, &small[k].down),
            Row::cores(&small[k].down_cores),
        );
    }
    println!(
        "aim: ≥1 GB/s for large blobs (slowest direction and store): {worst_large:.2} GB/s {}",
        verdict(worst_large >= 1.0)
    );
    latency(rt, scratch);
}

/// Uploads `blobs` (all new to the server), then downloads them, timing
/// both and checking what came back. The client runs on its own runtime's
/// threads, so the CPU split can tell it from the server.
fn measure(rt: &tokio::runtime::Runtime, client: &CasClient, blobs: &[Bytes], row: &mut Row) {
    let (c, owned) = (client.clone(), blobs.to_vec());
    let (t, busy, (digests, stats)) = time_cpu(|| {
        rt.block_on(rt.spawn(async move { c.upload_blobs(owned).await }))
            .expect("upload task")
            .expect("upload")
    });
    assert_eq!(stats.uploaded_blobs, blobs.len() as u64);
    row.up.push(t);
    row.up_cores.push(busy);
    let (c, wanted) = (client.clone(), digests.clone());
    let (t, busy, read) = time_cpu(|| {
        rt.block_on(rt.spawn(async move { c.read_blobs(&wanted).await }))
            .expect("download task")
            .expect("download")
    });
    assert_eq!(read, blobs, "downloads match (and were verified)");
    row.down.push(t);
    row.down_cores.push(busy);
}

/// One small RPC at a time, interleaved, against RocksStore.
fn latency(rt: &tokio::runtime::Runtime, scratch: &Path) {
    let dir = scratch.join("latency-rocks");
    let server = BenchServer::start(StoreKind::Rocks.open(&dir));
    let client = rt
        .block_on(CasClient::connect(&server.url))
        .expect("connect");
    let blobs = split(
        &random_bytes("latency", LATENCY_SAMPLES * SMALL_SIZE),
        SMALL_SIZE,
    );
    let present = rt
        .block_on(client.upload_blob(random_bytes("present", SMALL_SIZE)))
        .expect("upload");
    let (mut find, mut update, mut read) = (Timings::new(), Timings::new(), Timings::new());
    rt.block_on(async {
        for blob in &blobs {
            let (t, _) = time_async(client.find_missing(&[present])).await;
            find.push(t);
            // FindMissingBlobs, then BatchUpdateBlobs: the blob is new.
            let (t, digest) = time_async(client.upload_blob(blob.clone())).await;
            update.push(t);
            let digest = digest.expect("upload");
            let (t, data) = time_async(client.read_blob(&digest)).await;
            assert_eq!(data.expect("read"), *blob);
            read.push(t);
        }
    });
    println!(
        "
small-RPC latency, 2 KiB blobs, RocksStore, {LATENCY_SAMPLES} samples each:"
    );
    println!("| call | RPCs | median | p99 | max |");
    println!("| --- | --- | ---: | ---: | ---: |");
    for (name, rpcs, t) in [
        ("find_missing(1 digest)", "FindMissingBlobs", &find),
        (
            "upload_blob(new 2 KiB)",
            "FindMissingBlobs + BatchUpdateBlobs",
            &update,
        ),
        ("read_blob(2 KiB)", "BatchReadBlobs", &read),
    ] {
        println!(
            "| {name} | {rpcs} | {:.3} ms | {:.3} ms | {:.3} ms |",
            ms(t.median()),
            ms(t.percentile(99.0)),
            ms(t.max())
        );
    }
    let p99 = [&find, &update, &read]
        .iter()
        .map(|t| ms(t.percentile(99.0)))
        .fold(0.0f64, f64::max);
    println!(
        "aim: no Nagle-style ~40 ms stalls: worst p99 {p99:.2} ms {}",
        verdict(p99 < 20.0)
    );
    drop(server);
    remove_tree(&dir);
}

async fn time_async<T>(f: impl std::future::Future<Output = T>) -> (std::time::Duration, T) {
    let start = std::time::Instant::now();
    let out = f.await;
    (start.elapsed(), out)
}
