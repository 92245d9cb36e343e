//! The on-disk side of a local cache entry: naming, writing and sealing a
//! temporary file (owned by the cache's owner, read-only, fixed mtime), the
//! `stat` an entry is judged by, and placing an entry into a work directory
//! by hard link with a copy fallback.

use crate::tree::FileMode;
use buildfleet_model::{DigestFunction, DigestHasher};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{fchown, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::index::{EntryKey, EntryStat};
use buildfleet_model::digest::Digest;

/// Every entry's mtime: 2000-01-01T00:00:00Z. Any write to an entry (through
/// any of its hard links) sets the mtime to "now", so an entry whose mtime
/// is not this stamp was written to. A fixed stamp, unlike a recorded one,
/// also survives restarts and can't collide with a write in the same clock
/// tick as the insert. (npm stamps package files with a fixed date too, so
/// build tools cope with old input mtimes.)
pub const ENTRY_MTIME_SECS: u64 = 946_684_800;

pub fn entry_mtime() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(ENTRY_MTIME_SECS)
}

/// Read-only modes: permission bits don't stop root, but they do stop an
/// unprivileged step and make a linked input look like what it is.
pub fn entry_mode(mode: FileMode) -> u32 {
    match mode {
        FileMode::Executable => 0o555,
        FileMode::Plain => 0o444,
    }
}

/// `<hash>-<size>-x` for executables, `<hash>-<size>-r` otherwise.
pub fn entry_name(key: &EntryKey) -> String {
    let kind = match key.mode {
        FileMode::Executable => 'x',
        FileMode::Plain => 'r',
    };
    format!("{}-{}-{kind}", key.digest.to_hex(), key.digest.size_bytes)
}

/// The inverse of [`entry_name`]; `None` for anything else.
pub fn parse_entry_name(name: &str) -> Option<EntryKey> {
    let (rest, kind) = name.rsplit_once('-')?;
    let mode = match kind {
        "x" => FileMode::Executable,
        "r" => FileMode::Plain,
        _ => return None,
    };
    let (hash, size) = rest.split_once('-')?;
    let digest = Digest::parse_parts(hash, size).ok()?;
    Some(EntryKey { digest, mode })
}

/// Fan-out directory: the first byte of the hash, as two hex digits, so no
/// directory holds more than 1/256 of the entries.
pub fn fan_out(digest: &Digest) -> String {
    hex::encode(&digest.hash[..1])
}

pub fn stat_of(meta: &std::fs::Metadata) -> EntryStat {
    EntryStat {
        size: meta.len(),
        mtime_secs: meta.mtime(),
        mtime_nanos: meta.mtime_nsec(),
        ctime_secs: meta.ctime(),
        ctime_nanos: meta.ctime_nsec(),
        ino: meta.ino(),
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
    }
}

/// Who entries belong to: the user and group of the process that owns the
/// cache (found from a directory it just created). Entries owned by anyone
/// else — a step's saved dependency cache being adopted — are given to it
/// before they are sealed, so a step user never owns an entry it could
/// `chmod` and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// The one `stat` (not following links) an entry gets before use.
pub fn stat_entry(path: &Path) -> io::Result<EntryStat> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "cache entry is not a regular file",
        ));
    }
    Ok(stat_of(&meta))
}

/// Why `stat` is not what a sealed entry for `key` shows on its own, or
/// `None` if it is. Nothing recorded is needed, so this is the first
/// filter when reopening a directory and before re-hashing; it cannot see a
/// write whose mtime was put back (`touch -d`), which only the bytes can.
pub fn unsealed_because(key: &EntryKey, stat: &EntryStat, owner: Owner) -> Option<&'static str> {
    if stat.size != key.digest.size_bytes {
        Some("its size is not the blob's")
    } else if stat.mtime_secs != ENTRY_MTIME_SECS as i64 || stat.mtime_nanos != 0 {
        Some("its mtime is not the sealed stamp (written to)")
    } else if stat.mode != entry_mode(key.mode) {
        Some("its mode is not read-only (chmod-ed)")
    } else if stat.uid != owner.uid {
        Some("it is not owned by the cache's owner (chown-ed)")
    } else {
        None
    }
}

/// True if `stat` is what an intact entry for `key` shows on its own.
#[cfg(test)]
pub fn looks_intact(key: &EntryKey, stat: &EntryStat, owner: Owner) -> bool {
    unsealed_because(key, stat, owner).is_none()
}

/// Creates `path` (which must not exist) with `data`, then seals it.
pub fn write_new(path: &Path, data: &[u8], mode: FileMode, owner: Owner) -> io::Result<EntryStat> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)?;
    seal(&file, mode, owner)
}

/// Gives an open entry file to `owner`, its final mode and the fixed
/// mtime, and returns what its `stat` now shows.
pub fn seal(file: &File, mode: FileMode, owner: Owner) -> io::Result<EntryStat> {
    let meta = file.metadata()?;
    if meta.uid() != owner.uid || meta.gid() != owner.gid {
        fchown(file, Some(owner.uid), Some(owner.gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(entry_mode(mode)))?;
    file.set_modified(entry_mtime())?;
    Ok(stat_of(&file.metadata()?))
}

/// Streams a file through BLAKE3; the size is what was read.
#[cfg(test)]
pub fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    hash_reader(&mut file)
}

pub fn hash_reader(reader: &mut impl Read) -> io::Result<Digest> {
    Digest::of_reader(reader)
}

/// Copies `from` to the new file `to` while hashing the bytes copied, then
/// seals it. Used where a hard link can't be made (another filesystem).
pub fn copy_hashing(
    from: &Path,
    to: &Path,
    mode: FileMode,
    owner: Owner,
) -> io::Result<(Digest, EntryStat)> {
    struct Tee<R> {
        inner: R,
        hasher: DigestHasher,
    }
    impl<R: Read> Read for Tee<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
    }
    let mut tee = Tee {
        inner: File::open(from)?,
        hasher: DigestFunction::Blake3.hasher(),
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    io::copy(&mut tee, &mut out)?;
    out.flush()?;
    Ok((tee.hasher.finalize(), seal(&out, mode, owner)?))
}

/// How a file got into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A hard link: no bytes copied, shares the inode.
    Linked,
    /// A copy, because linking failed (e.g. `EXDEV`: another filesystem).
    Copied,
}

