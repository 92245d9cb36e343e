//! The stored forms of action records and dependency-cache manifests. They
//! are protobuf messages because their bytes are hashed and kept in the
//! cache: protobuf with sorted repeated fields is deterministic and every
//! version of buildfleet can still read old entries.

use std::collections::BTreeMap;

use buildfleet_cache::Digest;
use buildfleet_proto::v1 as pb;
use bytes::Bytes;
use prost::Message;

/// Bumped when the meaning of a record changes, so old entries stop matching.
/// 2: a result's log is stored framed (chunks with their streams), so a
/// replay is the stream watchers saw; schema-1 logs were flat bytes.
pub const ACTION_SCHEMA: u32 = 2;

/// A step shard, canonically: its BLAKE3 is the action digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub schema: u32,
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub input_root: Digest,
    pub input_globs: Vec<String>,
    pub shard_index: u32,
    pub shard_count: u32,
    pub platform: String,
    pub outputs: Vec<String>,
    pub verify: Vec<String>,
    /// Names only: a secret's value never goes into a stored record.
    pub secret_names: Vec<String>,
    /// Received artifacts, sorted by path (empty for most steps, which
    /// keeps their records' digests as they were).
    pub artifacts: Vec<buildfleet_model::Artifact>,
    /// The step's services: what it runs against decides its result.
    pub services: Vec<buildfleet_model::Service>,
    /// The project, for a step with dependency caches (they are saved per
    /// project); empty for the others.
    pub cache_project: String,
}

