//! The runner's typed errors.

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("invalid runner config: {0}")]
    Config(String),
    /// The coordinator refused the runner's token (unknown, rotated out,
    /// or not a runner's): reconnecting cannot help.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    StepUsers(#[from] crate::step_users::StepUserError),
    #[error("work directory {path}: {source}")]
    WorkDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
