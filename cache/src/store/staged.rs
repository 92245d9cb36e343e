//! Blobs on their way in, staged in a file and hashed as they arrive, so a
//! ByteStream write of any size costs the server one message of memory,
//! never the whole blob. A [`VerifiedBlob`] can only come out of
//! [`StagedBlob::finish`] after the bytes matched their digest, which is
//! what lets a store commit it by renaming the file instead of hashing it a
//! second time.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use buildfleet_model::digest::{Digest, DigestHasher};

use super::StoreError;

/// A blob being received: its file, the hash of what was written so far,
/// and how much that is. Dropped unfinished, it removes its file.
pub struct StagedBlob {
    digest: Digest,
    path: PathBuf,
    file: Option<File>,
    hasher: DigestHasher,
    written: u64,
}

impl std::fmt::Debug for StagedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedBlob")
            .field("digest", &self.digest)
            .field("path", &self.path)
            .field("written", &self.written)
            .finish()
    }
}

fn io_error(operation: &'static str) -> impl FnOnce(io::Error) -> StoreError {
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

impl StagedBlob {
    /// Starts receiving `digest` into a new file at `path` (which must not
    /// exist: staging names are unique).
    pub(crate) fn create(path: PathBuf, digest: Digest) -> Result<StagedBlob, StoreError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create staged blob"))?;
        Ok(StagedBlob {
            digest,
            path,
            file: Some(file),
            hasher: digest.function.hasher(),
            written: 0,
        })
    }

    /// The digest the bytes must come to.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Bytes received so far: where the next piece must start.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next piece. More bytes than the digest's size are
    /// refused (and nothing of the piece is kept), so a lying client cannot
    /// fill the disk past the size it declared.
    pub fn append(&mut self, data: &[u8]) -> Result<(), StoreError> {
        let after = self.written + data.len() as u64;
        if after > self.digest.size_bytes {
            return Err(StoreError::Overlong {
                digest: self.digest,
                received: after,
            });
        }
        let file = self.file.as_mut().expect("a staged blob's file is open");
        file.write_all(data)
            .map_err(io_error("write staged blob"))?;
        self.hasher.update(data);
        self.written = after;
        Ok(())
    }

    /// Ends the write: the bytes must hash to the digest. A mismatch removes
    /// the file (resuming it cannot help).
    pub fn finish(mut self) -> Result<VerifiedBlob, StoreError> {
        let file = self.file.take().expect("a staged blob's file is open");
        drop(file);
        let hasher = std::mem::replace(&mut self.hasher, self.digest.function.hasher());
        let actual = hasher.finalize();
        if actual != self.digest {
            // `self` drops here and removes the file.
            return Err(StoreError::DigestMismatch {
                expected: self.digest,
                actual,
            });
        }
        let path = std::mem::take(&mut self.path);
        Ok(VerifiedBlob {
            digest: self.digest,
            path,
        })
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            remove_quietly(&self.path);
        }
    }
}

/// A staged file whose bytes are known to hash to `digest`. A store takes
/// it over (usually by rename); dropped untaken, it removes its file.
#[derive(Debug)]
pub struct VerifiedBlob {
    digest: Digest,
    path: PathBuf,
}

impl VerifiedBlob {
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The file, for a store to read or rename. After a successful rename
    /// the store calls [`VerifiedBlob::taken`].
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Marks the file as moved away, so dropping does not remove it.
    pub(crate) fn taken(mut self) {
        self.path = PathBuf::new();
    }

    /// The whole blob in memory: for stores that keep blobs in memory, and
    /// for blobs small enough to live inside the database.
    pub(crate) fn read(&self) -> Result<bytes::Bytes, StoreError> {
        std::fs::read(&self.path)
            .map(bytes::Bytes::from)
            .map_err(io_error("read staged blob"))
    }
}

impl Drop for VerifiedBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            remove_quietly(&self.path);
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove staged blob file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildfleet_model::digest::DigestFunction;

    #[test]
    fn a_staged_blob_verifies_once_at_the_end_and_cleans_up_after_itself() {
        let dir = tempfile::tempdir().unwrap();
        for function in DigestFunction::ALL {
            let data = b"hello staged world";
            let digest = Digest::of_with(function, data);
            let path = dir.path().join(format!("ok-{function}"));
            let mut staged = StagedBlob::create(path.clone(), digest).unwrap();
            staged.append(&data[..5]).unwrap();
            staged.append(&data[5..]).unwrap();
            assert_eq!(staged.written(), data.len() as u64);
            let verified = staged.finish().unwrap();
            assert_eq!(std::fs::read(verified.path()).unwrap(), data);
            drop(verified);
            assert!(
                !path.exists(),
                "{function}: an untaken blob removes its file"
            );

            let path = dir.path().join(format!("bad-{function}"));
            let mut staged = StagedBlob::create(path.clone(), digest).unwrap();
            staged.append(b"hello STAGED world").unwrap();
            let err = staged.finish().unwrap_err();
            assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
            assert!(!path.exists(), "{function}: a mismatch removes its file");

            let path = dir.path().join(format!("long-{function}"));
            let mut staged = StagedBlob::create(path.clone(), digest).unwrap();
            staged.append(data).unwrap();
            assert!(staged.append(b"!").is_err(), "past the declared size");
            assert_eq!(
                staged.written(),
                data.len() as u64,
                "the extra byte not kept"
            );
            drop(staged);
            assert!(!path.exists(), "an abandoned write removes its file");
        }
    }
}
