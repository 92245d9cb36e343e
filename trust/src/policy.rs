//! The RPC access table: for every RPC the servers answer, who may call
//! it. The one place a role meets an RPC; `docs/security.md` shows this
//! table (a test keeps the two equal), and a test calls every row with no
//! token, a wrong one and each role against real servers.

use crate::role::{Caller, Role};

/// Who may call an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// No token needed: health probes (Kubernetes calls them without one).
    Anyone,
    /// Any valid token whose role is listed.
    Roles(&'static [Role]),
    /// Runners and admins, and clients whose token says `cache_write`
    /// (a Bazel-family client that uploads its own action results).
    CacheWriters,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Rpc {
    /// The gRPC path, `/package.Service/Method`.
    pub path: &'static str,
    pub who: Who,
    /// What the handler checks beyond the role, for the docs.
    pub also: &'static str,
}

const EVERY_ROLE: &[Role] = &[Role::Runner, Role::Client, Role::Admin];
const PEOPLE: &[Role] = &[Role::Client, Role::Admin];
const RUNNERS: &[Role] = &[Role::Runner, Role::Admin];

const fn rpc(path: &'static str, who: Who, also: &'static str) -> Rpc {
    Rpc { path, who, also }
}

/// Every RPC the coordinator and the cache serve. An RPC missing here is
/// refused to everyone but admins: a new RPC is closed until listed.
pub const RPCS: &[Rpc] = &[
    rpc(
        "/buildfleet.v1.Pipelines/Submit",
        Who::Roles(PEOPLE),
        "the run is the caller's",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/Watch",
        Who::Roles(PEOPLE),
        "a client: its own runs",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/Get",
        Who::Roles(PEOPLE),
        "a client: its own runs",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/Cancel",
        Who::Roles(PEOPLE),
        "a client: its own runs",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/Decide",
        Who::Roles(PEOPLE),
        "a client: its own runs, unless the coordinator says `--approvals admin`",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/Rerun",
        Who::Roles(PEOPLE),
        "a client: its own runs",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/ListRunners",
        Who::Roles(PEOPLE),
        "",
    ),
    rpc(
        "/buildfleet.v1.Pipelines/ListRuns",
        Who::Roles(PEOPLE),
        "a client: its own runs",
    ),
    rpc(
        "/buildfleet.v1.RunnerService/Session",
        Who::Roles(RUNNERS),
        "the runner is named after its token",
    ),
    rpc(
        "/buildfleet.v1.CacheIndex/Lookup",
        Who::Roles(EVERY_ROLE),
        "reads the caller's scope",
    ),
    rpc(
        "/buildfleet.v1.CacheIndex/Put",
        Who::Roles(RUNNERS),
        "writes the run's scope",
    ),
    rpc("/buildfleet.v1.CacheIndex/Pin", Who::Roles(RUNNERS), ""),
    rpc(
        "/build.bazel.remote.execution.v2.ActionCache/GetActionResult",
        Who::Roles(EVERY_ROLE),
        "reads the caller's scope",
    ),
    rpc(
        "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult",
        Who::CacheWriters,
        "writes the caller's scope",
    ),
    rpc(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
        Who::Roles(EVERY_ROLE),
        "",
    ),
    rpc(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs",
        Who::Roles(EVERY_ROLE),
        "",
    ),
    rpc(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
        Who::Roles(EVERY_ROLE),
        "content-addressed: a blob is stored only under its own hash",
    ),
    rpc(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/GetTree",
        Who::Roles(EVERY_ROLE),
        "",
    ),
    rpc(
        "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
        Who::Roles(EVERY_ROLE),
        "",
    ),
    rpc(
        "/google.bytestream.ByteStream/Read",
        Who::Roles(EVERY_ROLE),
        "",
    ),
    rpc(
        "/google.bytestream.ByteStream/Write",
        Who::Roles(EVERY_ROLE),
        "content-addressed: verified before it is visible",
    ),
    rpc(
        "/google.bytestream.ByteStream/QueryWriteStatus",
        Who::Roles(EVERY_ROLE),
        "",
    ),
    rpc("/grpc.health.v1.Health/Check", Who::Anyone, ""),
    rpc("/grpc.health.v1.Health/Watch", Who::Anyone, ""),
];

/// The row for `path`, if it is one.
pub fn find(path: &str) -> Option<&'static Rpc> {
    RPCS.iter().find(|r| r.path == path)
}

/// Whether `caller` may call the RPC at `path` (before any check of the
/// handler's own). Unlisted RPCs are for admins only.
pub fn admits(path: &str, caller: &Caller) -> bool {
    match find(path).map(|r| r.who) {
        Some(Who::Anyone) => true,
        Some(Who::Roles(roles)) => roles.contains(&caller.role),
        Some(Who::CacheWriters) => caller.writes_cache(),
        None => caller.role == Role::Admin,
    }
}

impl Who {
    /// How the docs say it.
    pub fn describe(self) -> String {
        match self {
            Who::Anyone => "anyone, no token".into(),
            Who::Roles(roles) => roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            Who::CacheWriters => "runner, admin, client with `cache_write: true`".into(),
        }
    }
}

/// The table as Markdown, for `docs/security.md`.
pub fn markdown() -> String {
    let mut out = String::from("| RPC | who may call it | also checked |\n|---|---|---|\n");
    for r in RPCS {
        out += &format!("| `{}` | {} | {} |\n", r.path, r.who.describe(), r.also);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rpc_of_our_own_protocol_is_in_the_table() {
        let proto = include_str!("../../proto/proto/buildfleet.proto");
        let mut service = "";
        for line in proto.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().unwrap_or("");
            } else if let Some(rest) = line.strip_prefix("rpc ") {
                let method = rest.split('(').next().unwrap_or("").trim();
                let path = format!("/buildfleet.v1.{service}/{method}");
                assert!(find(&path).is_some(), "{path} is not in the access table");
            }
        }
    }

    #[test]
    fn paths_are_listed_once() {
        for (i, r) in RPCS.iter().enumerate() {
            assert!(
                RPCS[i + 1..].iter().all(|o| o.path != r.path),
                "{} twice",
                r.path
            );
        }
    }

    #[test]
    fn unlisted_rpcs_are_for_admins_only() {
        let client = Caller {
            role: Role::Client,
            ..Caller::open()
        };
        assert!(!admits("/buildfleet.v1.Pipelines/Future", &client));
        assert!(admits("/buildfleet.v1.Pipelines/Future", &Caller::open()));
    }
}
