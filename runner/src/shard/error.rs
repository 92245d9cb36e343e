//! Why a shard could not get as far as its command's exit. Each ends the
//! shard `failed` with these words in its log and its result: the step
//! never counts as run.

use std::path::PathBuf;

use buildfleet_cache::{CacheError, Digest};

use crate::caching::CachingError;
use crate::exec::ExecError;

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot create work directory {}: {source}", path.display())]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not materialise inputs {root}: {source}")]
    Materialise {
        root: Digest,
        #[source]
        source: CacheError,
    },
    /// An output of a step it depends on could not be put in place: it
    /// would run without an input it was promised.
    #[error("could not place the artifact of `{step}`: {source}")]
    Artifact {
        step: String,
        #[source]
        source: super::PlaceError,
    },
    /// A dependency cache's key could not be computed (a key file is
    /// missing): the step would run without the cache it declares.
    #[error(transparent)]
    CacheKey(CachingError),
    #[error("cannot write the shard's item list {}: {source}", path.display())]
    ItemList {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the command: {0}")]
    Start(#[source] ExecError),
    #[error("no step user for this shard: {0}")]
    StepUser(#[source] crate::step_users::StepUserError),
    #[error("cannot hand the work directory {} to step user uid {uid}: {source}", path.display())]
    HandOver {
        path: PathBuf,
        uid: u32,
        #[source]
        source: std::io::Error,
    },
}