impl ActionRecord {
    pub fn encode(&self) -> Bytes {
        let msg = pb::ActionRecord {
            schema: self.schema,
            command: self.command.clone(),
            env: self
                .env
                .iter()
                .map(|(name, value)| pb::EnvVar {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            input_root: Some(self.input_root.into()),
            input_globs: self.input_globs.clone(),
            shard_index: self.shard_index,
            shard_count: self.shard_count,
            platform: self.platform.clone(),
            outputs: self.outputs.clone(),
            verify: self.verify.clone(),
            secret_names: self.secret_names.clone(),
            artifacts: self
                .artifacts
                .iter()
                .map(buildfleet_proto::convert::artifact)
                .collect(),
            services: self
                .services
                .iter()
                .map(|s| buildfleet_proto::v1::ServiceSpec {
                    // How long it may take to start does not change results.
                    ready_timeout_ms: 0,
                    ..buildfleet_proto::convert::service(s)
                })
                .collect(),
            cache_project: self.cache_project.clone(),
        };
        Bytes::from(msg.encode_to_vec())
    }

    pub fn decode(bytes: &[u8]) -> Result<ActionRecord, RecordError> {
        let msg = pb::ActionRecord::decode(bytes).map_err(|source| RecordError::Undecodable {
            what: "action record",
            source,
        })?;
        let input_root = digest(msg.input_root, "the action record's input root")?;
        Ok(ActionRecord {
            schema: msg.schema,
            command: msg.command,
            env: msg.env.into_iter().map(|v| (v.name, v.value)).collect(),
            input_root,
            input_globs: msg.input_globs,
            shard_index: msg.shard_index,
            shard_count: msg.shard_count,
            platform: msg.platform,
            outputs: msg.outputs,
            verify: msg.verify,
            secret_names: msg.secret_names,
            artifacts: buildfleet_proto::convert::artifacts_from_wire(&msg.artifacts).map_err(
                |source| RecordError::Invalid {
                    what: "the action record's artifacts",
                    source,
                },
            )?,
            services: msg
                .services
                .into_iter()
                .map(|s| buildfleet_model::Service {
                    ready: Some(s.ready).filter(|r| !r.is_empty()),
                    name: s.name,
                    command: s.run,
                    ready_timeout: std::time::Duration::ZERO,
                })
                .collect(),
            cache_project: msg.cache_project,
        })
    }
}

/// What a dependency-cache entry was keyed by and holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub platform: String,
    /// In the order the pipeline lists them.
    pub key_files: Vec<(String, Digest)>,
    pub paths: Vec<(String, Digest)>,
}

impl Manifest {
    pub fn encode(&self) -> Bytes {
        let msg = pb::DepCacheManifest {
            name: self.name.clone(),
            version: self.version.clone(),
            platform: self.platform.clone(),
            key_files: self
                .key_files
                .iter()
                .map(|(path, d)| pb::KeyFile {
                    path: path.clone(),
                    digest: Some((*d).into()),
                })
                .collect(),
            paths: self
                .paths
                .iter()
                .map(|(path, d)| pb::CachedPath {
                    path: path.clone(),
                    root: Some((*d).into()),
                })
                .collect(),
        };
        Bytes::from(msg.encode_to_vec())
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest, RecordError> {
        let msg =
            pb::DepCacheManifest::decode(bytes).map_err(|source| RecordError::Undecodable {
                what: "cache manifest",
                source,
            })?;
        Ok(Manifest {
            name: msg.name,
            version: msg.version,
            platform: msg.platform,
            key_files: msg
                .key_files
                .into_iter()
                .map(|k| {
                    Ok((
                        k.path.clone(),
                        digest(k.digest, &format!("key file {}", k.path))?,
                    ))
                })
                .collect::<Result<_, RecordError>>()?,
            paths: msg
                .paths
                .into_iter()
                .map(|p| {
                    Ok((
                        p.path.clone(),
                        digest(p.root, &format!("cached path {}", p.path))?,
                    ))
                })
                .collect::<Result<_, RecordError>>()?,
        })
    }
}

/// A digest a record must hold.
fn digest(d: Option<pb::Digest>, what: &str) -> Result<Digest, RecordError> {
    let d = d.ok_or_else(|| RecordError::NoDigest {
        what: what.to_owned(),
    })?;
    Digest::try_from(&d).map_err(|source| RecordError::BadDigest {
        what: what.to_owned(),
        source,
    })
}

/// A stored record (action record, dependency manifest) that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("undecodable {what}: {source}")]
    Undecodable {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{what} has no digest")]
    NoDigest { what: String },
    #[error("{what}: {source}")]
    BadDigest {
        what: String,
        #[source]
        source: buildfleet_cache::DigestError,
    },
    #[error("{what}: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: buildfleet_proto::convert::WireError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_equal_records_encode_equally() {
        let record = ActionRecord {
            schema: ACTION_SCHEMA,
            command: "make".into(),
            env: [
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "1".to_string()),
            ]
            .into_iter()
            .collect(),
            input_root: Digest::of(b"root"),
            input_globs: vec!["src/**".into()],
            shard_index: 1,
            shard_count: 2,
            platform: "linux-x86_64".into(),
            outputs: vec!["dist".into()],
            verify: vec!["test -s dist/ok".into()],
            secret_names: vec!["TOKEN".into()],
            artifacts: vec![buildfleet_model::Artifact {
                path: "dist/app".into(),
                digest: Digest::of(b"app"),
                kind: buildfleet_model::ArtifactKind::File { executable: false },
            }],
            services: vec![buildfleet_model::Service {
                name: "db".into(),
                command: "postgres".into(),
                ready: None,
                ready_timeout: std::time::Duration::ZERO,
            }],
            cache_project: "app".into(),
        };
        let bytes = record.encode();
        assert_eq!(ActionRecord::decode(&bytes).unwrap(), record);
        // A record with no artifacts encodes as before they existed.
        let plain = ActionRecord {
            artifacts: Vec::new(),
            ..record.clone()
        };
        assert!(plain.encode().len() < bytes.len());
        assert_eq!(ActionRecord::decode(&bytes).unwrap(), record);
        assert_eq!(record.clone().encode(), bytes);

        let manifest = Manifest {
            name: "deps".into(),
            version: "1".into(),
            platform: "linux-x86_64".into(),
            key_files: vec![("requirements.txt".into(), Digest::of(b"r"))],
            paths: vec![(".venv".into(), Digest::of(b"v"))],
        };
        assert_eq!(Manifest::decode(&manifest.encode()).unwrap(), manifest);
        assert!(Manifest::decode(b"\xff\xff").is_err());
    }
}
