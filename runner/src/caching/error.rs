//! What can go wrong while keying, looking up, restoring or saving a cache.
//! None of it fails a step: every error becomes the detail of a miss or a
//! `cache-save-failed` report, so its words are what a user reads.

use std::path::PathBuf;

use buildfleet_cache::{CacheError, Digest, TreeError};

use super::records::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum CachingError {
    /// A call to the cache failed; `doing` says what it was for.
    #[error("{doing}: {source}")]
    Cache {
        doing: String,
        #[source]
        source: Box<CacheError>,
    },
    #[error("invalid `inputs` glob `{glob}`: {source}")]
    Glob {
        glob: String,
        #[source]
        source: globset::Error,
    },
    #[error("invalid `inputs` globs: {0}")]
    Globs(#[source] globset::Error),
    #[error("could not select `inputs` from {root}: {source}")]
    Subset {
        root: Digest,
        #[source]
        source: Box<TreeError>,
    },
    #[error("cache `{cache}`: key file `{file}` cannot be read: {source}")]
    KeyFile {
        cache: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("path `{0}` is not a directory after the step; nothing saved")]
    NotADirectory(String),
    #[error("snapshot of `{path}` {what}")]
    Snapshot { path: String, what: String },
    #[error("{}: {source}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot clear {}: {source}", path.display())]
    Clear {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A restore that failed, and what its cleanup left.
    #[error("{failed}{}", cleanup_note(path, left))]
    Partial {
        failed: Box<CachingError>,
        path: String,
        /// `None`: the partial tree was removed. `Some`: why it was not,
        /// and whether it is still there.
        left: Option<(Box<CachingError>, bool)>,
    },
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("{0}")]
    Confined(#[from] crate::confine::ConfineError),
}

fn cleanup_note(path: &str, left: &Option<(Box<CachingError>, bool)>) -> String {
    match left {
        None => String::new(),
        Some((cleanup, false)) => format!(" (nothing was left at `{path}`: {cleanup})"),
        Some((cleanup, true)) => format!(
            "; the partial tree at `{path}` could not be removed ({cleanup}) and is still there"
        ),
    }
}

impl CachingError {
    /// Wraps a cache call's error with what it was for.
    pub fn cache(doing: impl Into<String>) -> impl FnOnce(CacheError) -> CachingError {
        let doing = doing.into();
        move |source| CachingError::Cache {
            doing,
            source: Box::new(source),
        }
    }
}
