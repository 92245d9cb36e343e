//! The RocksDB store's own behaviour beyond the shared conformance suite:
//! corruption, reopening, large-blob files, the recent-use window.

use super::super::large_files::LARGE_BLOB_BYTES;
use super::*;

#[test]
fn corrupt_blob_is_never_served_and_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path()).unwrap();
    let data = Bytes::from(vec![7u8; 100_000]);
    let digest = Digest::of(&data);
    store.put(&digest, data.clone()).unwrap();
    assert_eq!(store.get(&digest).unwrap(), Some(data.clone()));

    let mut garbage = data.to_vec();
    garbage[500] ^= 0xff;
    store.write_unverified(&digest, &garbage);
    assert_eq!(store.contains_many(&[digest]).unwrap(), vec![true]);

    assert_eq!(store.get(&digest).unwrap(), None);
    assert_eq!(store.contains_many(&[digest]).unwrap(), vec![false]);
    assert_eq!(store.get(&digest).unwrap(), None);
    assert_eq!(store.total_bytes(), 0, "size accounting fixed");

    // A clean upload heals the store.
    store.put(&digest, data.clone()).unwrap();
    assert_eq!(store.get(&digest).unwrap(), Some(data));
    assert_eq!(store.total_bytes(), 100_000);
}

#[test]
fn blobs_total_and_use_order_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let blob = |seed: u8| Bytes::from(vec![seed; 300]);
    let digests: Vec<Digest> = (1..=3).map(|s| Digest::of(&blob(s))).collect();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        for (s, d) in (1..=3).zip(&digests) {
            store.put(d, blob(s)).unwrap();
        }
        // Blob 1 becomes the most recently used.
        assert!(store.get(&digests[0]).unwrap().is_some());
    }
    let store = RocksStore::open_with_limits(dir.path(), StoreLimits::max_bytes(1000)).unwrap();
    assert_eq!(store.total_bytes(), 900);
    assert_eq!(store.get(&digests[2]).unwrap(), Some(blob(3)));
    // Order now (oldest first): 2, 1, 3. A fourth blob evicts blob 2.
    let fourth = Bytes::from(vec![4u8; 300]);
    store.put(&Digest::of(&fourth), fourth).unwrap();
    assert_eq!(
        store.contains_many(&digests).unwrap(),
        vec![true, false, true]
    );
    assert_eq!(store.total_bytes(), 900);
    drop(store);

    // Reopened with a smaller limit, the store trims itself at once.
    let store = RocksStore::open_with_limits(dir.path(), StoreLimits::max_bytes(500)).unwrap();
    assert!(store.total_bytes() <= 450, "{}", store.total_bytes());
}

fn large_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for fan in std::fs::read_dir(dir.join("large-blobs")).unwrap() {
        let fan = fan.unwrap().path();
        if fan.ends_with("tmp") {
            continue;
        }
        for f in std::fs::read_dir(fan).unwrap() {
            out.push(f.unwrap().path());
        }
    }
    out
}

#[test]
fn large_blobs_are_files_verified_on_read_and_freed_on_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let big = |seed: u8| Bytes::from(vec![seed; LARGE_BLOB_BYTES as usize + 10]);
    let store =
        RocksStore::open_with_limits(dir.path(), StoreLimits::max_bytes(3 * LARGE_BLOB_BYTES))
            .unwrap();
    let (a, b) = (Digest::of(&big(1)), Digest::of(&big(2)));
    store.put(&a, big(1)).unwrap();
    assert_eq!(large_files(dir.path()).len(), 1);
    assert_eq!(store.get(&a).unwrap(), Some(big(1)));

    // Rot on disk: reported, deleted, treated as missing.
    let mut rotten = big(1).to_vec();
    rotten[7] ^= 1;
    store.write_unverified(&a, &rotten);
    assert_eq!(store.get(&a).unwrap(), None);
    assert_eq!(store.contains_many(&[a]).unwrap(), vec![false]);
    assert!(
        large_files(dir.path()).is_empty(),
        "the corrupt file is gone"
    );

    // Eviction removes the file, so the limit is a limit on disk too.
    store.put(&a, big(1)).unwrap();
    store.put(&b, big(2)).unwrap();
    let c = Digest::of(&big(3));
    store.put(&c, big(3)).unwrap();
    assert_eq!(
        store.contains_many(&[a, b, c]).unwrap(),
        vec![false, true, true]
    );
    assert_eq!(large_files(dir.path()).len(), 2);
}

