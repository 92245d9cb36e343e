//! The one conversion of each shared concept between its `buildfleet_model`
//! form and its wire form. Crates convert at their gRPC edge through these
//! functions, so a state, a lease or a digest is read the same way by the
//! coordinator, the runner and the CLI.
//!
//! Reading is strict where a wrong default would lie (an unknown state kind
//! is an error, never `Succeeded`) and lenient where dropping would hide
//! something (an unknown cache or test outcome is kept, marked as such).

mod artifact;
mod digest;
mod lease;
mod report;
mod state;
mod status;

pub use artifact::{
    artifact, artifact_from_wire, artifacts_from_wire, step_artifact, step_artifact_from_wire,
};
pub use digest::{from_reapi, input_root, to_reapi};
pub use lease::{lease_from_wire, service};
pub use report::{
    cache_report, cache_report_from_wire, shard_report_from_wire, shard_result, test_result,
    test_result_from_wire, Received,
};
pub use state::{log_stream, log_stream_from_wire, state, state_from_wire};
pub use status::{
    event, event_from_wire, run_status, run_status_from_wire, submission, submission_from_wire,
};

use thiserror::Error;

/// A wire message that cannot be turned into its model form.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// A field that must be set is not.
    #[error("{0} is required")]
    Missing(&'static str),
    /// An enum value this build does not know.
    #[error("unknown {what} {value}")]
    UnknownEnum {
        /// Which enum.
        what: &'static str,
        /// The number received.
        value: i32,
    },
    /// A value outside what the field allows.
    #[error("{0}")]
    Invalid(String),
    /// A digest that is not one.
    #[error("{field}: {source}")]
    Digest {
        /// Which field held it.
        field: &'static str,
        /// What is wrong with it.
        source: buildfleet_model::DigestError,
    },
}
