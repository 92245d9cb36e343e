//! Who a step runs as.
//!
//! A step running as the runner's user — root, on most hosts — can write
//! through the hard links of its inputs into the runner's local blob
//! cache, read every other shard's environment (`/proc/PID/environ`, where
//! secrets are) and change anything the runner can. So a runner runs its
//! steps as an unprivileged user of their own (`--step-user`): the
//! supervisor switches to it just before it starts the shell (see
//! [`crate::supervisor`]); the work directory's directories are handed to
//! it, while the linked inputs stay the runner's and read-only (a write
//! gets EACCES; replacing its own link is allowed and harmless).
//!
//! `/proc/PID/environ` is readable by processes of the same uid (the kernel
//! checks ptrace access; `PR_SET_DUMPABLE` does not survive `execve`), so
//! only a uid per shard keeps shards apart: `--step-user FIRST-LAST` gives
//! each running shard a uid of its own from the range, handed back (to the
//! end of the queue, so reuse comes late) once its processes are gone.
//!
//! A runner running as root with no step user refuses to start unless
//! told to (`--allow-root-steps`); the embedded fleet of `buildfleet run`,
//! on one user's machine, runs steps as that user. Either way it says so
//! once, in its log and in `ListRunners`.

use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// Who steps run as, as configured (`--step-user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepUsers {
    /// As the runner's own user.
    Runner,
    /// Every shard as this one user.
    One(Identity),
    /// Each running shard as a uid of its own from `first..=last`, with
    /// group `gid` (default: the uid's own number, a group of its own).
    Range {
        first: u32,
        last: u32,
        gid: Option<u32>,
    },
}

/// One user a shard runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// The user's name on this host, if it has one (for `USER`).
    pub name: Option<String>,
}

/// Whether a runner that runs as root, with no step user, may run steps as
/// root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSteps {
    Refuse,
    /// Told to (`--allow-root-steps`), or the embedded fleet: said once.
    Allow,
}

/// Why steps cannot run as configured.
#[derive(Debug, thiserror::Error)]
pub enum StepUserError {
    #[error("`{0}` is not a step user: give UID[:GID], NAME[:GID] or FIRST-LAST[:GID]")]
    Syntax(String),
    #[error("there is no user named `{0}` on this host")]
    NoSuchUser(String),
    #[error("step user uid 0 is root: steps must run as an unprivileged user")]
    Root,
    #[error(
        "this runner runs as root and no --step-user is set: its steps could rewrite the \
         runner's local cache through their hard-linked inputs, read other shards' \
         environments (/proc/PID/environ) and change anything the runner can. Pass \
         --step-user FIRST-LAST (a uid per slot) or --step-user UID[:GID], or \
         --allow-root-steps to run steps as root anyway"
    )]
    RootSteps,
    #[error(
        "--step-user {first}-{last} has {count} uid(s) for {slots} slot(s): each running shard \
         needs a uid of its own"
    )]
    TooFew {
        first: u32,
        last: u32,
        count: u64,
        slots: u64,
    },
    #[error(
        "cannot run steps as uid {uid}: switching to it failed ({source}); a runner needs root \
         (or CAP_SETUID and CAP_SETGID) for --step-user"
    )]
    Switch {
        uid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "step user uid {uid} cannot reach the work directory {}: a directory on its way is \
         closed to other users; pass a work directory (--work-dir, or --data for `run`) \
         whose parents others may traverse",
        dir.display()
    )]
    Unreachable { uid: u32, dir: PathBuf },
    #[error("cannot prepare the work directory {} for step users: {source}", dir.display())]
    WorkDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("every step uid of {first}-{last} is in use (a shard more than the range allows)")]
    Exhausted { first: u32, last: u32 },
}

impl StepUsers {
    /// Reads `UID[:GID]`, `NAME[:GID]` (the name's uid and, without GID,
    /// its group) or `FIRST-LAST[:GID]`.
    pub fn parse(text: &str) -> Result<StepUsers, StepUserError> {
        let syntax = || StepUserError::Syntax(text.to_owned());
        let (user, gid) = match text.split_once(':') {
            Some((user, gid)) => (user, Some(gid.parse::<u32>().map_err(|_| syntax())?)),
            None => (text, None),
        };
        if let Some((first, last)) = user.split_once('-') {
            if let (Ok(first), Ok(last)) = (first.parse::<u32>(), last.parse::<u32>()) {
                if first > last {
                    return Err(syntax());
                }
                if first == 0 || gid == Some(0) {
                    return Err(StepUserError::Root);
                }
                return Ok(StepUsers::Range { first, last, gid });
            }
        }
        let known = match user.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map(|u| (uid, u))
                .ok_or(uid),
            Err(_) if user.is_empty() => return Err(syntax()),
            Err(_) => match nix::unistd::User::from_name(user) {
                Ok(Some(u)) => Ok((u.uid.as_raw(), u)),
                _ => return Err(StepUserError::NoSuchUser(user.to_owned())),
            },
        };
        let identity = match known {
            Ok((uid, u)) => Identity {
                uid,
                gid: gid.unwrap_or(u.gid.as_raw()),
                name: Some(u.name),
            },
            Err(uid) => Identity {
                uid,
                gid: gid.unwrap_or(uid),
                name: None,
            },
        };
        if identity.uid == 0 || identity.gid == 0 {
            return Err(StepUserError::Root);
        }
        Ok(StepUsers::One(identity))
    }
}

