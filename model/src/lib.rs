//! buildfleet's vocabulary: the concepts every crate speaks of — states and
//! their evidence, leases and shard results, what a cache did, test
//! outcomes, digests — each defined once, as plain Rust.
//!
//! Invariants (kept by `buildfleet/tests/tidy.rs`):
//! - no gRPC, no storage engine: this crate depends on serde, thiserror and
//!   the two hash functions only, so every layer can use it and none of it
//!   can reach the network or the disk;
//! - every public item is documented (`#![deny(missing_docs)]`);
//! - wire forms live in `buildfleet_proto::convert`, one conversion per
//!   concept; a value that cannot be represented (an unknown state kind) is
//!   an error there, never a default here.

#![deny(missing_docs)]

pub mod artifact;
pub mod cache;
pub mod context;
pub mod digest;
pub mod duration;
pub mod event;
pub mod lease;
pub mod log;
pub mod state;
pub mod status;
pub mod submission;
pub mod test_result;

pub use artifact::{Artifact, ArtifactKind, StepArtifact};
pub use cache::{CacheName, CacheOutcome, CacheReport, CacheScope, CacheSpec};
pub use context::{RunContext, CONTEXT_VARS};
pub use digest::{Digest, DigestError, DigestFunction, DigestHasher};
pub use duration::unix_ms;
pub use event::{Event, EventKind, LogEntry, Notice, NoticeKind, StateChange};
pub use lease::{Check, Lease, LeaseKind, MutedCheck, Resources, Service, ShardReport};
pub use log::LogStream;
pub use state::{combine, Failure, State};
pub use status::{RunStatus, ShardStatus, SplitStatus, StepStatus};
pub use submission::Submission;
pub use test_result::{TestOutcome, TestResult};
