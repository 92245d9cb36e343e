//! Values read from files and read again when the files change: token
//! files and TLS material, so a rotation needs no restart.
//!
//! Files are polled (every two seconds) rather than watched with inotify:
//! a Kubernetes Secret volume changes by swapping a symlink, which
//! inotify on the file misses, while a `stat` through the path sees it.
//! A change that does not load (a half-written file, a typo) keeps the
//! value in force and says so; nothing already accepted is dropped.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

/// How often watched files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The current value, shared by every connection; replaced whole.
pub struct Reloading<T> {
    current: Arc<RwLock<Arc<T>>>,
}

impl<T> Clone for Reloading<T> {
    fn clone(&self) -> Self {
        Reloading {
            current: Arc::clone(&self.current),
        }
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reloading")
    }
}

type Fingerprint = Vec<Option<(u64, u64, i64, i64, i64)>>;

fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime()))
        })
        .collect()
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// A value that never changes (the embedded fleet's own tokens).
    pub fn fixed(value: T) -> Reloading<T> {
        Reloading {
            current: Arc::new(RwLock::new(Arc::new(value))),
        }
    }

    /// Loads the value now (an error stops start-up), then loads it again
    /// whenever one of `paths` changes, until every handle is dropped.
    pub fn watch<E: std::fmt::Display>(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T, E> + Send + 'static,
    ) -> Result<Reloading<T>, E> {
        let mut seen = fingerprint(&paths);
        let value = load()?;
        let current = Arc::new(RwLock::new(Arc::new(value)));
        let weak: Weak<RwLock<Arc<T>>> = Arc::downgrade(&current);
        let span = tracing::info_span!("reload", what);
        let spawned = std::thread::Builder::new()
            .name(format!("reload-{what}"))
            .spawn(move || {
                let _entered = span.enter();
                loop {
                    std::thread::sleep(POLL_INTERVAL);
                    let Some(current) = weak.upgrade() else { return };
                    let now = fingerprint(&paths);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    match load() {
                        Ok(value) => {
                            *current.write() = Arc::new(value);
                            tracing::info!("{what} changed on disk and were reloaded");
                        }
                        Err(e) => tracing::error!(
                            error = %e,
                            "{what} changed on disk but do not load; the previous ones stay in force"
                        ),
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start watching {what}; changes need a restart");
        }
        Ok(Reloading { current })
    }

    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.current.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_change_keeps_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v");
        std::fs::write(&path, "1").unwrap();
        let p = path.clone();
        let value = Reloading::watch("numbers", vec![path.clone()], move || {
            std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())?
                .trim()
                .parse::<u32>()
                .map_err(|e| e.to_string())
        })
        .unwrap();
        assert_eq!(*value.get(), 1);
        let wait_for = |want: u32| {
            let deadline = std::time::Instant::now() + POLL_INTERVAL * 5;
            while *value.get() != want && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            *value.get()
        };
        std::fs::write(&path, "22").unwrap();
        assert_eq!(wait_for(22), 22);
        std::fs::write(&path, "not a number").unwrap();
        std::thread::sleep(POLL_INTERVAL * 2);
        assert_eq!(*value.get(), 22, "a broken file keeps the value in force");
        std::fs::write(&path, "3").unwrap();
        assert_eq!(wait_for(3), 3);
    }

    #[test]
    fn a_file_that_does_not_load_at_start_is_an_error() {
        let r = Reloading::<u32>::watch("numbers", vec![], || Err("bad".to_string()));
        assert_eq!(r.unwrap_err(), "bad");
    }
}
