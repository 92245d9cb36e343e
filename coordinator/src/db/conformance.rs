//! The contract every backend keeps, run against each of them.

use super::{Kv, MemoryKv, RocksKv};

fn keeps_the_contract(kv: &dyn Kv) {
    assert_eq!(kv.get(b"a").unwrap(), None);
    kv.put(vec![
        (b"a/2".to_vec(), b"two".to_vec()),
        (b"a/1".to_vec(), b"one".to_vec()),
        (b"b/1".to_vec(), b"other".to_vec()),
        (b"a".to_vec(), b"bare".to_vec()),
    ])
    .unwrap();
    assert_eq!(kv.get(b"a/1").unwrap().as_deref(), Some(&b"one"[..]));
    // Scans see only the prefix, in key order.
    let keys: Vec<Vec<u8>> = kv.scan(b"a/").unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(keys, [b"a/1".to_vec(), b"a/2".to_vec()]);
    assert_eq!(kv.scan(b"c").unwrap(), []);
    // A later write replaces a value.
    kv.put(vec![(b"a/1".to_vec(), b"uno".to_vec())]).unwrap();
    assert_eq!(kv.get(b"a/1").unwrap().as_deref(), Some(&b"uno"[..]));
    // Deletes remove exactly the keys named; absent keys are no error.
    kv.delete(vec![b"a/1".to_vec(), b"zzz".to_vec()]).unwrap();
    assert_eq!(kv.get(b"a/1").unwrap(), None);
    assert_eq!(kv.get(b"a/2").unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(kv.scan(b"").unwrap().len(), 3);
}

#[test]
fn memory_keeps_the_contract() {
    keeps_the_contract(&MemoryKv::default());
}

#[test]
fn rocksdb_keeps_the_contract_and_its_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let kv = RocksKv::open(dir.path()).unwrap();
        keeps_the_contract(&kv);
    }
    // Reopened, what was written is there.
    let kv = RocksKv::open(dir.path()).unwrap();
    assert_eq!(kv.get(b"a/2").unwrap().as_deref(), Some(&b"two"[..]));
    // A second opening of a held database is refused, naming it.
    let again = RocksKv::open(dir.path());
    assert!(again.is_err());
}
