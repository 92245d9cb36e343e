//! The tiered store against a real S3-compatible server (moto): the
//! stores' conformance suite, and two nodes sharing one bucket.

use bytes::Bytes;

use super::TieredStore;
use crate::store::conformance::{blob, conformance, Corruptible};
use crate::store::{BlobStore, MetaTable, RocksStore};
use buildfleet_model::digest::Digest;

impl<L: Corruptible> Corruptible for TieredStore<L> {
    fn corrupt(&self, digest: &Digest, data: &[u8]) {
        self.local().corrupt(digest, data);
        self.write_unverified_remote(digest, data);
    }
}

/// RocksDB in front of a bucket on a real S3-compatible server (moto),
/// each store its own prefix in the bucket.
#[test]
fn tiered_store_conforms() {
    let server = super::moto::Moto::start();
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance(true, |limits| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let local =
            RocksStore::open_with_limits(root.path().join(format!("db{n}")), limits).unwrap();
        TieredStore::new(local, &server.bucket(&format!("store{n}/"))).unwrap()
    });
}

/// Two cache nodes on one bucket: what one stores, the other serves —
/// blobs (verified, then kept locally) and action-cache entries — though
/// neither node's own disk had it.
#[test]
fn two_nodes_sharing_a_bucket_serve_each_others_blobs_and_results() {
    let server = super::moto::Moto::start();
    let root = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let local = RocksStore::open(root.path().join(name)).unwrap();
        TieredStore::new(local, &server.bucket("shared/")).unwrap()
    };
    let (a, b) = (node("a"), node("b"));
    let data = blob(7, 200_000);
    let digest = Digest::of(&data);
    a.put(&digest, data.clone()).unwrap();
    assert_eq!(b.local().contains_many(&[digest]).unwrap(), vec![false]);
    assert_eq!(b.contains_many(&[digest]).unwrap(), vec![true]);
    assert_eq!(b.get(&digest).unwrap(), Some(data.clone()));
    assert_eq!(
        b.local().get(&digest).unwrap(),
        Some(data),
        "the read filled b's own tier"
    );
    let entry = Bytes::from_static(b"an action result");
    a.meta_put(MetaTable::ActionCache, b"inst/act", entry.clone())
        .unwrap();
    assert_eq!(
        b.meta_get(MetaTable::ActionCache, b"inst/act").unwrap(),
        Some(entry.clone())
    );
    assert_eq!(
        b.meta_scan_prefix(MetaTable::ActionCache, b"inst/")
            .unwrap(),
        vec![(b"inst/act".to_vec(), entry)]
    );
    // A lie planted in the bucket is caught by the node that reads it.
    let other = blob(8, 1000);
    let od = Digest::of(&other);
    a.write_unverified_remote(&od, b"not those bytes");
    assert_eq!(b.get(&od).unwrap(), None);
    assert_eq!(b.contains_many(&[od]).unwrap(), vec![false], "and deleted");
}

/// A large blob goes to the bucket in parts from its committed file, and
/// comes back to another node through a staged file (verified on the
/// way), served as a file: never whole in memory either way.
#[test]
fn a_large_blob_crosses_the_bucket_in_parts_and_lands_as_a_file() {
    let server = super::moto::Moto::start();
    let root = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let local = RocksStore::open(root.path().join(name)).unwrap();
        TieredStore::new(local, &server.bucket("large/")).unwrap()
    };
    let (a, b) = (node("a"), node("b"));
    // 20 MiB: three parts of at most 8 MiB.
    let data = Bytes::from(
        (0..20u32 << 20)
            .map(|i| (i % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    let digest = Digest::of(&data);
    let mut staged = a.stage(&digest).unwrap();
    for piece in data.chunks(1 << 20) {
        staged.append(piece).unwrap();
    }
    a.commit(staged.finish().unwrap()).unwrap();
    match b.open(&digest).unwrap() {
        Some(crate::store::StoredBlob::File(mut file)) => {
            use std::io::Read;
            let mut back = Vec::new();
            file.read_to_end(&mut back).unwrap();
            assert!(back == data, "the bytes that came back differ");
        }
        other => panic!("expected b to serve a file, got {other:?}"),
    }
    assert_eq!(b.local().contains_many(&[digest]).unwrap(), vec![true]);

    // A corrupt large object is refused on the way in and deleted.
    let other = Bytes::from(vec![3u8; 2 << 20]);
    let od = Digest::of(&other);
    let mut lie = other.to_vec();
    lie[12345] ^= 1;
    a.write_unverified_remote(&od, &lie);
    assert!(b.open(&od).unwrap().is_none());
    assert_eq!(b.contains_many(&[od]).unwrap(), vec![false], "and deleted");
}

/// A write the bucket does not take is not acknowledged, and leaves no
/// local copy behind: the client's retry must reach the bucket, not be
/// answered "present" by this node alone.
#[test]
fn a_write_the_bucket_refuses_fails_and_is_not_kept_locally() {
    let server = super::moto::Moto::start();
    let root = tempfile::tempdir().unwrap();
    let local = RocksStore::open(root.path().join("a")).unwrap();
    let store = TieredStore::new(local, &server.bucket("down/")).unwrap();
    drop(server);
    let data = blob(9, 5000);
    let digest = Digest::of(&data);
    assert!(
        store.put(&digest, data.clone()).is_err(),
        "acknowledged without the bucket"
    );
    let batch = store.put_many(vec![(digest, data)]);
    assert!(batch[0].is_err(), "batch acknowledged without the bucket");
    assert_eq!(
        store.local().contains_many(&[digest]).unwrap(),
        vec![false],
        "a local copy would answer the retry"
    );
    let entry = Bytes::from_static(b"a result");
    assert!(store
        .meta_put(MetaTable::ActionCache, b"inst/x", entry)
        .is_err());
    assert_eq!(
        store
            .local()
            .meta_get(MetaTable::ActionCache, b"inst/x")
            .unwrap(),
        None,
        "an action result the bucket refused is not served from here alone"
    );
}
