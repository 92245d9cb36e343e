//! Artifacts between steps: the outputs of the steps a step depends on,
//! as their shards reported them after the cache confirmed each upload.
//! A dependant receives them at the same paths; two dependencies that put
//! different content at one path (or one inside the other's) are an error
//! naming both — which one wins would otherwise be an accident.

use buildfleet_model::StepArtifact;

use super::Run;

impl Run {
    /// What shard leases of `step` receive, or why it may not start.
    pub fn received_artifacts(&self, step: usize) -> Result<Vec<StepArtifact>, ArtifactConflict> {
        // A re-run's one step receives what it received the first time.
        if let Some(rerun) = &self.options.rerun {
            return Ok(rerun.artifacts.clone());
        }
        let mut out: Vec<(String, StepArtifact)> = Vec::new();
        for &dep in &self.steps[step].deps {
            let d = &self.steps[dep];
            for sh in d.shards.iter().filter(|sh| sh.state.is_green()) {
                let from = if d.shards.len() > 1 {
                    format!("`{}` shard {}", d.name, sh.index)
                } else {
                    format!("`{}`", d.name)
                };
                for a in &sh.outputs {
                    if let Some((other, b)) = out
                        .iter()
                        .find(|(_, b)| overlaps(&a.path, &b.artifact.path))
                    {
                        let same = b.artifact.path == a.path
                            && b.artifact.digest == a.digest
                            && b.artifact.kind == a.kind;
                        if same {
                            continue;
                        }
                        return Err(conflict(other, &b.artifact, &from, a));
                    }
                    out.push((
                        from.clone(),
                        StepArtifact {
                            step: d.name.clone(),
                            artifact: a.clone(),
                        },
                    ));
                }
            }
        }
        Ok(out.into_iter().map(|(_, a)| a).collect())
    }
}

/// One path is the other, or lies inside it.
fn overlaps(a: &str, b: &str) -> bool {
    let inside = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
    };
    a == b || inside(a, b) || inside(b, a)
}

/// Two dependencies that would put different things at one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactConflict {
    #[error("artifact `{path}` comes from both {first} ({first_is}) and {second} ({second_is}) with different content; the step did not start")]
    SamePath {
        path: String,
        first: String,
        first_is: String,
        second: String,
        second_is: String,
    },
    #[error("artifact `{first_path}` from {first} and artifact `{second_path}` from {second} overlap (one lies inside the other); the step did not start")]
    Overlap {
        first_path: String,
        first: String,
        second_path: String,
        second: String,
    },
}

fn conflict(
    first: &str,
    a: &buildfleet_model::Artifact,
    second: &str,
    b: &buildfleet_model::Artifact,
) -> ArtifactConflict {
    let is = |x: &buildfleet_model::Artifact| format!("{} {}", x.kind.name(), x.digest);
    if a.path == b.path {
        ArtifactConflict::SamePath {
            path: a.path.clone(),
            first: first.to_owned(),
            first_is: is(a),
            second: second.to_owned(),
            second_is: is(b),
        }
    } else {
        ArtifactConflict::Overlap {
            first_path: a.path.clone(),
            first: first.to_owned(),
            second_path: b.path.clone(),
            second: second.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::overlaps;

    #[test]
    fn paths_overlap_when_equal_or_nested_by_component() {
        assert!(overlaps("dist", "dist"));
        assert!(overlaps("dist", "dist/app"));
        assert!(overlaps("dist/app", "dist"));
        assert!(!overlaps("dist", "distribution"));
        assert!(!overlaps("a/b", "a/c"));
    }
}
