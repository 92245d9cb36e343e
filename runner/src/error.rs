//! The runner's typed errors.

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid runner config: {0}")]
    Config(String),
    #[error("cannot reach the coordinator at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("coordinator refused the runner: {0}")]
    Refused(tonic::Status),
    #[error("coordinator stream failed: {0}")]
    Stream(tonic::Status),
    #[error(transparent)]
    StepUsers(#[from] crate::step_users::StepUserError),
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
