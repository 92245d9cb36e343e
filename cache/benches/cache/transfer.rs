//! CasClient throughput and small-RPC latency over loopback against a real
//! server, with RocksStore and MemoryStore behind it.

use std::path::Path;
use std::sync::Arc;

use buildfleet_cache::{BlobStore, CasClient, MemoryStore, RocksStore};
use bytes::Bytes;

use crate::server::BenchServer;
use crate::{ms, remove_tree, reps, time, verdict, Timings};

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
            let (t, (digests, stats)) = time(|| {
                rt.block_on(client.upload_blobs(blobs.clone()))
                    .expect("upload")
            });
            assert_eq!(stats.uploaded_blobs, LARGE_COUNT as u64);
            large[k].up.push(t);
            let (t, read) = time(|| rt.block_on(client.read_blobs(&digests)).expect("download"));
            assert_eq!(read, blobs, "downloads match (and were verified)");
            large[k].down.push(t);
            drop((blobs, read));

            let blobs = split(
                &random_bytes(&format!("small {rep} {k}"), SMALL_COUNT * SMALL_SIZE),
                SMALL_SIZE,
            );
            let (t, (digests, stats)) = time(|| {
                rt.block_on(client.upload_blobs(blobs.clone()))
                    .expect("upload")
            });
            assert_eq!(stats.uploaded_blobs, SMALL_COUNT as u64);
            small[k].up.push(t);
            let (t, read) = time(|| rt.block_on(client.read_blobs(&digests)).expect("download"));
            assert_eq!(read, blobs);
            small[k].down.push(t);

            drop(server);
            remove_tree(&dir);
        }
    }

    let large_bytes = (LARGE_COUNT * LARGE_SIZE) as f64;
    let small_bytes = (SMALL_COUNT * SMALL_SIZE) as f64;
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
            "| {} | {LARGE_COUNT} × 16 MiB | {up:.2} GB/s ({:.0} ms) | {down:.2} GB/s ({:.0} ms) |",
            kind.label(),
            ms(large[k].up.median()),
            ms(large[k].down.median()),
        );
        let per_s = |t: &Timings| SMALL_COUNT as f64 / t.median().as_secs_f64();
        println!(
            "| {} | {SMALL_COUNT} × 2 KiB | {:.0} blobs/s, {:.2} GB/s | {:.0} blobs/s, {:.2} GB/s |",
            kind.label(),
            per_s(&small[k].up),
            gbs(small_bytes, &small[k].up),
            per_s(&small[k].down),
            gbs(small_bytes, &small[k].down),
        );
    }
    println!(
        "aim: ≥1 GB/s for large blobs (slowest direction and store): {worst_large:.2} GB/s {}",
        verdict(worst_large >= 1.0)
    );
    latency(rt, scratch);
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
