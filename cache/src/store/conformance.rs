//! One suite that every [`BlobStore`] must pass, so the stores can't drift apart.

use std::sync::Arc;

use bytes::Bytes;

use super::{BlobStore, MemoryStore, RocksStore, StoreError};
use crate::digest::Digest;

fn blob(seed: u8, len: usize) -> Bytes {
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
}

fn large_blob(store: &dyn BlobStore) {
    let data = blob(5, 20 * 1024 * 1024);
    let digest = Digest::of(&data);
    store.put(&digest, data.clone()).unwrap();
    let back = store.get(&digest).unwrap().expect("20 MiB blob present");
    assert_eq!(back.len(), data.len());
    assert!(back == data, "20 MiB blob content");
}

/// Runs every case on a fresh store from `make`.
fn conformance<S: BlobStore>(make: impl Fn() -> S) {
    round_trip(&make());
    missing_is_none(&make());
    contains_many_keeps_order(&make());
    mismatch_is_rejected_and_not_stored(&make());
    empty_blob_is_always_present(&make());
    concurrent_puts_of_one_blob(Arc::new(make()));
    large_blob(&make());
}

#[test]
fn memory_store_conforms() {
    conformance(MemoryStore::new);
}

#[test]
fn rocks_store_conforms() {
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RocksStore::open(root.path().join(format!("db{n}"))).unwrap()
    });
}
