//! The four workloads at concurrency 1 and 8, a fresh server for each
//! repetition, medians reported.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildfleet_cache::{Digest, DigestFunction};
use bytes::Bytes;

use crate::client;
use crate::servers::{io, Peer, PeerError};

const LARGE_COUNT: usize = 64;
const LARGE_SIZE: usize = 16 << 20;
const SMALL_COUNT: usize = 100_000;
const SMALL_SIZE: usize = 2 << 10;
/// Blobs per batch request: 2 MiB of 2 KiB blobs, under every server's
/// default batch limit (4 MiB).
const BATCH: usize = 1_000;
const CONCURRENCY: [usize; 2] = [1, 8];

/// The blobs, made once: incompressible (the BLAKE3 XOF).
pub struct Data {
    large: Vec<Bytes>,
    small: Vec<Bytes>,
}

impl Data {
    pub fn make() -> Data {
        let bytes = |seed: &str, len: usize| {
            let mut buf = vec![0u8; len];
            blake3::Hasher::new()
                .update(seed.as_bytes())
                .finalize_xof()
                .fill(&mut buf);
            Bytes::from(buf)
        };
        let large_all = bytes("large", LARGE_COUNT * LARGE_SIZE);
        let small_all = bytes("small", SMALL_COUNT * SMALL_SIZE);
        Data {
            large: (0..LARGE_COUNT)
                .map(|i| large_all.slice(i * LARGE_SIZE..(i + 1) * LARGE_SIZE))
                .collect(),
            small: (0..SMALL_COUNT)
                .map(|i| small_all.slice(i * SMALL_SIZE..(i + 1) * SMALL_SIZE))
                .collect(),
        }
    }

    fn digests(blobs: &[Bytes], function: DigestFunction) -> Vec<(Digest, Bytes)> {
        blobs
            .iter()
            .map(|b| (Digest::of_with(function, b), b.clone()))
            .collect()
    }
}

