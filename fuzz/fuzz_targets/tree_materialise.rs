//! Materialising a tree (`cache/src/client/materialise.rs` and the tree
//! decoding under it) from a cache that holds whatever the input says.
//!
//! The input is a list of chunks (`u16` little-endian length, then bytes).
//! Each chunk that decodes as a REAPI `Directory` is stored re-encoded,
//! after one rewrite that lets a fuzzer build trees without computing
//! BLAKE3 hashes: a directory node whose digest has an empty hash points
//! at a later chunk (chosen by its size field), and a file node with an
//! empty hash at one of a few stored file blobs. Every other digest is
//! kept as written (usually a blob the cache lacks). A chunk that does
//! not decode is stored as raw bytes. Chunk 0 is the root.
//!
//! The cache is an in-memory store served over loopback gRPC, so the
//! client under test is the runner's, unchanged. Each input materialises
//! into a fresh temporary directory, removed afterwards; trees that would
//! expand past `MAX_RUN_ENTRIES` are skipped so one input cannot fill the
//! disk (the refusal of huge trees is `cache/tests/hostile_trees.rs`'s).
//!
//! Checked: no panic; nothing appears beside the destination; a tree
//! deeper than the materialiser's limit is refused with nothing written;
//! a tree that materialises has on disk exactly the entries its stats
//! count.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use buildfleet_cache::{serve, BlobStore, CasClient, Digest, MemoryStore, StoreLimits};
use buildfleet_proto::convert::to_reapi;
use buildfleet_proto::reapi::Directory;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Trees expanding past this many entries are not materialised.
const MAX_RUN_ENTRIES: u64 = 10_000;
/// Levels of directories below the root the materialiser accepts.
const MATERIALISER_MAX_DEPTH: u64 = 256;
const FILES: [&[u8]; 4] = [b"", b"a", b"hello\n", &[0xa5; 300]];

struct Cache {
    runtime: tokio::runtime::Runtime,
    store: Arc<MemoryStore>,
    client: CasClient,
    files: Vec<Digest>,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let store = Arc::new(MemoryStore::with_limits(StoreLimits::max_bytes(256 << 20)));
        let client = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let url = format!("http://{}", listener.local_addr().expect("an address"));
            let served: Arc<dyn BlobStore> = store.clone();
            tokio::spawn(serve(listener, served, std::future::pending()));
            CasClient::connect(&url).await.expect("the cache answers")
        });
        let files = FILES.iter().map(|data| Digest::of(data)).collect();
        Cache {
            runtime,
            store,
            client,
            files,
        }
    })
}

fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let [lo, hi, rest @ ..] = data {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
        out.push(&rest[..len]);
        data = &rest[len..];
    }
    out
}

/// What the harness knows of a stored chunk: its digest, and, if it is a
/// directory, how many entries and levels it expands to through the
/// references the harness made (others are missing from the cache).
struct Stored {
    digest: Digest,
    entries: u64,
    depth: u64,
}

fn store_chunks(cache: &Cache, chunks: &[&[u8]]) -> Vec<Stored> {
    let mut stored: Vec<Option<Stored>> = (0..chunks.len()).map(|_| None).collect();
    for i in (0..chunks.len()).rev() {
        let Ok(mut dir) = Directory::decode(chunks[i]) else {
            let data = Bytes::copy_from_slice(chunks[i]);
            let digest = Digest::of(&data);
            cache.store.put(&digest, data).expect("stored");
            stored[i] = Some(Stored {
                digest,
                entries: 1,
                depth: 1,
            });
            continue;
        };
        let mut entries = 1 + dir.files.len() as u64 + dir.symlinks.len() as u64;
        let mut depth = 1;
        let later = chunks.len() - i - 1;
        for node in &mut dir.directories {
            let Some(wire) = node.digest.as_mut() else {
                continue;
            };
            if !wire.hash.is_empty() || later == 0 {
                continue;
            }
            let j = i + 1 + (wire.size_bytes.unsigned_abs() % later as u64) as usize;
            let child = stored[j].as_ref().expect("later chunks are stored first");
            *wire = to_reapi(child.digest);
            entries = entries.saturating_add(child.entries);
            depth = depth.max(child.depth + 1);
        }
        for node in &mut dir.files {
            let Some(wire) = node.digest.as_mut() else {
                continue;
            };
            if wire.hash.is_empty() {
                let k = (wire.size_bytes.unsigned_abs() % cache.files.len() as u64) as usize;
                *wire = to_reapi(cache.files[k]);
            }
        }
        let data = Bytes::from(dir.encode_to_vec());
        let digest = Digest::of(&data);
        cache.store.put(&digest, data).expect("stored");
        stored[i] = Some(Stored {
            digest,
            entries,
            depth,
        });
    }
    stored
        .into_iter()
        .map(|s| s.expect("every chunk"))
        .collect()
}

/// Entries under `dir` (directories, files, symlinks; symlinks not
/// followed), counting `dir` itself.
fn on_disk(dir: &Path) -> u64 {
    let mut count = 1;
    for entry in std::fs::read_dir(dir).expect("readable") {
        let entry = entry.expect("an entry");
        let kind = entry.file_type().expect("a type");
        count += if kind.is_dir() {
            on_disk(&entry.path())
        } else {
            1
        };
    }
    count
}

fuzz_target!(|data: &[u8]| {
    let chunks = chunks(data);
    if chunks.is_empty() {
        return;
    }
    let cache = cache();
    for file in FILES {
        let digest = Digest::of(file);
        cache
            .store
            .put(&digest, Bytes::from_static(file))
            .expect("stored");
    }
    let stored = store_chunks(cache, &chunks);
    let root = &stored[0];
    if root.entries > MAX_RUN_ENTRIES {
        return;
    }
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let out = scratch.path().join("out");
    let result = cache
        .runtime
        .block_on(cache.client.materialise(&root.digest, &out));
    let beside: Vec<_> = std::fs::read_dir(scratch.path())
        .expect("readable")
        .map(|e| e.expect("an entry").file_name())
        .filter(|name| name != "out")
        .collect();
    assert!(
        beside.is_empty(),
        "written beside the destination: {beside:?}"
    );
    // `depth` counts the root as one level.
    if root.depth > MATERIALISER_MAX_DEPTH + 1 {
        assert!(
            result.is_err(),
            "a tree of {} levels was materialised",
            root.depth
        );
        assert!(!out.exists(), "a refused tree left {}", out.display());
    }
    if let Ok(stats) = result {
        let counted = stats.files + stats.directories + stats.symlinks;
        assert_eq!(on_disk(&out), counted, "entries on disk vs {stats:?}");
    }
});
