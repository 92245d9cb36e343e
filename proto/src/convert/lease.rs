//! Leases: built by the coordinator, read by the runner.

use std::time::Duration;

use buildfleet_model::{CacheSpec, Check, Digest, Lease, LeaseKind, Resources, Service};

use super::WireError;
use crate::v1 as pb;

impl From<Lease> for pb::Lease {
    fn from(l: Lease) -> pb::Lease {
        pb::Lease {
            lease_id: l.lease_id,
            run_id: l.run_id,
            step: l.step,
            shard_index: l.shard_index,
            shard_count: l.shard_count,
            command: l.command,
            env: l.env.into_iter().collect(),
            input_root: Some(l.input_root.into()),
            timeout_ms: l.timeout.map_or(0, |t| t.as_millis() as u64),
            outputs: l.outputs,
            caches: l.caches.into_iter().map(cache_spec).collect(),
            use_action_cache: l.action_cache_off.is_none(),
            action_cache_off: l.action_cache_off.unwrap_or_default(),
            quarantine: l.quarantine,
            memory_bytes: l.resources.memory_bytes.unwrap_or(0),
            cpu_millis: l.resources.cpu_millis.unwrap_or(0),
            inputs: l.inputs,
            project: l.project,
            reports: l.reports,
            items: l.items,
            list_items: l.kind == LeaseKind::Listing,
            attempt: l.attempt,
            verify: l.verify.iter().map(|c| c.command.clone()).collect(),
            checks: l
                .verify
                .into_iter()
                .map(|c| pb::VerifyCheck {
                    run: c.command,
                    retries: c.retries,
                    interval_ms: c.interval.as_millis() as u64,
                })
                .collect(),
            secrets: l.secrets.into_iter().collect(),
            log_cap_bytes: l.log_cap.unwrap_or(0),
            artifacts: l.artifacts.iter().map(super::step_artifact).collect(),
            services: l.services.iter().map(service).collect(),
            run_vars: l.run_vars,
            artifact_retention_secs: l.artifact_retention.map_or(0, |d| d.as_secs()),
            cache_scope_write: l.cache_scope.write,
            cache_scope_read: l.cache_scope.read,
            traceparent: l.traceparent,
        }
    }
}

/// A service as the wire carries it (also in stored action records).
pub fn service(s: &Service) -> pb::ServiceSpec {
    pb::ServiceSpec {
        name: s.name.clone(),
        run: s.command.clone(),
        ready: s.ready.clone().unwrap_or_default(),
        ready_timeout_ms: s.ready_timeout.as_millis() as u64,
    }
}

fn service_from_wire(s: pb::ServiceSpec) -> Service {
    Service {
        name: s.name,
        command: s.run,
        ready: Some(s.ready).filter(|r| !r.is_empty()),
        ready_timeout: Duration::from_millis(s.ready_timeout_ms),
    }
}

fn cache_spec(c: CacheSpec) -> pb::CacheSpec {
    pb::CacheSpec {
        name: c.name,
        key_files: c.key_files,
        paths: c.paths,
        version: c.version,
        restore: c.restore,
    }
}

fn cache_spec_from_wire(c: pb::CacheSpec) -> CacheSpec {
    CacheSpec {
        name: c.name,
        key_files: c.key_files,
        paths: c.paths,
        version: c.version,
        restore: c.restore,
    }
}