/// The step users of one runner (or of the embedded fleet's runners, which
/// share one machine): hands each shard its identity.
#[derive(Debug)]
pub struct StepUserPool {
    users: StepUsers,
    /// The runner's own uid, for what is said about it.
    runner_uid: u32,
    /// Free uids of a range, oldest-returned first.
    free: Mutex<VecDeque<u32>>,
    said: AtomicBool,
}

/// A shard's identity, handed back to the pool when dropped (once the
/// shard's processes are gone).
#[derive(Debug)]
pub struct StepLease {
    pub identity: Identity,
    pool: Option<Arc<StepUserPool>>,
}

impl Drop for StepLease {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.free.lock().push_back(self.identity.uid);
        }
    }
}

impl StepUserPool {
    /// Decides who steps run as, refusing root steps unless `root` allows
    /// them. Checked before anything is bound, connected or created.
    pub fn new(users: StepUsers, root: RootSteps) -> Result<StepUserPool, StepUserError> {
        let runner_uid = nix::unistd::geteuid().as_raw();
        if users == StepUsers::Runner && runner_uid == 0 && root == RootSteps::Refuse {
            return Err(StepUserError::RootSteps);
        }
        let free = match &users {
            StepUsers::Range { first, last, .. } => (*first..=*last).collect(),
            _ => VecDeque::new(),
        };
        Ok(StepUserPool {
            users,
            runner_uid,
            free: Mutex::new(free),
            said: AtomicBool::new(false),
        })
    }

    pub fn users(&self) -> &StepUsers {
        &self.users
    }

    /// True if steps run as another user than the runner's.
    pub fn separates(&self) -> bool {
        self.users != StepUsers::Runner
    }

    /// Checks `slots` running shards each get a uid of their own where a
    /// range is given.
    pub fn check_slots(&self, slots: u32) -> Result<(), StepUserError> {
        if let StepUsers::Range { first, last, .. } = self.users {
            let count = u64::from(last - first) + 1;
            if count < u64::from(slots) {
                return Err(StepUserError::TooFew {
                    first,
                    last,
                    count,
                    slots: slots.into(),
                });
            }
        }
        Ok(())
    }

    /// Makes `work_root` (which must exist) traversable but not listable
    /// by step users (0711), then proves a step user can switch to its
    /// identity and reach it: `test -x` run as that user, the kernel
    /// checking every directory on the way.
    pub fn admit(&self, work_root: &Path) -> Result<(), StepUserError> {
        let Some(probe) = self.sample() else {
            return Ok(());
        };
        let io = |source| StepUserError::WorkDir {
            dir: work_root.to_owned(),
            source,
        };
        std::fs::set_permissions(work_root, std::fs::Permissions::from_mode(0o711)).map_err(io)?;
        let status = std::process::Command::new("test")
            .arg("-x")
            .arg(work_root)
            .uid(probe.uid)
            .gid(probe.gid)
            .env_clear()
            .status()
            .map_err(|source| StepUserError::Switch {
                uid: probe.uid,
                source,
            })?;
        if !status.success() {
            return Err(StepUserError::Unreachable {
                uid: probe.uid,
                dir: work_root.to_owned(),
            });
        }
        Ok(())
    }

    fn sample(&self) -> Option<Identity> {
        match &self.users {
            StepUsers::Runner => None,
            StepUsers::One(id) => Some(id.clone()),
            StepUsers::Range { first, gid, .. } => Some(range_identity(*first, *gid)),
        }
    }

    /// The identity for one shard: `None` runs it as the runner's own user.
    pub fn acquire(self: &Arc<Self>) -> Result<Option<StepLease>, StepUserError> {
        match &self.users {
            StepUsers::Runner => Ok(None),
            StepUsers::One(id) => Ok(Some(StepLease {
                identity: id.clone(),
                pool: None,
            })),
            StepUsers::Range { first, last, gid } => {
                let uid = self
                    .free
                    .lock()
                    .pop_front()
                    .ok_or(StepUserError::Exhausted {
                        first: *first,
                        last: *last,
                    })?;
                Ok(Some(StepLease {
                    identity: range_identity(uid, *gid),
                    pool: Some(self.clone()),
                }))
            }
        }
    }

