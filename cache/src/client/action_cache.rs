//! Step results in the REAPI ActionCache. The runner speaks plain
//! [`StepResult`]s; the REAPI `ActionResult` form stays in this adapter, so
//! any REAPI tool reading our cache sees standard entries.

use buildfleet_proto::reapi;

use super::{blake3_function, CasClient};
use crate::error::CacheError;
use buildfleet_model::{Digest, DigestFunction};
use buildfleet_proto::convert as wire;

/// A successful step shard, as stored: what it produced and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    pub exit_code: i32,
    pub output_files: Vec<OutputFile>,
    pub output_directories: Vec<OutputDirectory>,
    /// The shard's combined stdout and stderr, in arrival order.
    pub log: Digest,
    /// Who stored it, for which run (scope: where it was found).
    pub provenance: Provenance,
}

/// Where a cache entry came from: the scope it was found in, the token
/// that wrote it (stamped by the server), and the run and project it was
/// written for. `cache explain` shows it for every hit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    pub scope: String,
    pub writer: String,
    pub run: String,
    pub project: String,
}

/// The `type_url` of the provenance in an ActionResult's auxiliary metadata.
const PROVENANCE_TYPE: &str = "type.googleapis.com/buildfleet.v1.Provenance";

impl Provenance {
    pub fn from_wire(p: buildfleet_proto::v1::Provenance) -> Provenance {
        Provenance {
            scope: String::new(),
            writer: p.writer,
            run: p.run,
            project: p.project,
        }
    }