/// Why a file could not be placed.
#[derive(Debug)]
pub enum PlaceError {
    /// The entry itself is gone (dropped or evicted concurrently).
    SourceGone,
    /// Writing the destination failed.
    Io { path: PathBuf, source: io::Error },
}

/// Hard-links `entry` at `dest`, replacing a file already there. If linking
/// fails for another reason than a missing entry, copies instead and reports
/// [`Placement::Copied`] with the link error, so the caller can log and
/// count it.
pub fn link_or_copy(
    entry: &Path,
    dest: &Path,
    mode: FileMode,
) -> Result<(Placement, Option<io::Error>), PlaceError> {
    let link_err = match std::fs::hard_link(entry, dest) {
        Ok(()) => return Ok((Placement::Linked, None)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Materialising over an existing tree: the new content wins, as
            // with a plain write.
            std::fs::remove_file(dest).map_err(|source| PlaceError::Io {
                path: dest.to_owned(),
                source,
            })?;
            match std::fs::hard_link(entry, dest) {
                Ok(()) => return Ok((Placement::Linked, None)),
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    if !entry.exists() {
        return Err(PlaceError::SourceGone);
    }
    copy_entry(entry, dest, mode).map_err(|source| PlaceError::Io {
        path: dest.to_owned(),
        source,
    })?;
    Ok((Placement::Copied, Some(link_err)))
}

/// The copy fallback: a private copy of an entry with the same mode a link
/// would have had, so a step sees the same tree whichever way it was made.
pub fn copy_entry(entry: &Path, dest: &Path, mode: FileMode) -> io::Result<()> {
    match std::fs::remove_file(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::copy(entry, dest)?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(entry_mode(mode)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me(dir: &Path) -> Owner {
        let meta = std::fs::metadata(dir).unwrap();
        Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }

    #[test]
    fn names_round_trip_and_reject_others() {
        for mode in [FileMode::Plain, FileMode::Executable] {
            let key = EntryKey {
                digest: Digest::of(b"abc"),
                mode,
            };
            assert_eq!(parse_entry_name(&entry_name(&key)), Some(key));
        }
        assert_eq!(parse_entry_name("junk"), None);
        assert_eq!(parse_entry_name(".tmp-1-2"), None);
        let d = Digest::of(b"abc");
        assert_eq!(parse_entry_name(&format!("{}-3-q", d.to_hex())), None);
    }

    #[test]
    fn sealed_files_look_intact_until_written() {
        let dir = tempfile::tempdir().unwrap();
        let key = EntryKey {
            digest: Digest::of(b"content"),
            mode: FileMode::Executable,
        };
        let path = dir.path().join("e");
        let owner = me(dir.path());
        let stat = write_new(&path, b"content", FileMode::Executable, owner).unwrap();
        assert_eq!(stat, stat_entry(&path).unwrap());
        assert!(looks_intact(&key, &stat, owner));
        assert_eq!(stat.mode, 0o555);

        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"!").unwrap();
        drop(f);
        let after = stat_entry(&path).unwrap();
        assert_ne!(after, stat);
        assert!(!looks_intact(&key, &after, owner));
    }

    #[test]
    fn copy_entry_gives_a_private_copy_with_the_entry_mode() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("entry");
        write_new(&entry, b"data", FileMode::Plain, me(dir.path())).unwrap();
        let dest = dir.path().join("dest");
        std::fs::write(&dest, b"old contents").unwrap();
        copy_entry(&entry, &dest, FileMode::Plain).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        let (e, d) = (
            std::fs::metadata(&entry).unwrap(),
            std::fs::metadata(&dest).unwrap(),
        );
        assert_ne!(e.ino(), d.ino(), "a copy, not a link");
        assert_eq!(d.mode() & 0o7777, 0o444);
        assert_eq!(e.nlink(), 1);
    }

    #[test]
    fn copy_hashing_reports_the_copied_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&from, &data).unwrap();
        let to = dir.path().join("to");
        let (digest, stat) =
            copy_hashing(&from, &to, FileMode::Executable, me(dir.path())).unwrap();
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(stat.size, data.len() as u64);
        assert_eq!(std::fs::read(&to).unwrap(), data);
        assert_eq!(hash_file(&to).unwrap(), digest);
    }

    #[test]
    fn link_or_copy_links_and_replaces_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("entry");
        write_new(&entry, b"data", FileMode::Plain, me(dir.path())).unwrap();
        let dest = dir.path().join("dest");
        std::fs::write(&dest, b"stale").unwrap();
        let (placement, err) = link_or_copy(&entry, &dest, FileMode::Plain).unwrap();
        assert_eq!(placement, Placement::Linked);
        assert!(err.is_none());
        assert_eq!(
            std::fs::metadata(&entry).unwrap().ino(),
            std::fs::metadata(&dest).unwrap().ino()
        );
        assert!(matches!(
            link_or_copy(
                &dir.path().join("gone"),
                &dir.path().join("d2"),
                FileMode::Plain
            ),
            Err(PlaceError::SourceGone)
        ));
    }
}
