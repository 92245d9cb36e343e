//! Artifacts: a shard's outputs in the cache, and those a lease receives.
//! An artifact without a readable digest is an error, never dropped: a
//! dependant missing an input it was promised would run on a lie.

use buildfleet_model::{Artifact, ArtifactKind, Digest, StepArtifact};

use super::WireError;
use crate::v1 as pb;

/// An artifact as the wire carries it.
pub fn artifact(a: &Artifact) -> pb::Artifact {
    let (directory, executable) = match a.kind {
        ArtifactKind::File { executable } => (false, executable),
        ArtifactKind::Directory => (true, false),
    };
    pb::Artifact {
        path: a.path.clone(),
        digest: Some(a.digest.into()),
        directory,
        executable,
    }
}

/// Reads an artifact; its digest is required.
pub fn artifact_from_wire(a: &pb::Artifact) -> Result<Artifact, WireError> {
    let digest = a
        .digest
        .as_ref()
        .ok_or(WireError::Missing("an artifact's digest"))?;
    let digest = Digest::try_from(digest).map_err(|source| WireError::Digest {
        field: "artifact digest",
        source,
    })?;
    if a.path.is_empty() {
        return Err(WireError::Missing("an artifact's path"));
    }
    Ok(Artifact {
        path: a.path.clone(),
        digest,
        kind: match a.directory {
            true => ArtifactKind::Directory,
            false => ArtifactKind::File {
                executable: a.executable,
            },
        },
    })
}

/// A received artifact as the wire carries it.
pub fn step_artifact(a: &StepArtifact) -> pb::StepArtifact {
    pb::StepArtifact {
        step: a.step.clone(),
        artifact: Some(artifact(&a.artifact)),
    }
}

/// Reads a received artifact.
pub fn step_artifact_from_wire(a: &pb::StepArtifact) -> Result<StepArtifact, WireError> {
    let inner = a
        .artifact
        .as_ref()
        .ok_or(WireError::Missing("a step artifact's artifact"))?;
    Ok(StepArtifact {
        step: a.step.clone(),
        artifact: artifact_from_wire(inner)?,
    })
}

/// Reads a list, failing on the first bad entry.
pub fn artifacts_from_wire(list: &[pb::Artifact]) -> Result<Vec<Artifact>, WireError> {
    list.iter().map(artifact_from_wire).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_survive_the_wire_and_a_missing_digest_is_an_error() {
        let a = Artifact {
            path: "dist/app".into(),
            digest: Digest::of(b"app"),
            kind: ArtifactKind::File { executable: true },
        };
        let d = Artifact {
            path: "cov".into(),
            digest: Digest::of(b"dir"),
            kind: ArtifactKind::Directory,
        };
        for x in [&a, &d] {
            assert_eq!(artifact_from_wire(&artifact(x)).as_ref(), Ok(x));
        }
        let s = StepArtifact {
            step: "build".into(),
            artifact: a.clone(),
        };
        assert_eq!(step_artifact_from_wire(&step_artifact(&s)), Ok(s));
        let mut bad = artifact(&a);
        bad.digest = None;
        assert_eq!(
            artifact_from_wire(&bad),
            Err(WireError::Missing("an artifact's digest"))
        );
    }
}
