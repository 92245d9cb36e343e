//! LocalCas on real directories: verification, the in-place-write check,
//! reopening, eviction, adoption and the cross-filesystem fallbacks.

use crate::tree::FileMode;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

fn meta(path: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(path).unwrap()
}

fn tmp_files(cas: &LocalCas) -> usize {
    std::fs::read_dir(cas.dir().join("tmp")).unwrap().count()
}

/// A directory on another filesystem than the temp dir, for the `EXDEV`
/// paths. Linux machines (and CI) have a tmpfs at /dev/shm.
fn other_filesystem() -> tempfile::TempDir {
    let home_dev = meta(&std::env::temp_dir()).dev();
    for candidate in ["/dev/shm", "/run"] {
        let Ok(m) = std::fs::metadata(candidate) else {
            continue;
        };
        if m.dev() != home_dev {
            if let Ok(dir) = tempfile::tempdir_in(candidate) {
                return dir;
            }
        }
    }
    panic!("cross-filesystem tests need a writable filesystem other than the temp dir's (/dev/shm or /run)");
}

#[test]
fn insert_rejects_bytes_that_do_not_match_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"right");
    let err = cas
        .insert_bytes(&digest, b"wrong", FileMode::Plain)
        .unwrap_err();
    assert!(matches!(err, LocalCasError::DigestMismatch { .. }), "{err}");
    assert!(!cas.contains(&digest, FileMode::Plain));
    assert!(!cas.entry_path(&digest, FileMode::Plain).exists());
    assert_eq!(tmp_files(&cas), 0);
    assert_eq!(cas.stats().entries, 0);
}

#[test]
fn executable_and_plain_entries_are_separate_read_only_inodes() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"#!/bin/sh\n");
    cas.insert_bytes(&digest, b"#!/bin/sh\n", FileMode::Plain)
        .unwrap();
    cas.insert_bytes(&digest, b"#!/bin/sh\n", FileMode::Executable)
        .unwrap();
    let (plain, exec) = (
        cas.entry_path(&digest, FileMode::Plain),
        cas.entry_path(&digest, FileMode::Executable),
    );
    assert_ne!(meta(&plain).ino(), meta(&exec).ino());
    assert_eq!(meta(&plain).mode() & 0o7777, 0o444);
    assert_eq!(meta(&exec).mode() & 0o7777, 0o555);

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    assert_eq!(
        cas.link_into(&digest, FileMode::Executable, &out.join("run.sh"))
            .unwrap(),
        Placement::Linked
    );
    assert_eq!(meta(&out.join("run.sh")).ino(), meta(&exec).ino());
    assert_eq!(meta(&exec).nlink(), 2);
    assert_eq!(meta(&plain).nlink(), 1, "the plain entry is untouched");
    let stats = cas.stats();
    assert_eq!((stats.entries, stats.inserted, stats.bytes), (2, 2, 20));
}

#[test]
fn a_write_through_a_link_is_detected_and_the_entry_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"pristine");
    cas.insert_bytes(&digest, b"pristine", FileMode::Plain)
        .unwrap();
    let linked = dir.path().join("linked");
    cas.link_into(&digest, FileMode::Plain, &linked).unwrap();

    // What a step running as root might do to an input.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&linked)
        .unwrap();
    f.write_all(b" and then some").unwrap();
    drop(f);

    assert!(!cas.contains(&digest, FileMode::Plain));
    assert!(
        !cas.entry_path(&digest, FileMode::Plain).exists(),
        "dropped from disk"
    );
    assert_eq!(cas.stats().stale_dropped, 1);
    assert!(matches!(
        cas.link_into(&digest, FileMode::Plain, &dir.path().join("again")),
        Err(LocalCasError::NotCached(_))
    ));
    // Stored again, it is whole, and the step's file keeps its own bytes.
    cas.insert_bytes(&digest, b"pristine", FileMode::Plain)
        .unwrap();
    let fresh = dir.path().join("fresh");
    cas.link_into(&digest, FileMode::Plain, &fresh).unwrap();
    assert_eq!(std::fs::read(&fresh).unwrap(), b"pristine");
    assert_eq!(std::fs::read(&linked).unwrap(), b"pristine and then some");
}

#[test]
fn a_chmod_through_a_link_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"script");
    cas.insert_bytes(&digest, b"script", FileMode::Plain)
        .unwrap();
    let linked = dir.path().join("linked");
    cas.link_into(&digest, FileMode::Plain, &linked).unwrap();
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!cas.contains(&digest, FileMode::Plain));
    assert_eq!(cas.stats().stale_dropped, 1);
}

