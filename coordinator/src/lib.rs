//! Pipeline parsing, the step DAG, shard scheduling and the coordinator's gRPC services.
//!
//! Invariant: scheduling (`scheduler`, `run`) is plain Rust with the
//! clock passed in; only `grpc` knows prost.

pub mod acting;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod history;
pub mod hub;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod pipeline;
pub mod rerun;
pub mod run;
pub mod scheduler;
pub mod secrets;
pub mod split;
pub mod submission;
pub mod traces;
pub mod watch;

pub use config::CoordinatorConfig;
pub use error::CoordinatorError;
