//! The coordinator's typed errors, and their one mapping to gRPC status codes.

use crate::pipeline::PipelineErrors;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("invalid pipeline:\n{0}")]
    InvalidPipeline(#[from] PipelineErrors),
    #[error("no run with id `{0}`")]
    UnknownRun(String),
    #[error("no lease `{0}` is held by this runner (finished, lost or never granted)")]
    UnknownLease(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("invalid coordinator config: {0}")]
    InvalidConfig(String),
    #[error("the runner must send `register` first, got {0}")]
    NotRegistered(&'static str),
    /// Said to callers while the coordinator stops, with how to carry on.
    #[error("the coordinator is shutting down; {retry}")]
    ShuttingDown { retry: String },
    #[error(transparent)]
    Approval(#[from] crate::run::ApprovalError),
    #[error(transparent)]
    UndeclaredVar(#[from] crate::pipeline::UndeclaredVar),
    #[error("run `{run}` has no step `{step}`")]
    UnknownStep { run: String, step: String },
    /// A client token acting on a run another token submitted.
    #[error("`{caller}` may not {what} run `{run}`: it was submitted by another token (ask its owner or an admin)")]
    NotYours {
        caller: String,
        run: String,
        what: &'static str,
    },
    /// `--approvals admin`: only admin tokens decide approvals.
    #[error(
        "`{0}` may not decide approvals: this coordinator takes approvals from admin tokens only"
    )]
    ApprovalsForAdmins(String),
    /// The runner ended its stream before it registered.
    #[error("runner closed the stream before registering")]
    ClosedBeforeRegistering,
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> tonic::Status {
        use tonic::Code;
        let code = match &e {
            CoordinatorError::InvalidPipeline(_)
            | CoordinatorError::UndeclaredVar(_)
            | CoordinatorError::BadRequest(_)
            | CoordinatorError::InvalidConfig(_) => Code::InvalidArgument,
            CoordinatorError::UnknownRun(_) | CoordinatorError::UnknownStep { .. } => {
                Code::NotFound
            }
            CoordinatorError::UnknownLease(_) => Code::FailedPrecondition,
            CoordinatorError::NotRegistered(_) => Code::FailedPrecondition,
            CoordinatorError::ShuttingDown { .. } => Code::Unavailable,
            CoordinatorError::ClosedBeforeRegistering => Code::Cancelled,
            CoordinatorError::NotYours { .. } | CoordinatorError::ApprovalsForAdmins(_) => {
                Code::PermissionDenied
            }
            CoordinatorError::Approval(crate::run::ApprovalError::UnknownStep { .. }) => {
                Code::NotFound
            }
            CoordinatorError::Approval(crate::run::ApprovalError::NotWaiting { .. }) => {
                Code::FailedPrecondition
            }
        };
        tonic::Status::new(code, e.to_string())
    }
}
