//! File hashing, spread over a few threads because a snapshot of a large tree
//! is bound by hashing and the page cache, not by the walk.

use buildfleet_model::DigestFunction;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::TreeError;
use buildfleet_model::digest::Digest;

/// Hashing threads. Small on purpose: more rarely helps on the 2–8 core
/// machines that submit builds, and it leaves room for the rest of the CLI.
const MAX_THREADS: usize = 4;

/// Read buffer per hashing thread.
const BUF_BYTES: usize = 256 * 1024;

/// Streams the file through BLAKE3. The size is what was actually read, so a
/// file that changes during hashing yields a self-consistent digest. The
/// caller's `buf` is reused across files: a fresh 256 KiB buffer per file
/// costs an mmap, page faults and a munmap, more than hashing a small file
/// (node_modules averages 19 KB a file; reusing it made snapshots ~25%
/// faster).
pub(super) fn hash_file(path: &Path, buf: &mut [u8]) -> Result<Digest, TreeError> {
    let io_err = |source| TreeError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut hasher = DigestFunction::Blake3.hasher();
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(hasher.finalize()),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Files handed to a hashing thread at once: enough to make the hand-over
/// cost nothing next to hashing, few enough to keep the threads busy while
/// the walk is still going.
const CHUNK: usize = 32;

type Hashed = Vec<(usize, Result<Digest, TreeError>)>;

/// Hashes files while a walk is still finding them, so walking (a sequence
/// of syscalls, ~90 ms for node_modules) and hashing overlap instead of
/// adding up. Digests come back in submission order.
pub(super) struct HashPipeline {
    sender: Option<mpsc::Sender<Vec<(usize, PathBuf)>>>,
    workers: Vec<std::thread::JoinHandle<Hashed>>,
    chunk: Vec<(usize, PathBuf)>,
    submitted: usize,
}

impl HashPipeline {
    pub(super) fn start() -> HashPipeline {
        let threads = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_THREADS);
        let (sender, receiver) = mpsc::channel::<Vec<(usize, PathBuf)>>();
        let receiver = Arc::new(Mutex::new(receiver));
        let workers = (0..threads)
            .map(|i| {
                let receiver = Arc::clone(&receiver);
                std::thread::Builder::new()
                    .name(format!("snapshot-hash-{i}"))
                    .spawn(move || {
                        let mut buf = vec![0u8; BUF_BYTES];
                        let mut done = Vec::new();
                        loop {
                            let next = receiver
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .recv();
                            let Ok(chunk) = next else { break };
                            for (i, path) in chunk {
                                done.push((i, hash_file(&path, &mut buf)));
                            }
                        }
                        done
                    })
                    .expect("spawning a hashing thread")
            })
            .collect();
        HashPipeline {
            sender: Some(sender),
            workers,
            chunk: Vec::with_capacity(CHUNK),
            submitted: 0,
        }
    }

    /// Queues a file; its digest will be at this position in `finish`.
    pub(super) fn submit(&mut self, path: PathBuf) {
        self.chunk.push((self.submitted, path));
        self.submitted += 1;
        if self.chunk.len() == CHUNK {
            self.flush();
        }
    }

    /// Waits for every queued file; digests in submission order.
    pub(super) fn finish(mut self) -> Result<Vec<Digest>, TreeError> {
        self.flush();
        let mut results: Vec<Option<Result<Digest, TreeError>>> =
            (0..self.submitted).map(|_| None).collect();
        for (i, res) in self.join() {
            results[i] = Some(res);
        }
        results
            .into_iter()
            .map(|r| r.expect("every submitted file is hashed exactly once"))
            .collect()
    }

    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        if let Some(sender) = &self.sender {
            // Fails only if every worker is gone, which `join` reports.
            let _ = sender.send(chunk);
        }
    }

    /// Closes the queue and collects what the workers hashed.
    fn join(&mut self) -> Hashed {
        drop(self.sender.take());
        let mut all = Vec::new();
        for worker in self.workers.drain(..) {
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            all.extend(done);
        }
        all
    }
}

impl Drop for HashPipeline {
    /// A walk that failed half way still waits for its hashing threads, so
    /// none is left reading files after the snapshot returned.
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_returns_digests_in_submission_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut pipeline = HashPipeline::start();
        let mut expected = Vec::new();
        for i in 0..100u32 {
            let path = dir.path().join(format!("f{i}"));
            let data = vec![(i % 7) as u8; (i as usize) * 997];
            std::fs::write(&path, &data).unwrap();
            expected.push(Digest::of(&data));
            pipeline.submit(path);
        }
        assert_eq!(pipeline.finish().unwrap(), expected);
    }

    #[test]
    fn a_missing_file_is_reported_at_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut pipeline = HashPipeline::start();
        std::fs::write(dir.path().join("a"), b"a").unwrap();
        pipeline.submit(dir.path().join("a"));
        pipeline.submit(dir.path().join("missing"));
        let err = pipeline.finish().unwrap_err();
        assert!(matches!(err, TreeError::Io { path, .. } if path.ends_with("missing")));
    }
}
