//! Materialising through a runner's LocalCas, end to end over a real tonic
//! server on loopback.

mod support;

use buildfleet_cache::FileMode;
use support::{set_mode, write, TestServer};

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use buildfleet_cache::{snapshot, CasClient, Digest, LocalCas, MemoryStore, RocksStore, Snapshot};

fn meta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

fn big_blob() -> Vec<u8> {
    (0..3 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect()
}

/// A tree with every kind of entry: small and large (ByteStream) files, a
/// script and a plain file with the same bytes, an empty file, a symlink
/// and an empty directory.
fn sample_tree(root: &Path) {
    write(root, "README.md", b"# project\n");
    write(root, "src/lib.rs", b"pub fn f() {}\n");
    write(root, "src/copy.rs", b"pub fn f() {}\n");
    write(root, "bin/run.sh", b"#!/bin/sh\necho run\n");
    write(root, "doc/run.sh.txt", b"#!/bin/sh\necho run\n");
    write(root, "empty.txt", b"");
    write(root, "assets/big.bin", &big_blob());
    std::fs::create_dir_all(root.join("empty_dir")).unwrap();
    for plain in [
        "README.md",
        "src/lib.rs",
        "src/copy.rs",
        "doc/run.sh.txt",
        "empty.txt",
        "assets/big.bin",
    ] {
        set_mode(&root.join(plain), 0o644);
    }
    set_mode(&root.join("bin/run.sh"), 0o755);
    std::os::unix::fs::symlink("../README.md", root.join("src/readme-link")).unwrap();
}

/// Distinct non-empty file blobs in `sample_tree`: README, lib.rs (= copy.rs),
/// run.sh (= run.sh.txt), big.bin.
const SAMPLE_BLOBS: u64 = 4;
const SAMPLE_FILES: u64 = 7;

async fn uploaded(server: &TestServer, src: &Path) -> (CasClient, Snapshot) {
    let snap = snapshot(src).unwrap();
    let client = CasClient::connect(&server.url).await.unwrap();
    client.upload_snapshot(&snap).await.unwrap();
    (client, snap)
}

#[tokio::test]
async fn a_second_materialisation_fetches_nothing_and_links_every_file() {
    let db = tempfile::tempdir().unwrap();
    let server = TestServer::start(Arc::new(RocksStore::open(db.path()).unwrap())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();

    let first_dest = work.path().join("first");
    let cold = client
        .materialise_with(&snap.root, &first_dest, Some(&local))
        .await
        .unwrap();
    assert_eq!(cold.fetched_blobs, SAMPLE_BLOBS);
    assert_eq!(cold.local_blobs, 0);
    assert_eq!(cold.fetched_bytes, 10 + 14 + 19 + big_blob().len() as u64);
    assert_eq!((cold.linked_files, cold.copied_files), (SAMPLE_FILES, 0));

    let second_dest = work.path().join("second");
    let warm = client
        .materialise_with(&snap.root, &second_dest, Some(&local))
        .await
        .unwrap();
    assert_eq!(warm.fetched_blobs, 0);
    assert_eq!(warm.fetched_bytes, 0);
    // The four blobs plus the empty one, all served locally.
    assert_eq!(warm.local_blobs, SAMPLE_BLOBS + 1);
    assert_eq!((warm.linked_files, warm.copied_files), (SAMPLE_FILES, 0));
    assert_eq!((warm.files, warm.symlinks), (SAMPLE_FILES, 1));
    // dest, src, bin, doc, assets, empty_dir
    assert_eq!(warm.directories, 6);

    let readme = Digest::of(b"# project\n");
    let entry = local.entry_path(&readme, FileMode::Plain);
    assert_eq!(
        meta(&second_dest.join("README.md")).ino(),
        meta(&entry).ino()
    );
    assert_eq!(meta(&entry).nlink(), 3, "the entry and one link per tree");
    let big = local.entry_path(&Digest::of(&big_blob()), FileMode::Plain);
    assert_eq!(
        meta(&second_dest.join("assets/big.bin")).ino(),
        meta(&big).ino()
    );
    assert_eq!(
        std::fs::read_link(second_dest.join("src/readme-link")).unwrap(),
        Path::new("../README.md")
    );
    assert!(second_dest.join("empty_dir").is_dir());
    // Same bytes and modes as the source: the same snapshot root.
    assert_eq!(snapshot(&second_dest).unwrap().root, snap.root);
    assert_eq!(snapshot(&first_dest).unwrap().root, snap.root);
    server.stop().await;
}

#[tokio::test]
async fn executable_bits_are_kept_and_same_content_plain_files_are_separate() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    let dest = work.path().join("out");
    client
        .materialise_with(&snap.root, &dest, Some(&local))
        .await
        .unwrap();

    let (script, text) = (dest.join("bin/run.sh"), dest.join("doc/run.sh.txt"));
    assert_eq!(meta(&script).mode() & 0o777, 0o555);
    assert_eq!(meta(&text).mode() & 0o777, 0o444);
    assert_ne!(meta(&script).ino(), meta(&text).ino());
    let digest = Digest::of(b"#!/bin/sh\necho run\n");
    assert_eq!(
        meta(&script).ino(),
        meta(&local.entry_path(&digest, FileMode::Executable)).ino()
    );
    assert_eq!(
        meta(&text).ino(),
        meta(&local.entry_path(&digest, FileMode::Plain)).ino()
    );
    // One download served both modes.
    assert_eq!(local.stats().entries, SAMPLE_BLOBS + 2);
    server.stop().await;
}

#[tokio::test]
async fn an_input_modified_in_place_is_noticed_and_fetched_again() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    let first = work.path().join("first");
    client
        .materialise_with(&snap.root, &first, Some(&local))
        .await
        .unwrap();

    // A step (as root) appends to a linked input.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(first.join("README.md"))
        .unwrap();
    f.write_all(b"edited by a step\n").unwrap();
    drop(f);

    let second = work.path().join("second");
    let stats = client
        .materialise_with(&snap.root, &second, Some(&local))
        .await
        .unwrap();
    assert_eq!(stats.fetched_blobs, 1, "only the changed blob");
    assert_eq!(stats.fetched_bytes, 10);
    assert_eq!(local.stats().stale_dropped, 1);
    assert_eq!(
        std::fs::read(second.join("README.md")).unwrap(),
        b"# project\n"
    );
    assert_eq!(snapshot(&second).unwrap().root, snap.root);

    let third = work.path().join("third");
    let again = client
        .materialise_with(&snap.root, &third, Some(&local))
        .await
        .unwrap();
    assert_eq!(again.fetched_blobs, 0);
    assert_eq!(snapshot(&third).unwrap().root, snap.root);
    server.stop().await;
}