#[test]
fn reads_write_nothing_yet_eviction_passes_over_blobs_read_since() {
    let dir = tempfile::tempdir().unwrap();
    let blob = |i: u8| Bytes::from(vec![i; 100]);
    let store = RocksStore::open_with_limits(dir.path(), StoreLimits::max_bytes(1600)).unwrap();
    let digests: Vec<Digest> = (0..16).map(|i| Digest::of(&blob(i))).collect();
    for (i, d) in digests.iter().enumerate() {
        store.put(d, blob(i as u8)).unwrap();
    }
    let last_use = |d: &Digest| store.marker(d).unwrap().unwrap();
    let before: Vec<u64> = digests.iter().map(last_use).collect();
    store.get(&digests[0]).unwrap();
    store.get_many(&digests[1..2]).unwrap();
    store.contains_many(&digests[2..3]).unwrap();
    let after: Vec<u64> = digests.iter().map(last_use).collect();
    assert_eq!(before, after, "reads wrote no use");
    // Over the limit (1700 > 1600, down to 1440): the oldest blobs not
    // used since go — 3, 4 and 5 — while 0, 1 and 2 get a second chance.
    store.put(&Digest::of(&blob(16)), blob(16)).unwrap();
    let present = store.contains_many(&digests).unwrap();
    assert_eq!(&present[..6], &[true, true, true, false, false, false]);
    assert!(present[6..].iter().all(|p| *p), "{present:?}");
    assert!(last_use(&digests[0]) > before[15], "0 moved to the back");
}

#[test]
fn orphaned_and_missing_large_files_are_reconciled_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = Bytes::from(vec![9u8; LARGE_BLOB_BYTES as usize]);
    let digest = Digest::of(&data);
    let orphan = Bytes::from(vec![8u8; LARGE_BLOB_BYTES as usize]);
    let orphan_digest = Digest::of(&orphan);
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store.put(&digest, data.clone()).unwrap();
        // A crash between the file's rename and its marker.
        store.large.write(&orphan_digest, &orphan).unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(large_files(dir.path()).len(), 1, "orphan swept");
    assert_eq!(store.get(&digest).unwrap(), Some(data));
    drop(store);

    for f in large_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.contains_many(&[digest]).unwrap(), vec![false]);
    assert_eq!(store.total_bytes(), 0);
}

#[test]
fn legacy_layout_entries_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = b"from an older version";
    let digest = Digest::of(data);
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store.write_legacy(&digest, data);
    }
    let store = RocksStore::open(dir.path()).unwrap();
    assert_eq!(store.total_bytes(), 0);
    assert_eq!(store.contains_many(&[digest]).unwrap(), vec![false]);
    let raw: Vec<_> = store
        .db
        .iterator(IteratorMode::Start)
        .map(|i| i.unwrap().0)
        .collect();
    assert!(raw.is_empty(), "legacy keys left behind: {raw:?}");
}

#[test]
fn metadata_size_is_recounted_at_open_and_keeps_counting_against_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path()).unwrap();
        store
            .meta_put(MetaTable::ActionCache, b"k1", Bytes::from(vec![1u8; 400]))
            .unwrap();
        store
            .meta_put(MetaTable::Index, b"k2", Bytes::from(vec![2u8; 200]))
            .unwrap();
        assert_eq!(store.meta_bytes(), 4 + 400 + 4 + 200);
    }
    let store = RocksStore::open_with_limits(dir.path(), StoreLimits::max_bytes(1000)).unwrap();
    assert_eq!(store.meta_bytes(), 608, "recounted from what is stored");
    let err = store
        .meta_put(MetaTable::Index, b"k3", Bytes::from(vec![3u8; 100]))
        .unwrap_err();
    assert!(matches!(err, StoreError::MetadataFull { .. }), "{err}");
    let blob = Bytes::from(vec![9u8; 300]);
    store.put(&Digest::of(&blob), blob).unwrap();
    assert!(
        store.total_bytes() + store.meta_bytes() <= 1000,
        "a blob that fits beside the metadata stays: {}",
        store.total_bytes()
    );
}