#[test]
fn reopening_keeps_sealed_entries_and_drops_changed_ones_and_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cas");
    let (a, b) = (Digest::of(b"aaaa"), Digest::of(b"bbbb"));
    {
        let cas = LocalCas::open(&root, None).unwrap();
        cas.insert_bytes(&a, b"aaaa", FileMode::Plain).unwrap();
        cas.insert_bytes(&b, b"bbbb", FileMode::Executable).unwrap();
        // Changed while no runner was watching.
        let path = cas.entry_path(&b, FileMode::Executable);
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all(b"BBBB").unwrap();
        std::fs::write(root.join("tmp").join("crashed-insert"), b"half").unwrap();
        std::fs::write(root.join("00").join("README"), b"not ours").unwrap();
    }
    let cas = LocalCas::open(&root, None).unwrap();
    assert!(cas.contains(&a, FileMode::Plain));
    assert!(!cas.contains(&b, FileMode::Executable));
    assert!(!cas.entry_path(&b, FileMode::Executable).exists());
    assert_eq!(cas.stats().stale_dropped, 1);
    assert_eq!(tmp_files(&cas), 0, "leftover inserts are cleared");
    assert!(
        root.join("00").join("README").exists(),
        "strangers are left alone"
    );
    assert_eq!(cas.stats().entries, 1);
}

#[test]
fn the_cap_evicts_least_recently_used_entries() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), Some(25)).unwrap();
    let blobs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 10]).collect();
    let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
    cas.insert_bytes(&digests[0], &blobs[0], FileMode::Plain)
        .unwrap();
    cas.insert_bytes(&digests[1], &blobs[1], FileMode::Plain)
        .unwrap();
    assert!(cas.contains(&digests[0], FileMode::Plain)); // now the most recent
    cas.insert_bytes(&digests[2], &blobs[2], FileMode::Plain)
        .unwrap();
    let stats = cas.stats();
    assert_eq!((stats.evicted, stats.evicted_bytes), (1, 10));
    assert_eq!((stats.entries, stats.bytes), (2, 20));
    assert!(!cas.entry_path(&digests[1], FileMode::Plain).exists());
    assert!(cas.contains(&digests[0], FileMode::Plain));
    assert!(cas.contains(&digests[2], FileMode::Plain));
}

#[test]
fn insert_file_adopts_by_hard_link_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let saved = dir.path().join("saved.bin");
    std::fs::write(&saved, b"dependency").unwrap();
    let digest = Digest::of(b"dependency");
    assert_eq!(
        cas.insert_file(&saved, &digest, FileMode::Plain).unwrap(),
        Placement::Linked
    );
    let entry = cas.entry_path(&digest, FileMode::Plain);
    assert_eq!(meta(&entry).ino(), meta(&saved).ino());
    assert_eq!(meta(&entry).mode() & 0o7777, 0o444);
    assert!(cas.contains(&digest, FileMode::Plain));
    assert_eq!(tmp_files(&cas), 0);

    let other = dir.path().join("other.bin");
    std::fs::write(&other, b"not what you said").unwrap();
    let wrong = Digest::of(b"something else");
    let err = cas
        .insert_file(&other, &wrong, FileMode::Plain)
        .unwrap_err();
    assert!(matches!(err, LocalCasError::DigestMismatch { .. }), "{err}");
    assert!(!cas.entry_path(&wrong, FileMode::Plain).exists());
    assert_eq!(tmp_files(&cas), 0);
}

#[test]
fn insert_file_copies_across_filesystems() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = other_filesystem();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let saved = elsewhere.path().join("saved.bin");
    std::fs::write(&saved, b"far away").unwrap();
    let digest = Digest::of(b"far away");
    assert_eq!(
        cas.insert_file(&saved, &digest, FileMode::Executable)
            .unwrap(),
        Placement::Copied
    );
    let entry = cas.entry_path(&digest, FileMode::Executable);
    assert_ne!(meta(&entry).dev(), meta(&saved).dev());
    assert_eq!(std::fs::read(&entry).unwrap(), b"far away");
    assert_eq!(meta(&entry).mode() & 0o7777, 0o555);
    assert!(cas.contains(&digest, FileMode::Executable));
}

#[test]
fn linking_across_filesystems_falls_back_to_a_copy() {
    let elsewhere = other_filesystem();
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(elsewhere.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"content");
    cas.insert_bytes(&digest, b"content", FileMode::Executable)
        .unwrap();
    let dest = dir.path().join("dest");
    assert_eq!(
        cas.link_into(&digest, FileMode::Executable, &dest).unwrap(),
        Placement::Copied
    );
    assert_eq!(std::fs::read(&dest).unwrap(), b"content");
    assert_eq!(meta(&dest).mode() & 0o7777, 0o555);
    assert_eq!(
        meta(&cas.entry_path(&digest, FileMode::Executable)).nlink(),
        1
    );
}

