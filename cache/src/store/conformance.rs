//! One suite that every [`BlobStore`] must pass, so the stores can't drift apart.

use std::sync::Arc;

use bytes::Bytes;

use super::{BlobStore, MemoryStore, MetaTable, RocksStore, StoreError, StoreLimits};
use buildfleet_model::digest::{Digest, DigestFunction};

/// What the suite needs beyond the trait: a way to plant corrupt data.
pub(crate) trait Corruptible: BlobStore {
    fn corrupt(&self, digest: &Digest, data: &[u8]);
}

impl Corruptible for MemoryStore {
    fn corrupt(&self, digest: &Digest, data: &[u8]) {
        self.write_unverified(digest, data);
    }
}

impl Corruptible for RocksStore {
    fn corrupt(&self, digest: &Digest, data: &[u8]) {
        self.write_unverified(digest, data);
    }
}

pub(crate) fn blob(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

fn round_trip(store: &dyn BlobStore) {
    let data = blob(1, 1000);
    let digest = Digest::of(&data);
    store.put(&digest, data.clone()).unwrap();
    assert_eq!(store.get(&digest).unwrap(), Some(data), "round trip");
}

fn missing_is_none(store: &dyn BlobStore) {
    let digest = Digest::of(b"never stored");
    assert_eq!(store.get(&digest).unwrap(), None, "missing blob");
}

fn contains_many_keeps_order(store: &dyn BlobStore) {
    let a = blob(2, 10);
    let b = blob(3, 10);
    let (da, db) = (Digest::of(&a), Digest::of(&b));
    let absent = Digest::of(b"absent");
    store.put(&da, a).unwrap();
    store.put(&db, b).unwrap();
    assert_eq!(
        store.contains_many(&[absent, db, absent, da]).unwrap(),
        vec![false, true, false, true],
        "contains_many order"
    );
    assert_eq!(store.contains_many(&[]).unwrap(), Vec::<bool>::new());
}

fn mismatch_is_rejected_and_not_stored(store: &dyn BlobStore) {
    let claimed = Digest::of(b"the real content");
    let err = store
        .put(&claimed, Bytes::from_static(b"something else"))
        .unwrap_err();
    match err {
        StoreError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, Digest::of(b"something else"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(store.contains_many(&[claimed]).unwrap(), vec![false]);
    assert_eq!(store.get(&claimed).unwrap(), None);

    // Right hash, wrong size is a mismatch too.
    let data = Bytes::from_static(b"sized");
    let mut lying = Digest::of(&data);
    lying.size_bytes += 1;
    assert!(matches!(
        store.put(&lying, data),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert_eq!(store.contains_many(&[lying]).unwrap(), vec![false]);
}

fn empty_blob_is_always_present(store: &dyn BlobStore) {
    let empty = Digest::empty();
    assert_eq!(store.contains_many(&[empty]).unwrap(), vec![true]);
    assert_eq!(store.get(&empty).unwrap(), Some(Bytes::new()));
    store.put(&empty, Bytes::new()).unwrap();
    assert_eq!(store.get(&empty).unwrap(), Some(Bytes::new()));
}

fn concurrent_puts_of_one_blob<S: BlobStore>(store: Arc<S>) {
    let data = blob(4, 200_000);
    let digest = Digest::of(&data);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = Arc::clone(&store);
            let data = data.clone();
            std::thread::spawn(move || store.put(&digest, data))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert_eq!(store.get(&digest).unwrap(), Some(data), "concurrent puts");
    assert_eq!(store.total_bytes(), 200_000, "size counted once");
}

/// Many threads putting a few blobs each, with overlaps, under a limit large
/// enough that nothing is evicted: the total is exactly the distinct sizes.
fn concurrent_overlapping_puts_count_each_blob_once<S: BlobStore>(store: Arc<S>) {
    let blobs: Vec<Bytes> = (0..6)
        .map(|i| blob(40 + i, 1000 + usize::from(i)))
        .collect();
    let threads: Vec<_> = (0..12)
        .map(|t| {
            let store = Arc::clone(&store);
            let blobs = blobs.clone();
            std::thread::spawn(move || {
                for b in blobs.iter().cycle().skip(t).take(6) {
                    store.put(&Digest::of(b), b.clone()).unwrap();
                    store.contains_many(&[Digest::of(b)]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let expected: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    assert_eq!(store.total_bytes(), expected);
    for b in &blobs {
        assert_eq!(store.get(&Digest::of(b)).unwrap().as_ref(), Some(b));
    }
}

fn large_blob(store: &dyn BlobStore) {
    let data = blob(5, 20 * 1024 * 1024);
    let digest = Digest::of(&data);
    store.put(&digest, data.clone()).unwrap();
    let back = store.get(&digest).unwrap().expect("20 MiB blob present");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "20 MiB blob content");
}

/// Under a 1000-byte limit holding three 300-byte blobs, the fourth evicts
/// the least recently used, where reads and presence checks count as use.
fn lru_order_respects_reads_and_presence_checks(store: &dyn BlobStore, shared: bool) {
    let [a, b, c, d] = [10, 11, 12, 13].map(|seed| blob(seed, 300));
    let [da, db, dc, dd] = [&a, &b, &c, &d].map(|x| Digest::of(x));
    store.put(&da, a).unwrap();
    store.put(&db, b).unwrap();
    store.put(&dc, c).unwrap();
    assert_eq!(store.total_bytes(), 900);
    // Use order, oldest first, becomes c, a, b.
    assert!(store.get(&da).unwrap().is_some());
    assert_eq!(store.contains_many(&[db]).unwrap(), vec![true]);
    store.put(&dd, d).unwrap();
    // 1200 > 1000: evicted down to the 900-byte low-water mark, so only c.
    assert_eq!(
        store.contains_many(&[da, db, dc, dd]).unwrap(),
        vec![true, true, shared, true]
    );
    assert_eq!(
        store.get(&dc).unwrap().is_some(),
        shared,
        "evicted blob is gone (kept in a shared tier)"
    );
    assert_eq!(store.total_bytes(), 900);

    // Re-putting a present blob counts as use, not as new bytes.
    let a_again = blob(10, 300);
    store.put(&da, a_again).unwrap();
    assert_eq!(store.total_bytes(), 900);
}

/// A pinned blob is passed over by eviction while its pin lasts, however
/// old its last use; an expired pin protects nothing.
fn pinned_blobs_survive_eviction_until_their_pin_expires(store: &dyn BlobStore, shared: bool) {
    use std::time::{Duration, SystemTime};
    let [a, b, c, d, e] = [20, 21, 22, 23, 24].map(|seed| blob(seed, 250));
    let [da, db, dc, dd, de] = [&a, &b, &c, &d, &e].map(|x| Digest::of(x));
    store.put(&da, a).unwrap();
    store.put(&db, b).unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(super::pin(store, &[da], later).unwrap(), 1);
    assert_eq!(
        super::pin(store, &[da], later).unwrap(),
        0,
        "an equal pin changes nothing"
    );
    assert_eq!(
        super::pin(store, &[db], SystemTime::now() - Duration::from_secs(1)).unwrap(),
        1
    );
    store.put(&dc, c).unwrap();
    store.put(&dd, d).unwrap();
    // 1000 bytes of blobs and two 51-byte pins > 1000: the oldest, `a`,
    // is pinned and stays; `b`'s pin has expired, so it goes.
    assert_eq!(
        store.contains_many(&[da, db, dc, dd]).unwrap(),
        vec![true, shared, true, true]
    );
    store.put(&de, e).unwrap();
    assert!(store.contains_many(&[da]).unwrap()[0], "still pinned");
}

/// A tiny limit and a stream of blobs: the store never stays over the limit,
/// keeps the newest blobs, and its total matches what is present.
fn eviction_under_a_tiny_limit(store: &dyn BlobStore, shared: bool) {
    let blobs: Vec<Bytes> = (0..20).map(|i| blob(60 + i, 150)).collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
    for (d, b) in digests.iter().zip(&blobs) {
        store.put(d, b.clone()).unwrap();
        assert!(store.total_bytes() <= 1000, "{}", store.total_bytes());
        assert_eq!(store.contains_many(&[*d]).unwrap(), vec![true], "just put");
    }
    let present = store.contains_many(&digests).unwrap();
    let count = present.iter().filter(|p| **p).count() as u64;
    assert!(present[19] && present[18], "newest kept: {present:?}");
    if shared {
        // Evicted here, still in the shared tier, and served from it.
        assert!(present.iter().all(|p| *p), "{present:?}");
        assert_eq!(store.get(&digests[0]).unwrap(), Some(blobs[0].clone()));
        assert!(store.total_bytes() <= 1000, "{}", store.total_bytes());
    } else {
        assert_eq!(store.total_bytes(), count * 150);
        assert!(!present[0] && !present[1], "oldest evicted: {present:?}");
    }
    let total = store.total_bytes();

    // A blob larger than the whole limit is refused, not stored.
    let huge = blob(99, 1001);
    let err = store.put(&Digest::of(&huge), huge).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                max_bytes: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.total_bytes(), total);
}

fn sha256_blobs_are_verified_and_kept_apart(store: &dyn BlobStore) {
    let data = blob(20, 5000);
    let sha = Digest::of_with(DigestFunction::Sha256, &data);
    let b3 = Digest::of(&data);
    store.put(&sha, data.clone()).unwrap();
    assert_eq!(store.get(&sha).unwrap(), Some(data.clone()));
    assert_eq!(store.contains_many(&[sha, b3]).unwrap(), vec![true, false]);
    assert_eq!(store.get(&b3).unwrap(), None, "not found under BLAKE3");

    // A BLAKE3 hash offered as SHA-256 is checked with SHA-256 and refused.
    let lying = Digest {
        function: DigestFunction::Sha256,
        ..b3
    };
    assert!(matches!(
        store.put(&lying, data.clone()),
        Err(StoreError::DigestMismatch { .. })
    ));
    assert_eq!(store.contains_many(&[lying]).unwrap(), vec![false]);

    store.put(&b3, data.clone()).unwrap();
    assert_eq!(store.total_bytes(), 10_000, "two distinct blobs");
    let empty = Digest::empty_with(DigestFunction::Sha256);
    assert_eq!(store.contains_many(&[empty]).unwrap(), vec![true]);
    assert_eq!(store.get(&empty).unwrap(), Some(Bytes::new()));
}

fn corrupt_blobs_are_never_served<S: Corruptible>(store: &S) {
    for function in DigestFunction::ALL {
        let data = blob(30, 100_000);
        let digest = Digest::of_with(function, &data);
        store.put(&digest, data.clone()).unwrap();
        let mut garbage = data.to_vec();
        garbage[77] ^= 1;
        store.corrupt(&digest, &garbage);
        assert_eq!(store.get(&digest).unwrap(), None, "{function}: not served");
        assert_eq!(store.contains_many(&[digest]).unwrap(), vec![false]);
        assert_eq!(store.total_bytes(), 0, "{function}: size accounting fixed");
        store.put(&digest, data.clone()).unwrap();
        assert_eq!(store.get(&digest).unwrap(), Some(data));
        store.corrupt(&digest, b"short");
        assert_eq!(store.get(&digest).unwrap(), None);
        assert_eq!(store.total_bytes(), 0);
    }
}

/// `get_many` answers in order, counts as use like `get`, and never serves
/// corrupt data.
fn get_many_reads_in_order_marks_use_and_rejects_corruption<S: Corruptible>(
    store: &S,
    shared: bool,
) {
    let [a, b, c, d] = [40, 41, 42, 43].map(|seed| blob(seed, 300));
    let [da, db, dc, dd] = [&a, &b, &c, &d].map(|x| Digest::of(x));
    store.put(&da, a.clone()).unwrap();
    store.put(&db, b.clone()).unwrap();
    store.put(&dc, c.clone()).unwrap();
    let absent = Digest::of(b"never stored");
    assert_eq!(
        store.get_many(&[dc, absent, da, Digest::empty()]).unwrap(),
        vec![Some(c.clone()), None, Some(a), Some(Bytes::new())]
    );
    // Use order, oldest first: b, c, a. A fourth blob evicts b.
    store.put(&dd, d).unwrap();
    assert_eq!(
        store.contains_many(&[da, db, dc, dd]).unwrap(),
        vec![true, shared, true, true]
    );
    store.corrupt(&dc, b"garbage of another size");
    assert_eq!(store.get_many(&[dc]).unwrap(), vec![None]);
    assert_eq!(store.contains_many(&[dc]).unwrap(), vec![false]);
}

fn metadata_tables(store: &dyn BlobStore) {
    let put = |t, k: &str, v: &'static str| {
        store
            .meta_put(t, k.as_bytes(), Bytes::from_static(v.as_bytes()))
            .unwrap()
    };
    put(MetaTable::Index, "inst/a/1", "one");
    put(MetaTable::Index, "inst/a/2", "two");
    put(MetaTable::Index, "inst/b", "bee");
    put(MetaTable::Index, "other/a/1", "elsewhere");
    put(MetaTable::ActionCache, "inst/a/3", "not an index entry");
    assert_eq!(
        store.meta_get(MetaTable::Index, b"inst/a/1").unwrap(),
        Some(Bytes::from_static(b"one"))
    );
    assert_eq!(store.meta_get(MetaTable::Index, b"inst/a/3").unwrap(), None);
    let scan = |prefix: &str| -> Vec<String> {
        store
            .meta_scan_prefix(MetaTable::Index, prefix.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8(k).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap()
                )
            })
            .collect()
    };
    assert_eq!(scan("inst/a/"), vec!["inst/a/1=one", "inst/a/2=two"]);
    assert_eq!(
        scan("inst/"),
        vec!["inst/a/1=one", "inst/a/2=two", "inst/b=bee"]
    );
    assert_eq!(scan("nothing"), Vec::<String>::new());
    assert_eq!(scan("").len(), 4, "whole table, and only that table");

    put(MetaTable::Index, "inst/a/1", "replaced");
    assert_eq!(scan("inst/a/1"), vec!["inst/a/1=replaced"]);
    store.meta_delete(MetaTable::Index, b"inst/a/1").unwrap();
    store.meta_delete(MetaTable::Index, b"never there").unwrap();
    assert_eq!(scan("inst/a/"), vec!["inst/a/2=two"]);
    assert_eq!(store.total_bytes(), 0, "metadata does not count as blobs");
    assert_eq!(
        store.meta_bytes(),
        [
            ("inst/a/2", "two"),
            ("inst/b", "bee"),
            ("other/a/1", "elsewhere"),
            ("inst/a/3", "not an index entry")
        ]
        .iter()
        .map(|(k, v)| (2 + k.len() + v.len()) as u64)
        .sum::<u64>(),
        "metadata counts its keys and values, replaced and deleted ones out"
    );
}

/// Action results and index entries share the store's budget: growing
/// metadata evicts old blobs, and metadata past half the limit is refused
/// with an error naming the table, keeping what was stored.
fn metadata_counts_against_the_limit(store: &dyn BlobStore, shared: bool) {
    let blobs: Vec<Digest> = (0..8u8)
        .map(|i| {
            let data = blob(100 + i, 1000);
            let d = Digest::of(&data);
            store.put(&d, data).unwrap();
            d
        })
        .collect();
    assert_eq!(store.total_bytes(), 8000);
    let entry = Bytes::from(vec![7u8; 2990]);
    store
        .meta_put(MetaTable::ActionCache, b"inst/one", entry.clone())
        .unwrap();
    assert_eq!(store.meta_bytes(), 2 + 8 + 2990);
    assert!(
        store.total_bytes() + store.meta_bytes() <= 9000,
        "metadata pushed blobs out: {} + {}",
        store.total_bytes(),
        store.meta_bytes()
    );
    let kept = store.contains_many(&blobs).unwrap();
    assert_eq!(&kept[..2], &[shared, shared], "the oldest blobs went first");

    let err = store
        .meta_put(MetaTable::Index, b"inst/two", entry.clone())
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::MetadataFull {
                table: MetaTable::Index,
                max_bytes: 5000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("metadata is full"), "{err}");
    assert_eq!(store.meta_get(MetaTable::Index, b"inst/two").unwrap(), None);
    assert_eq!(
        store.meta_get(MetaTable::ActionCache, b"inst/one").unwrap(),
        Some(entry),
        "a refused write loses nothing already stored"
    );
    store
        .meta_put(
            MetaTable::ActionCache,
            b"inst/one",
            Bytes::from_static(b"small"),
        )
        .expect("shrinking an entry is always allowed");
    assert_eq!(store.meta_bytes(), 2 + 8 + 5);
    store
        .meta_delete(MetaTable::ActionCache, b"inst/one")
        .unwrap();
    assert_eq!(store.meta_bytes(), 0);
}

/// A blob received in pieces through a staged file is stored as if put,
/// counted once, readable through `open`, and a wrong one is not stored.
fn staged_writes_commit_and_open_reads(store: &dyn BlobStore) {
    for len in [100usize, 3 << 20] {
        let data = blob(9, len);
        let digest = Digest::of(&data);
        let mut staged = store.stage(&digest).unwrap();
        for piece in data.chunks(64 * 1024) {
            staged.append(piece).unwrap();
        }
        store.commit(staged.finish().unwrap()).unwrap();
        assert_eq!(store.get(&digest).unwrap().as_deref(), Some(&data[..]));
        let read = match store.open(&digest).unwrap().expect("present") {
            super::StoredBlob::Bytes(b) => b.to_vec(),
            super::StoredBlob::File(mut f) => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut out).unwrap();
                out
            }
        };
        assert_eq!(read, &data[..], "{len}: open reads the blob");
        // Committing it again only marks it used.
        let mut again = store.stage(&digest).unwrap();
        again.append(&data).unwrap();
        store.commit(again.finish().unwrap()).unwrap();

        let mut wrong = store.stage(&digest).unwrap();
        let mut bad = data.to_vec();
        bad[len / 2] ^= 1;
        wrong.append(&bad).unwrap();
        assert!(matches!(
            wrong.finish(),
            Err(StoreError::DigestMismatch { .. })
        ));
    }
    assert_eq!(store.total_bytes(), 100 + (3 << 20), "each counted once");

    let digest = Digest::of(&blob(9, 100));
    store.forget_corrupt(&digest).unwrap();
    assert_eq!(store.get(&digest).unwrap(), None);
    assert!(store.open(&digest).unwrap().is_none());
    assert_eq!(store.total_bytes(), 3 << 20);
}

/// A batch is judged blob by blob, in order: good ones stored (each
/// counted once, even when named twice or already present), bad ones
/// refused without costing the rest.
fn put_many_judges_each_blob_and_counts_once(store: &dyn BlobStore) {
    let a = blob(70, 3000);
    let b = blob(71, 2 << 20);
    let c = blob(72, 500);
    let (da, db, dc) = (Digest::of(&a), Digest::of(&b), Digest::of(&c));
    store.put(&dc, c.clone()).unwrap();
    let mut wrong = da;
    wrong.hash[0] ^= 1;
    let results = store.put_many(vec![
        (da, a.clone()),
        (wrong, a.clone()),
        (db, b.clone()),
        (Digest::empty(), Bytes::new()),
        (da, a.clone()),
        (dc, c.clone()),
    ]);
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, vec![true, false, true, true, true, true]);
    assert!(matches!(results[1], Err(StoreError::DigestMismatch { .. })));
    assert_eq!(store.get(&da).unwrap(), Some(a));
    assert_eq!(store.get(&db).unwrap(), Some(b));
    assert_eq!(store.get(&wrong).unwrap(), None);
    assert_eq!(store.total_bytes(), 3000 + (2 << 20) + 500);
}

/// Runs every case on a fresh store from `make`.
/// `shared`: the store has a shared tier behind it, which keeps what
/// local eviction drops (and serves it again).
pub(crate) fn conformance<S: Corruptible>(shared: bool, make: impl Fn(StoreLimits) -> S) {
    let unlimited = || make(StoreLimits::unlimited());
    let tiny = || make(StoreLimits::max_bytes(1000));
    round_trip(&unlimited());
    missing_is_none(&unlimited());
    contains_many_keeps_order(&unlimited());
    mismatch_is_rejected_and_not_stored(&unlimited());
    empty_blob_is_always_present(&unlimited());
    concurrent_puts_of_one_blob(Arc::new(unlimited()));
    concurrent_puts_of_one_blob(Arc::new(make(StoreLimits::max_bytes(300_000))));
    concurrent_overlapping_puts_count_each_blob_once(Arc::new(make(StoreLimits::max_bytes(
        1 << 20,
    ))));
    large_blob(&unlimited());
    lru_order_respects_reads_and_presence_checks(&tiny(), shared);
    eviction_under_a_tiny_limit(&tiny(), shared);
    pinned_blobs_survive_eviction_until_their_pin_expires(&tiny(), shared);
    sha256_blobs_are_verified_and_kept_apart(&unlimited());
    corrupt_blobs_are_never_served(&unlimited());
    metadata_tables(&unlimited());
    metadata_counts_against_the_limit(&make(StoreLimits::max_bytes(10_000)), shared);
    staged_writes_commit_and_open_reads(&unlimited());
    put_many_judges_each_blob_and_counts_once(&unlimited());
    get_many_reads_in_order_marks_use_and_rejects_corruption(&tiny(), shared);
}

#[test]
fn memory_store_conforms() {
    conformance(false, MemoryStore::with_limits);
}

#[test]
fn rocks_store_conforms() {
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance(false, |limits| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RocksStore::open_with_limits(root.path().join(format!("db{n}")), limits).unwrap()
    });
}
