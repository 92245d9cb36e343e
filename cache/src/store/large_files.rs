//! Large blobs as plain files beside the database: written once (no WAL
//! copy, no memtable, no compaction or blob-file garbage collection), read
//! with one `read`, and gone from disk the moment they are evicted.
//!
//! Crash safety comes from ordering: the file is complete and renamed into
//! place before the store records its marker, and the marker is removed
//! before the file. So a marker always has its file; a file without a marker
//! (a crash between the two) is swept at open.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use buildfleet_model::digest::Digest;

/// Blobs at least this large are stored as files.
pub const LARGE_BLOB_BYTES: u64 = 1024 * 1024;

#[derive(Debug)]
pub struct LargeFiles {
    dir: PathBuf,
    tmp: PathBuf,
    next_tmp: AtomicU64,
}

impl LargeFiles {
    /// Uses `dir`, clearing unfinished writes left by a crash.
    pub fn open(dir: PathBuf) -> io::Result<LargeFiles> {
        let tmp = dir.join("tmp");
        match std::fs::remove_dir_all(&tmp) {
            Ok(()) => tracing::info!(dir = %tmp.display(), "removed unfinished large-blob writes"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(LargeFiles {
            dir,
            tmp,
            next_tmp: AtomicU64::new(0),
        })
    }

    pub fn is_large(digest: &Digest) -> bool {
        digest.size_bytes >= LARGE_BLOB_BYTES
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        let name = hex::encode(digest.key_bytes());
        self.dir.join(&name[2..4]).join(name)
    }

    /// Writes the blob's file; the caller records the marker afterwards.
    pub fn write(&self, digest: &Digest, data: &[u8]) -> io::Result<()> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{}-{n}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(data)?;
            let path = self.path(digest);
            std::fs::create_dir_all(path.parent().expect("fan-out dir"))?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// A fresh path in the staging directory, which is on the same file
    /// system as the blobs (so [`LargeFiles::adopt`] is a rename) and is
    /// cleared at open (so a crash leaves no half-received blob behind).
    pub fn stage_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("upload-{}-{n}", std::process::id()))
    }

    /// Moves a complete, verified file into place as `digest`'s blob. The
    /// caller records the marker afterwards.
    pub fn adopt(&self, staged: &Path, digest: &Digest) -> io::Result<()> {
        let path = self.path(digest);
        std::fs::create_dir_all(path.parent().expect("fan-out dir"))?;
        std::fs::rename(staged, &path)
    }

    /// The blob's file opened for reading, or `None` if there is no file.
    pub fn open_blob(&self, digest: &Digest) -> io::Result<Option<std::fs::File>> {
        match std::fs::File::open(self.path(digest)) {
            Ok(file) => Ok(Some(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The file's bytes, or `None` if there is no file.
    pub fn read(&self, digest: &Digest) -> io::Result<Option<Bytes>> {
        match std::fs::read(self.path(digest)) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Removes the file; a file already gone is fine.
    pub fn remove(&self, digest: &Digest) -> io::Result<()> {
        match std::fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes files whose blob the store does not know (a crash after the
    /// rename, before the marker); returns how many.
    pub fn sweep(&self, known: impl Fn(&Digest) -> bool) -> io::Result<u64> {
        let mut removed = 0;
        for fan in std::fs::read_dir(&self.dir)? {
            let fan = fan?;
            if fan.path() == self.tmp || !fan.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(fan.path())? {
                let entry = entry?;
                let digest = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| hex::decode(n).ok())
                    .and_then(|raw| Digest::from_key_bytes(&raw));
                if digest.is_none_or(|d| !known(&d)) {
                    remove_quietly(&entry.path(), &mut removed);
                }
            }
        }
        Ok(removed)
    }

    /// Overwrites a blob's file with arbitrary bytes (tests of corruption).
    #[cfg(test)]
    pub fn write_raw(&self, digest: &Digest, data: &[u8]) {
        let path = self.path(digest);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

fn remove_quietly(path: &Path, removed: &mut u64) {
    match std::fs::remove_file(path) {
        Ok(()) => *removed += 1,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove orphaned large blob")
        }
    }
}