    /// One sentence for the runner's log and `ListRunners`.
    pub fn describe(&self, slots: u32) -> String {
        let ctime = "the local cache hashes an entry again before linking it whenever its \
                     ctime changed behind its back";
        match &self.users {
            StepUsers::Runner if self.runner_uid == 0 => format!(
                "steps run as root, the runner's own user: a step can write the local cache's \
                 entries, read other shards' environments and change anything the runner can \
                 ({ctime}); give the runner --step-user to isolate steps"
            ),
            StepUsers::Runner => format!(
                "steps run as the runner's own user (uid {}): they can write the local cache's \
                 entries and read each other's environments ({ctime})",
                self.runner_uid
            ),
            StepUsers::One(id) if slots > 1 => format!(
                "steps run as uid {} (gid {}), not the runner's: they cannot write the local \
                 cache's entries, but the {slots} slots share the uid, so concurrent shards can \
                 read each other's environments (give a uid range)",
                id.uid, id.gid
            ),
            StepUsers::One(id) => format!(
                "steps run as uid {} (gid {}), not the runner's: they cannot write the local \
                 cache's entries",
                id.uid, id.gid
            ),
            StepUsers::Range { first, last, .. } => format!(
                "each shard runs as a uid of its own from {first}-{last}, not the runner's: steps \
                 cannot write the local cache's entries or read each other's environments"
            ),
        }
    }

    /// Logs [`describe`](Self::describe) the first time it is called for
    /// this pool: once per runner, once for the embedded fleet's runners.
    /// At the level the cgroups are described at: what a runner does for
    /// its shards is not a warning about a clean run (`buildfleet run` on
    /// one's own machine runs steps as oneself, as asked).
    pub fn say_once(&self, slots: u32) {
        if self.said.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::info!(step_users = %self.describe(slots), "who steps run as");
    }
}

fn range_identity(uid: u32, gid: Option<u32>) -> Identity {
    Identity {
        uid,
        gid: gid.unwrap_or(uid),
        name: nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_users_parse_and_root_is_refused() {
        assert_eq!(
            StepUsers::parse("100000-100003:5000").unwrap(),
            StepUsers::Range {
                first: 100000,
                last: 100003,
                gid: Some(5000)
            }
        );
        let StepUsers::One(nobody) = StepUsers::parse("65534").unwrap() else {
            panic!("one user");
        };
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        let StepUsers::One(named) = StepUsers::parse("nobody:100").unwrap() else {
            panic!("one user");
        };
        assert_eq!((named.uid, named.gid), (65534, 100));
        assert_eq!(named.name.as_deref(), Some("nobody"));
        for root in ["0", "root", "0-3", "65534:0"] {
            assert!(
                matches!(StepUsers::parse(root), Err(StepUserError::Root)),
                "{root}"
            );
        }
        for bad in ["", "5-1", "1:x", ":1"] {
            assert!(
                matches!(StepUsers::parse(bad), Err(StepUserError::Syntax(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            StepUsers::parse("no-such-user-here"),
            Err(StepUserError::NoSuchUser(_))
        ));
    }

    #[test]
    fn a_range_gives_each_shard_its_own_uid_and_takes_them_back_last() {
        let pool = Arc::new(
            StepUserPool::new(
                StepUsers::Range {
                    first: 100000,
                    last: 100001,
                    gid: None,
                },
                RootSteps::Refuse,
            )
            .unwrap(),
        );
        assert!(pool.check_slots(2).is_ok());
        assert!(matches!(
            pool.check_slots(3),
            Err(StepUserError::TooFew { count: 2, .. })
        ));
        let a = pool.acquire().unwrap().unwrap();
        let b = pool.acquire().unwrap().unwrap();
        assert_eq!((a.identity.uid, b.identity.uid), (100000, 100001));
        assert_eq!(b.identity.gid, 100001);
        assert!(matches!(
            pool.acquire(),
            Err(StepUserError::Exhausted { .. })
        ));
        drop(a);
        assert_eq!(pool.acquire().unwrap().unwrap().identity.uid, 100000);
        assert!(pool.describe(2).contains("a uid of its own"));
    }

    #[test]
    fn a_root_runner_without_a_step_user_refuses_unless_allowed() {
        let refused = StepUserPool::new(StepUsers::Runner, RootSteps::Refuse);
        let allowed = StepUserPool::new(StepUsers::Runner, RootSteps::Allow).unwrap();
        assert!(!allowed.separates());
        if nix::unistd::geteuid().is_root() {
            let err = refused.unwrap_err();
            assert!(matches!(err, StepUserError::RootSteps));
            assert!(err.to_string().contains("--allow-root-steps"), "{err}");
            assert!(allowed.describe(1).starts_with("steps run as root"));
        } else {
            // Not root: nothing to refuse, and it says who steps run as.
            assert!(refused.is_ok());
            assert!(allowed.describe(1).contains("the runner's own user (uid"));
        }
        assert!(
            allowed.acquire_for_test().is_none(),
            "the runner's own user"
        );
    }

    impl StepUserPool {
        fn acquire_for_test(self) -> Option<StepLease> {
            Arc::new(self).acquire().unwrap()
        }
    }
}