#[tokio::test]
async fn an_input_rewritten_with_its_mtime_put_back_is_found_by_its_ctime_and_fetched_again() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    let first = work.path().join("first");
    client
        .materialise_with(&snap.root, &first, Some(&local))
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    // What a root step can do: same size, mode and mtime as before.
    let readme = first.join("README.md");
    set_mode(&readme, 0o644);
    std::fs::write(
        &readme,
        b"# poison!
",
    )
    .unwrap();
    set_mode(&readme, 0o444);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&readme)
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800))
        .unwrap();
    drop(f);

    let second = work.path().join("second");
    let stats = client
        .materialise_with(&snap.root, &second, Some(&local))
        .await
        .unwrap();
    assert_eq!(stats.changed_in_local_cache, 1);
    assert_eq!(stats.first_changed.as_deref(), Some(Path::new("README.md")));
    assert_eq!((stats.fetched_blobs, stats.fetched_bytes), (1, 10));
    assert_eq!(
        std::fs::read(second.join("README.md")).unwrap(),
        b"# project\n"
    );
    assert_eq!(snapshot(&second).unwrap().root, snap.root);
    assert_eq!(local.stats().stale_dropped, 1);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_materialisations_of_one_tree_share_the_cache() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    for i in 0..200 {
        write(
            src.path(),
            &format!("many/{i}.txt"),
            format!("file {i}\n").as_bytes(),
        );
    }
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let (ra, rb) = tokio::join!(
        client.materialise_with(&snap.root, &a, Some(&local)),
        client.materialise_with(&snap.root, &b, Some(&local)),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.linked_files + ra.copied_files, SAMPLE_FILES + 200);
    assert_eq!(rb.linked_files + rb.copied_files, SAMPLE_FILES + 200);
    assert_eq!(snapshot(&a).unwrap().root, snap.root);
    assert_eq!(snapshot(&b).unwrap().root, snap.root);
    let stats = local.stats();
    assert_eq!(stats.entries, SAMPLE_BLOBS + 2 + 200);
    assert_eq!(stats.stale_dropped, 0);
    assert_eq!(
        std::fs::read_dir(local.dir().join("tmp")).unwrap().count(),
        0
    );
    server.stop().await;
}

#[tokio::test]
async fn a_cap_smaller_than_the_tree_still_materialises_it() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), Some(1024)).unwrap();
    let dest = work.path().join("out");
    let stats = client
        .materialise_with(&snap.root, &dest, Some(&local))
        .await
        .unwrap();
    assert_eq!(stats.linked_files, SAMPLE_FILES);
    assert_eq!(snapshot(&dest).unwrap().root, snap.root);
    let cache = local.stats();
    assert!(cache.evicted >= 1, "{cache:?}");
    assert!(cache.bytes <= 1024, "{cache:?}");
    assert!(!local
        .entry_path(&Digest::of(&big_blob()), FileMode::Plain)
        .exists());
    server.stop().await;
}

#[tokio::test]
async fn a_cache_on_another_filesystem_copies_and_counts_it() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    assert_ne!(meta(shm.path()).dev(), meta(work.path()).dev());
    let local = LocalCas::open(shm.path().join("cas"), None).unwrap();
    let dest = work.path().join("out");
    let stats = client
        .materialise_with(&snap.root, &dest, Some(&local))
        .await
        .unwrap();
    assert_eq!((stats.linked_files, stats.copied_files), (0, SAMPLE_FILES));
    assert_eq!(snapshot(&dest).unwrap().root, snap.root);
    server.stop().await;
}