    /// One line for a log or `cache explain`.
    pub fn describe(&self) -> String {
        let or = |s: &str, d: &'static str| {
            if s.is_empty() {
                d.to_owned()
            } else {
                s.to_owned()
            }
        };
        format!(
            "written by {} for run {} of project {}, in the {} scope",
            or(&self.writer, "an unnamed writer"),
            or(&self.run, "(unknown)"),
            or(&self.project, "(unknown)"),
            buildfleet_model::CacheScope::describe(&self.scope)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: String,
    pub digest: Digest,
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDirectory {
    pub path: String,
    /// Digest of the REAPI `Tree` message (root plus descendants).
    pub tree: Digest,
    /// Digest of the root `Directory`, as logged for the output.
    pub root: Digest,
}

fn to_reapi(r: &StepResult) -> reapi::ActionResult {
    reapi::ActionResult {
        exit_code: r.exit_code,
        output_files: r
            .output_files
            .iter()
            .map(|f| reapi::OutputFile {
                path: f.path.clone(),
                digest: Some(wire::to_reapi(f.digest)),
                is_executable: f.executable,
                ..Default::default()
            })
            .collect(),
        output_directories: r
            .output_directories
            .iter()
            .map(|d| reapi::OutputDirectory {
                path: d.path.clone(),
                tree_digest: Some(wire::to_reapi(d.tree)),
                root_directory_digest: Some(wire::to_reapi(d.root)),
                ..Default::default()
            })
            .collect(),
        stdout_digest: Some(wire::to_reapi(r.log)),
        execution_metadata: Some(reapi::ExecutedActionMetadata {
            worker: r.provenance.writer.clone(),
            auxiliary_metadata: vec![buildfleet_proto::google_protobuf::Any {
                type_url: PROVENANCE_TYPE.into(),
                value: prost::Message::encode_to_vec(&buildfleet_proto::v1::Provenance {
                    writer: String::new(),
                    run: r.provenance.run.clone(),
                    project: r.provenance.project.clone(),
                }),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn provenance_of(r: &reapi::ActionResult) -> Provenance {
    let Some(meta) = &r.execution_metadata else {
        return Provenance::default();
    };
    let claimed = meta
        .auxiliary_metadata
        .iter()
        .find(|a| a.type_url == PROVENANCE_TYPE)
        .and_then(|a| {
            <buildfleet_proto::v1::Provenance as prost::Message>::decode(&a.value[..]).ok()
        })
        .unwrap_or_default();
    Provenance {
        writer: meta.worker.clone(),
        ..Provenance::from_wire(claimed)
    }
}

fn from_reapi(r: &reapi::ActionResult) -> Result<StepResult, CacheError> {
    let digest = |d: &Option<reapi::Digest>, what: &str| -> Result<Digest, CacheError> {
        let d = d
            .as_ref()
            .ok_or_else(|| CacheError::InvalidEntry(format!("{what} has no digest")))?;
        wire::from_reapi(d, DigestFunction::Blake3)
            .map_err(|e| CacheError::InvalidEntry(format!("{what}: {e}")))
    };
    Ok(StepResult {
        exit_code: r.exit_code,
        output_files: r
            .output_files
            .iter()
            .map(|f| {
                Ok(OutputFile {
                    path: f.path.clone(),
                    digest: digest(&f.digest, &format!("output file {}", f.path))?,
                    executable: f.is_executable,
                })
            })
            .collect::<Result<_, CacheError>>()?,
        output_directories: r
            .output_directories
            .iter()
            .map(|d| {
                let what = format!("output directory {}", d.path);
                Ok(OutputDirectory {
                    path: d.path.clone(),
                    tree: digest(&d.tree_digest, &what)?,
                    root: digest(&d.root_directory_digest, &what)?,
                })
            })
            .collect::<Result<_, CacheError>>()?,
        log: digest(&r.stdout_digest, "log")?,
        provenance: provenance_of(r),
    })
}

impl CasClient {
    /// The stored result of `action`, if the cache has it complete (the
    /// server withholds entries whose blobs are gone), from the first of
    /// the scopes read that has one; its provenance says which.
    pub async fn get_step_result(&self, action: &Digest) -> Result<Option<StepResult>, CacheError> {
        for scope in &self.reads {
            let request = reapi::GetActionResultRequest {
                instance_name: scope.clone(),
                action_digest: Some(wire::to_reapi(*action)),
                inline_stdout: false,
                inline_stderr: false,
                inline_output_files: Vec::new(),
                digest_function: blake3_function(),
            };
            match self.action_cache.clone().get_action_result(request).await {
                Ok(r) => {
                    let mut result = from_reapi(r.get_ref())?;
                    result.provenance.scope = scope.clone();
                    return Ok(Some(result));
                }
                Err(status) if status.code() == tonic::Code::NotFound => continue,
                Err(status) => return Err(status.into()),
            }
        }
        Ok(None)
    }

    /// Stores `result` under `action`; every blob it names must already be
    /// in the cache.
    pub async fn put_step_result(
        &self,
        action: &Digest,
        result: &StepResult,
    ) -> Result<(), CacheError> {
        let request = reapi::UpdateActionResultRequest {
            instance_name: self.instance.clone(),
            action_digest: Some(wire::to_reapi(*action)),
            action_result: Some(to_reapi(&StepResult {
                provenance: self.provenance_of(&result.provenance),
                ..result.clone()
            })),
            results_cache_policy: None,
            digest_function: blake3_function(),
        };
        self.action_cache
            .clone()
            .update_action_result(request)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_results_round_trip_through_the_reapi_form() {
        let r = StepResult {
            exit_code: 0,
            output_files: vec![OutputFile {
                path: "dist/app".into(),
                digest: Digest::of(b"app"),
                executable: true,
            }],
            output_directories: vec![OutputDirectory {
                path: "site".into(),
                tree: Digest::of(b"tree"),
                root: Digest::of(b"root"),
            }],
            log: Digest::of(b"log"),
            provenance: Provenance {
                scope: String::new(),
                writer: "pool/host-1".into(),
                run: "run-1".into(),
                project: "app".into(),
            },
        };
        assert_eq!(from_reapi(&to_reapi(&r)).unwrap(), r, "provenance included");
        let mut broken = to_reapi(&r);
        broken.stdout_digest = None;
        assert!(from_reapi(&broken)
            .unwrap_err()
            .to_string()
            .contains("log has no digest"));
    }
}
