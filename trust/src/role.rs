//! The three roles and the caller an RPC was admitted for.

use std::fmt;

/// What a token may do. A token has exactly one role; the RPC table
/// (`crate::policy`) says which roles each RPC admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A runner: the runner stream, and writing outputs, action results
    /// and dependency caches.
    Runner,
    /// A person or CI system: submit, watch, get and cancel its own runs,
    /// read the cache, upload inputs.
    Client,
    /// Everything, including other users' runs.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Runner, Role::Client, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Runner => "runner",
            Role::Client => "client",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (roles: runner, client, admin)")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// Who an RPC was admitted for, put in the request's extensions by the
/// guard so a handler can check ownership (a client's own runs) and bind
/// identities (a runner is named by its token, not by what it claims).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name; `anonymous` when authentication is off.
    pub name: String,
    pub role: Role,
    /// May write the action cache although not a runner (a Bazel-family
    /// client whose token allows writes).
    pub cache_write: bool,
    /// False when the server runs without a token file: everyone is an
    /// admin then, and nothing is recorded as anyone's.
    pub authenticated: bool,
}

impl Caller {
    /// The caller of a server without a token file.
    pub fn open() -> Caller {
        Caller {
            name: "anonymous".into(),
            role: Role::Admin,
            cache_write: true,
            authenticated: false,
        }
    }

    /// The name runs and decisions are recorded under: `None` when
    /// authentication is off, since a name nobody proved means nothing.
    pub fn owner(&self) -> Option<&str> {
        self.authenticated.then_some(self.name.as_str())
    }

    /// Whether this caller may act on a run owned by `owner`: an admin on
    /// any, a client on its own (an unowned run only when nobody is
    /// authenticated).
    pub fn may_act_on(&self, owner: Option<&str>) -> bool {
        !self.authenticated || self.role == Role::Admin || owner == Some(self.name.as_str())
    }

    /// May write action-cache and dependency-cache entries.
    pub fn writes_cache(&self) -> bool {
        matches!(self.role, Role::Runner | Role::Admin) || self.cache_write
    }

    /// The caller of a request, as the guard recorded it. A request
    /// without one never passed the guard: refused, never assumed open.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, tonic::Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| {
                tonic::Status::internal(
                    "no caller recorded for this request (the auth guard is missing)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str, role: Role) -> Caller {
        Caller {
            name: name.into(),
            role,
            cache_write: false,
            authenticated: true,
        }
    }

    #[test]
    fn a_client_acts_on_its_own_runs_only_and_an_admin_on_all() {
        let alice = caller("alice", Role::Client);
        assert!(alice.may_act_on(Some("alice")));
        assert!(!alice.may_act_on(Some("bob")));
        assert!(!alice.may_act_on(None), "a run nobody owns is an admin's");
        assert!(caller("root", Role::Admin).may_act_on(Some("bob")));
        assert!(Caller::open().may_act_on(Some("bob")));
        assert_eq!(Caller::open().owner(), None);
    }

    #[test]
    fn only_runners_admins_and_allowed_clients_write_the_cache() {
        assert!(caller("r", Role::Runner).writes_cache());
        assert!(caller("a", Role::Admin).writes_cache());
        assert!(!caller("c", Role::Client).writes_cache());
        let bazel = Caller {
            cache_write: true,
            ..caller("bazel", Role::Client)
        };
        assert!(bazel.writes_cache());
    }

    #[test]
    fn roles_parse_and_unknown_ones_are_named() {
        assert_eq!("runner".parse::<Role>(), Ok(Role::Runner));
        let e = "root".parse::<Role>().unwrap_err().to_string();
        assert!(e.contains("`root`") && e.contains("client"), "{e}");
    }
}