/// A lease as the runner takes it. A lease that may not use the action
/// cache must say why; one from an older coordinator that does not is
/// given a reason rather than read as "may".
pub fn lease_from_wire(l: pb::Lease) -> Result<Lease, WireError> {
    let input_root = l
        .input_root
        .as_ref()
        .ok_or(WireError::Missing("the lease's input root"))?;
    let input_root = Digest::try_from(input_root).map_err(|source| WireError::Digest {
        field: "input_root",
        source,
    })?;
    let action_cache_off = match (l.use_action_cache, l.action_cache_off) {
        (true, _) => None,
        (false, why) if why.is_empty() => {
            Some("the coordinator turned the step-result cache off".to_owned())
        }
        (false, why) => Some(why),
    };
    let artifacts = l
        .artifacts
        .iter()
        .map(super::step_artifact_from_wire)
        .collect::<Result<_, _>>()?;
    Ok(Lease {
        artifacts,
        services: l.services.into_iter().map(service_from_wire).collect(),
        run_vars: l.run_vars,
        artifact_retention: (l.artifact_retention_secs > 0)
            .then(|| Duration::from_secs(l.artifact_retention_secs)),
        cache_scope: buildfleet_model::CacheScope {
            read: match l.cache_scope_read.is_empty() {
                true => vec![l.cache_scope_write.clone()],
                false => l.cache_scope_read,
            },
            write: l.cache_scope_write,
        },
        traceparent: l.traceparent,
        lease_id: l.lease_id,
        run_id: l.run_id,
        step: l.step,
        shard_index: l.shard_index,
        shard_count: l.shard_count,
        kind: match l.list_items {
            true => LeaseKind::Listing,
            false => LeaseKind::Shard,
        },
        command: l.command,
        env: l.env.into_iter().collect(),
        input_root,
        timeout: (l.timeout_ms > 0).then(|| Duration::from_millis(l.timeout_ms)),
        outputs: l.outputs,
        caches: l.caches.into_iter().map(cache_spec_from_wire).collect(),
        action_cache_off,
        inputs: l.inputs,
        project: l.project,
        reports: l.reports,
        items: l.items,
        attempt: l.attempt.max(1),
        verify: match l.checks.is_empty() {
            // From a coordinator that sends only the commands.
            true => l.verify.into_iter().map(Check::once).collect(),
            false => l
                .checks
                .into_iter()
                .map(|c| Check {
                    command: c.run,
                    retries: c.retries,
                    interval: Duration::from_millis(c.interval_ms),
                })
                .collect(),
        },
        secrets: l.secrets.into_iter().collect(),
        log_cap: (l.log_cap_bytes > 0).then_some(l.log_cap_bytes),
        quarantine: l.quarantine,
        resources: Resources {
            memory_bytes: (l.memory_bytes > 0).then_some(l.memory_bytes),
            cpu_millis: (l.cpu_millis > 0).then_some(l.cpu_millis),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn lease(kind: LeaseKind) -> Lease {
        Lease {
            lease_id: "l1".into(),
            run_id: "r1".into(),
            step: "test".into(),
            shard_index: 1,
            shard_count: 3,
            kind,
            command: "pytest".into(),
            env: BTreeMap::from([("A".into(), "1".into())]),
            input_root: Digest::of(b"tree"),
            timeout: Some(Duration::from_secs(5)),
            outputs: vec!["dist".into()],
            caches: vec![CacheSpec {
                name: "deps".into(),
                key_files: vec!["Cargo.lock".into()],
                paths: vec!["target".into()],
                version: "2".into(),
                restore: vec!["deps/2/".into()],
            }],
            action_cache_off: Some("`--no-cache`".into()),
            inputs: vec!["src/**".into()],
            project: "p".into(),
            reports: vec!["junit.xml".into()],
            items: vec!["a.py".into()],
            attempt: 2,
            verify: vec![
                Check::once("test -f dist/x"),
                Check {
                    command: "curl -f localhost".into(),
                    retries: 5,
                    interval: Duration::from_millis(250),
                },
            ],
            secrets: BTreeMap::from([("TOKEN".into(), "s3cret".into())]),
            artifacts: vec![buildfleet_model::StepArtifact {
                step: "build".into(),
                artifact: buildfleet_model::Artifact {
                    path: "dist/app".into(),
                    digest: Digest::of(b"app"),
                    kind: buildfleet_model::ArtifactKind::File { executable: true },
                },
            }],
            services: vec![Service {
                name: "db".into(),
                command: "postgres".into(),
                ready: Some("pg_isready".into()),
                ready_timeout: Duration::from_secs(30),
            }],
            run_vars: vec!["ENVIRONMENT".into()],
            artifact_retention: Some(Duration::from_secs(86400)),
            cache_scope: buildfleet_model::CacheScope::for_ref("refs/heads/f", false),
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            log_cap: Some(1024),
            quarantine: vec!["t::x".into()],
            resources: Resources {
                memory_bytes: Some(1 << 30),
                cpu_millis: Some(1500),
            },
        }
    }

    #[test]
    fn leases_survive_the_wire() {
        for kind in [LeaseKind::Shard, LeaseKind::Listing] {
            let l = lease(kind);
            assert_eq!(lease_from_wire(l.clone().into()), Ok(l));
        }
        let mut open = lease(LeaseKind::Shard);
        open.action_cache_off = None;
        open.timeout = None;
        open.log_cap = None;
        open.resources = Resources::default();
        assert_eq!(lease_from_wire(open.clone().into()), Ok(open));
    }

    #[test]
    fn a_lease_without_input_root_or_reason_is_not_guessed() {
        let mut wire: pb::Lease = lease(LeaseKind::Shard).into();
        wire.action_cache_off.clear();
        let read = lease_from_wire(wire.clone()).unwrap();
        assert!(read.action_cache_off.unwrap().contains("turned"));
        wire.input_root = None;
        assert_eq!(
            lease_from_wire(wire),
            Err(WireError::Missing("the lease's input root"))
        );
    }
}