#[tokio::test]
async fn files_adopted_after_a_step_make_the_next_restore_warm() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let saved = tempfile::tempdir().unwrap();
    sample_tree(saved.path());
    let (client, snap) = uploaded(&server, saved.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    // What a step's "save dependency cache" does after uploading.
    for (rel, executable) in [
        ("README.md", false),
        ("src/lib.rs", false),
        ("bin/run.sh", true),
        ("doc/run.sh.txt", false),
        ("empty.txt", false),
        ("assets/big.bin", false),
    ] {
        let path = saved.path().join(rel);
        let digest = Digest::of(&std::fs::read(&path).unwrap());
        local
            .insert_file(&path, &digest, FileMode::of(executable))
            .unwrap();
    }
    let dest = work.path().join("restored");
    let stats = client
        .materialise_with(&snap.root, &dest, Some(&local))
        .await
        .unwrap();
    assert_eq!(stats.fetched_blobs, 0);
    assert_eq!(stats.linked_files, SAMPLE_FILES);
    assert_eq!(snapshot(&dest).unwrap().root, snap.root);
    server.stop().await;
}

#[tokio::test]
async fn without_a_local_cache_materialise_with_writes_files_as_before() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("out");
    let stats = client
        .materialise_with(&snap.root, &dest, None)
        .await
        .unwrap();
    assert_eq!(stats.fetched_blobs, SAMPLE_BLOBS);
    assert_eq!((stats.linked_files, stats.local_blobs), (0, 0));
    assert_eq!(meta(&dest.join("bin/run.sh")).mode() & 0o777, 0o755);
    assert_eq!(meta(&dest.join("README.md")).mode() & 0o777, 0o644);
    assert_eq!(snapshot(&dest).unwrap().root, snap.root);
    server.stop().await;
}

#[tokio::test]
async fn a_wide_and_deep_tree_is_placed_whole() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    // 6 × 6 × 6 directories, a file in each, some contents shared.
    for a in 0..6 {
        for b in 0..6 {
            for c in 0..6 {
                let rel = format!("p{a}/q{b}/r{c}/file.txt");
                write(
                    src.path(),
                    &rel,
                    format!("{}\n", (a + b + c) % 5).as_bytes(),
                );
            }
        }
    }
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    for round in ["cold", "warm"] {
        let dest = work.path().join(round);
        let stats = client
            .materialise_with(&snap.root, &dest, Some(&local))
            .await
            .unwrap();
        assert_eq!(stats.directories, 1 + 6 + 36 + 216, "{round}");
        assert_eq!(stats.linked_files, 216, "{round}");
        assert_eq!(snapshot(&dest).unwrap().root, snap.root, "{round}");
    }
    assert_eq!(local.stats().entries, 5);
    server.stop().await;
}

#[tokio::test]
async fn a_file_in_the_way_of_a_directory_fails_the_materialisation() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    let dest = work.path().join("out");
    write(&dest, "src", b"a file where the tree has a directory");
    let err = client
        .materialise_with(&snap.root, &dest, Some(&local))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, buildfleet_cache::CacheError::Io { path, .. } if path.ends_with("src")),
        "{err:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn adopting_an_input_a_step_rewrote_in_place_does_not_hide_the_change() {
    let server = TestServer::start(Arc::new(MemoryStore::new())).await;
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path());
    let (client, snap) = uploaded(&server, src.path()).await;
    let work = tempfile::tempdir().unwrap();
    let local = LocalCas::open(work.path().join("cas"), None).unwrap();
    let step = work.path().join("step");
    client
        .materialise_with(&snap.root, &step, Some(&local))
        .await
        .unwrap();

    // A step rewrites a restored (hard-linked) input in place, same size,
    // then its directory is saved and adopted, as a dependency cache is.
    let readme = step.join("README.md");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&readme)
        .unwrap();
    f.write_all(b"# changed!").unwrap();
    drop(f);
    let saved = snapshot(&step).unwrap();
    client.upload_snapshot(&saved).await.unwrap();
    let changed = Digest::of(b"# changed!");
    assert!(!local.contains(&changed, FileMode::Plain));
    assert_eq!(
        local
            .insert_file(&readme, &changed, FileMode::Plain)
            .unwrap(),
        buildfleet_cache::Placement::Copied,
        "a shared inode is copied, never sealed in place"
    );

    // The original entry's change is still visible, so the original tree
    // comes back right, and the saved tree too.
    let again = work.path().join("again");
    let stats = client
        .materialise_with(&snap.root, &again, Some(&local))
        .await
        .unwrap();
    assert_eq!(
        stats.fetched_blobs, 1,
        "the rewritten README is fetched again"
    );
    assert_eq!(
        std::fs::read(again.join("README.md")).unwrap(),
        b"# project\n"
    );
    assert_eq!(snapshot(&again).unwrap().root, snap.root);
    let restored = work.path().join("restored-save");
    let stats = client
        .materialise_with(&saved.root, &restored, Some(&local))
        .await
        .unwrap();
    assert_eq!(stats.fetched_blobs, 0);
    assert_eq!(snapshot(&restored).unwrap().root, saved.root);
    server.stop().await;
}
