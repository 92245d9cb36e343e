//! Artifacts: a step's declared outputs as stored in the cache, and how a
//! later step receives them. The path is what the step declared; the
//! digest is what the cache vouched for after the upload.

use crate::digest::Digest;

/// One declared output of a shard, in the cache.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    /// Relative to the working directory, as declared in `outputs:`.
    pub path: String,
    /// The file's digest, or the directory's root `Directory` digest.
    pub digest: Digest,
    /// A file or a directory, and a file's executable bit.
    pub kind: ArtifactKind,
}

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ArtifactKind {
    /// A regular file.
    File {
        /// Its executable bit.
        executable: bool,
    },
    /// A directory tree.
    Directory,
}

/// An artifact a lease receives, with the step that made it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepArtifact {
    /// The step whose output it is.
    pub step: String,
    /// The output.
    pub artifact: Artifact,
}

impl ArtifactKind {
    /// `file` or `directory`, for logs.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactKind::File { .. } => "file",
            ArtifactKind::Directory => "directory",
        }
    }
}