#[test]
fn concurrent_inserts_of_one_blob_leave_one_intact_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 97) as u8).collect();
    let digest = Digest::of(&data);
    let outs: Vec<PathBuf> = (0..8).map(|i| dir.path().join(format!("out{i}"))).collect();
    std::thread::scope(|scope| {
        for out in &outs {
            let (cas, data) = (cas.clone(), &data);
            scope.spawn(move || {
                cas.insert_bytes(&digest, data, FileMode::Plain).unwrap();
                cas.link_into(&digest, FileMode::Plain, out).unwrap();
            });
        }
    });
    let stats = cas.stats();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.inserted, 1, "later inserts keep the first entry");
    assert_eq!(stats.stale_dropped, 0);
    let entry = cas.entry_path(&digest, FileMode::Plain);
    assert_eq!(meta(&entry).nlink(), 1 + outs.len() as u64);
    for out in &outs {
        assert_eq!(meta(out).ino(), meta(&entry).ino());
    }
    assert_eq!(std::fs::read(&entry).unwrap(), data);
    assert_eq!(tmp_files(&cas), 0);
}

#[test]
fn insert_file_copies_a_file_that_shares_its_inode_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let saved = dir.path().join("saved.bin");
    std::fs::write(&saved, b"shared").unwrap();
    std::fs::set_permissions(&saved, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::hard_link(&saved, dir.path().join("other-link")).unwrap();
    let before = meta(&saved);
    let digest = Digest::of(b"shared");
    assert_eq!(
        cas.insert_file(&saved, &digest, FileMode::Plain).unwrap(),
        Placement::Copied
    );
    let after = meta(&saved);
    assert_eq!(
        after.mode() & 0o7777,
        0o644,
        "the source's mode is untouched"
    );
    assert_eq!(after.mtime(), before.mtime(), "and so is its mtime");
    assert_ne!(
        meta(&cas.entry_path(&digest, FileMode::Plain)).ino(),
        after.ino()
    );
    assert!(cas.contains(&digest, FileMode::Plain));
    assert_eq!(cas.stats().adopted_by_copy, 1);
}

#[test]
fn insert_file_of_the_entry_itself_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"restored");
    cas.insert_bytes(&digest, b"restored", FileMode::Executable)
        .unwrap();
    let restored = dir.path().join("restored");
    cas.link_into(&digest, FileMode::Executable, &restored)
        .unwrap();
    assert_eq!(
        cas.insert_file(&restored, &digest, FileMode::Executable)
            .unwrap(),
        Placement::Linked
    );
    let stats = cas.stats();
    assert_eq!((stats.inserted, stats.adopted_by_copy), (1, 0));
    assert_eq!(
        meta(&cas.entry_path(&digest, FileMode::Executable)).nlink(),
        2
    );
}

/// What `touch -d` does after a write: the mtime put back to the stamp.
fn put_mtime_back(path: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_modified(entry_file::entry_mtime()).unwrap();
}

#[test]
fn a_write_whose_mtime_is_put_back_is_caught_by_the_ctime_and_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"true bytes");
    cas.insert_bytes(&digest, b"true bytes", FileMode::Plain)
        .unwrap();
    let linked = dir.path().join("linked");
    cas.link_into(&digest, FileMode::Plain, &linked).unwrap();
    let key = EntryKey {
        digest,
        mode: FileMode::Plain,
    };
    let recorded = cas.inner.index.lock().get(&key).unwrap();
    // Sleep past the clock's tick so the ctime surely moves.
    std::thread::sleep(std::time::Duration::from_millis(20));

    // A step running as root: same size, mode kept, mtime put back.
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&linked, b"POISON!!!!").unwrap();
    std::fs::set_permissions(&linked, std::fs::Permissions::from_mode(0o444)).unwrap();
    put_mtime_back(&linked);

    let now = stat_entry(&cas.entry_path(&digest, FileMode::Plain)).unwrap();
    assert!(
        recorded.stat.same_but_ctime(&now),
        "everything but the ctime looks sealed: {:?} vs {now:?}",
        recorded.stat
    );
    assert_ne!(recorded.stat, now, "the ctime tells");
    assert_eq!(cas.probe(&digest, FileMode::Plain), Probe::Changed);
    assert!(
        !cas.entry_path(&digest, FileMode::Plain).exists(),
        "dropped"
    );
    assert_eq!(cas.stats().stale_dropped, 1);
    assert_eq!(cas.probe(&digest, FileMode::Plain), Probe::Absent);

    cas.insert_bytes(&digest, b"true bytes", FileMode::Plain)
        .unwrap();
    let fresh = dir.path().join("fresh");
    cas.link_into(&digest, FileMode::Plain, &fresh).unwrap();
    assert_eq!(std::fs::read(&fresh).unwrap(), b"true bytes");
}