/// Medians per cell (`[c1, c8]`) and the largest peak memory seen
/// (`None` if any reading failed).
#[derive(Default)]
pub struct Row {
    up: [Vec<Duration>; 2],
    down: [Vec<Duration>; 2],
    update: [Vec<Duration>; 2],
    read: [Vec<Duration>; 2],
    peak: Option<u64>,
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

impl Row {
    pub fn line(&self, peer: &Peer) -> String {
        let mb = |cells: &[Vec<Duration>; 2]| {
            let bytes = (LARGE_COUNT * LARGE_SIZE) as f64;
            cells
                .iter()
                .map(|c| format!("{:.0}", bytes / median(c).as_secs_f64() / 1e6))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let per_s = |cells: &[Vec<Duration>; 2]| {
            cells
                .iter()
                .map(|c| format!("{:.0}k", SMALL_COUNT as f64 / median(c).as_secs_f64() / 1e3))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            peer.label(),
            mb(&self.up),
            mb(&self.down),
            per_s(&self.update),
            per_s(&self.read),
            self.peak
                .map_or_else(|| "unknown".to_owned(), |p| format!("{} MB", p / 1_000_000))
        )
    }
}

/// Runs `tasks` client tasks over their own connections, each taking the
/// next unit of work from a shared counter, and times the whole.
fn timed<F, Fut>(
    rt: &tokio::runtime::Runtime,
    url: &str,
    tasks: usize,
    units: usize,
    work: F,
) -> Duration
where
    F: Fn(tonic::transport::Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let work = Arc::new(work);
    let next = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..tasks {
            channels.push(client::connect(url).await);
        }
        let started = Instant::now();
        let handles: Vec<_> = channels
            .into_iter()
            .map(|channel| {
                let (work, next) = (work.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let unit = next.fetch_add(1, Ordering::Relaxed);
                        if unit >= units {
                            break;
                        }
                        work(channel.clone(), unit).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("client task");
        }
        started.elapsed()
    })
}

pub fn measure(peer: &Peer, data: &Data, reps: usize) -> Result<Row, PeerError> {
    let function = peer.function();
    let large = Arc::new(Data::digests(&data.large, function));
    let small = Arc::new(Data::digests(&data.small, function));
    let scratch = tempfile::Builder::new()
        .prefix("buildfleet-peers-")
        .tempdir_in(std::env::var_os("BUILDFLEET_BENCH_DIR").unwrap_or("/var/tmp".into()))
        .map_err(io("make a scratch directory"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("start the client runtime"))?;
    let mut row = Row::default();
    for _ in 0..reps {
        for (c, &tasks) in CONCURRENCY.iter().enumerate() {
            let server = peer.start(scratch.path())?;
            let url = server.url.clone();
            let l = large.clone();
            row.up[c].push(timed(&rt, &url, tasks, LARGE_COUNT, move |ch, i| {
                client::write(ch, l[i].0, l[i].1.clone())
            }));
            let l = large.clone();
            row.down[c].push(timed(&rt, &url, tasks, LARGE_COUNT, move |ch, i| {
                let digest = l[i].0;
                async move {
                    client::read(ch, digest).await;
                }
            }));
            let s = small.clone();
            let batches = SMALL_COUNT / BATCH;
            row.update[c].push(timed(&rt, &url, tasks, batches, move |ch, b| {
                let s = s.clone();
                async move { client::batch_update(ch, function, &s[b * BATCH..(b + 1) * BATCH]).await }
            }));
            let s = small.clone();
            row.read[c].push(timed(&rt, &url, tasks, batches, move |ch, b| {
                let digests: Vec<Digest> = s[b * BATCH..(b + 1) * BATCH]
                    .iter()
                    .map(|(d, _)| *d)
                    .collect();
                async move { client::batch_read(ch, function, &digests).await }
            }));
            let first = row.up[c].len() == 1 && c == 0;
            row.peak = match (first, row.peak, server.peak_memory()) {
                (true, _, now) => now,
                (false, Some(seen), Some(now)) => Some(seen.max(now)),
                (false, _, _) => None,
            };
        }
    }
    Ok(row)
}

/// Profiling aid (`BUILDFLEET_PEERS_PROFILE=read|update|down|up`): one
/// server, the data it needs put in first, its pid printed, a pause to
/// attach `perf record -p PID`, then the workload at concurrency 8 (or
/// `BUILDFLEET_PEERS_PROFILE_CONCURRENCY`) over and over for 20 s.
pub fn profile(peer: &Peer, data: &Data, which: &str) -> Result<(), PeerError> {
    let function = peer.function();
    let large = Arc::new(Data::digests(&data.large, function));
    let small = Arc::new(Data::digests(&data.small, function));
    let scratch = tempfile::tempdir_in("/var/tmp").map_err(io("make a scratch directory"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(io("start the client runtime"))?;
    let server = peer.start(scratch.path())?;
    let url = server.url.clone();
    let batches = SMALL_COUNT / BATCH;
    let (l, s) = (large.clone(), small.clone());
    timed(&rt, &url, 8, LARGE_COUNT, move |ch, i| {
        client::write(ch, l[i].0, l[i].1.clone())
    });
    timed(&rt, &url, 8, batches, move |ch, b| {
        let s = s.clone();
        async move { client::batch_update(ch, function, &s[b * BATCH..(b + 1) * BATCH]).await }
    });
    let c = std::env::var("BUILDFLEET_PEERS_PROFILE_CONCURRENCY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    println!("PROFILE pid={}", server.pid());
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let (l, s) = (large.clone(), small.clone());
        let took = match which {
            "up" => timed(&rt, &url, c, LARGE_COUNT, move |ch, i| {
                client::write(ch, l[i].0, l[i].1.clone())
            }),
            "down" => timed(&rt, &url, c, LARGE_COUNT, move |ch, i| {
                let d = l[i].0;
                async move {
                    client::read(ch, d).await;
                }
            }),
            "update" => timed(&rt, &url, c, batches, move |ch, b| {
                let s = s.clone();
                async move { client::batch_update(ch, function, &s[b * BATCH..(b + 1) * BATCH]).await }
            }),
            _ => timed(&rt, &url, c, batches, move |ch, b| {
                let d: Vec<Digest> = s[b * BATCH..(b + 1) * BATCH]
                    .iter()
                    .map(|(d, _)| *d)
                    .collect();
                async move { client::batch_read(ch, function, &d).await }
            }),
        };
        println!("{which}: {took:?}");
    }
    Ok(())
}