#[test]
fn links_the_cache_makes_and_removes_cost_no_hashing_others_cost_one() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    let digest = Digest::of(b"input");
    cas.insert_bytes(&digest, b"input", FileMode::Executable)
        .unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    for name in ["a", "sub/b"] {
        std::thread::sleep(std::time::Duration::from_millis(5));
        cas.link_into(&digest, FileMode::Executable, &work.join(name))
            .unwrap();
    }
    std::fs::write(work.join("own-file"), b"the step's").unwrap();
    let released = cas.remove_work_dir(&work).unwrap();
    assert_eq!(
        released,
        Released {
            released: 2,
            unproven: 0
        }
    );
    assert!(!work.exists());
    assert!(cas.contains(&digest, FileMode::Executable));
    assert_eq!(cas.stats().rehashed, 0, "every ctime change was ours");

    // A link removed by someone else (a step's `rm` of its input): the
    // bytes are hashed once, found intact, and trusted again.
    let other = dir.path().join("other");
    cas.link_into(&digest, FileMode::Executable, &other)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::remove_file(&other).unwrap();
    assert!(cas.contains(&digest, FileMode::Executable));
    assert!(cas.contains(&digest, FileMode::Executable));
    let stats = cas.stats();
    assert_eq!((stats.rehashed, stats.stale_dropped), (1, 0));
}

#[test]
fn entries_found_when_reopening_are_hashed_before_their_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cas");
    let (a, b) = (Digest::of(b"kept"), Digest::of(b"bent"));
    {
        let cas = LocalCas::open(&root, None).unwrap();
        cas.insert_bytes(&a, b"kept", FileMode::Plain).unwrap();
        cas.insert_bytes(&b, b"bent", FileMode::Plain).unwrap();
    }
    // While no runner watched: same size, mtime put back.
    let bent = root.join(fan_out(&b)).join(entry_name(&EntryKey {
        digest: b,
        mode: FileMode::Plain,
    }));
    std::fs::set_permissions(&bent, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&bent, b"BENT").unwrap();
    std::fs::set_permissions(&bent, std::fs::Permissions::from_mode(0o444)).unwrap();
    put_mtime_back(&bent);

    let cas = LocalCas::open(&root, None).unwrap();
    assert_eq!(cas.stats().entries, 2, "both still look sealed");
    assert_eq!(cas.probe(&a, FileMode::Plain), Probe::Intact);
    assert_eq!(cas.probe(&b, FileMode::Plain), Probe::Changed);
    assert!(cas.contains(&a, FileMode::Plain));
    let stats = cas.stats();
    assert_eq!(
        (stats.rehashed, stats.stale_dropped, stats.entries),
        (1, 1, 1),
        "a hashed once, b dropped"
    );
}

#[test]
fn entries_belong_to_the_caches_owner_and_its_directory_to_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let cas = LocalCas::open(dir.path().join("cas"), None).unwrap();
    assert_eq!(meta(cas.dir()).mode() & 0o777, 0o700);
    let owner = meta(&cas.dir().join("tmp")).uid();
    let saved = dir.path().join("saved.bin");
    std::fs::write(&saved, b"a step's dependency cache").unwrap();
    let root = owner == 0;
    if root {
        // Written by a step user: adopted by link, and given to the owner
        // so that user can no longer write it.
        std::os::unix::fs::chown(&saved, Some(65534), Some(65534)).unwrap();
    }
    let digest = Digest::of(b"a step's dependency cache");
    assert_eq!(
        cas.insert_file(&saved, &digest, FileMode::Plain).unwrap(),
        Placement::Linked
    );
    let entry = meta(&cas.entry_path(&digest, FileMode::Plain));
    assert_eq!((entry.uid(), entry.ino()), (owner, meta(&saved).ino()));
    assert_eq!(entry.mode() & 0o777, 0o444);
    assert!(cas.contains(&digest, FileMode::Plain));
    if root {
        // Handed back to the step user behind our back: caught.
        std::os::unix::fs::chown(&saved, Some(65534), Some(65534)).unwrap();
        assert_eq!(cas.probe(&digest, FileMode::Plain), Probe::Changed);
    }
}
