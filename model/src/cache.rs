//! What caches are and what they did: dependency-cache definitions as the
//! pipeline declares them, and the report a shard gives for each cache it
//! touched — kept on the shard and sent with its final state so the
//! summary can say, for every miss, why, and a failed save is never
//! invisible.

use std::fmt;

/// A dependency cache: restored into `paths` before a step runs, saved
/// after it succeeds, keyed by the contents of `key_files`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheSpec {
    /// The name the pipeline's `caches:` section gives it.
    pub name: String,
    /// Relative to the working directory; literal paths, not globs, so the
    /// key can name exactly which file changed.
    pub key_files: Vec<String>,
    /// Relative to the working directory and guaranteed not to escape it.
    pub paths: Vec<String>,
    /// Part of the key: bump it to start afresh (empty = none).
    pub version: String,
    /// Key prefixes tried in order when the exact key misses.
    pub restore: Vec<String>,
}

/// Which cache a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheName {
    /// The step-result (action) cache.
    Step,
    /// A dependency cache, by its `caches:` name.
    Dependency(String),
}

impl CacheName {
    /// The wire and stored name of the step-result cache. The pipeline
    /// refuses a dependency cache of this name, so the two never meet.
    pub const STEP: &'static str = "step";

    /// Reads a wire or stored name.
    pub fn parse(name: &str) -> CacheName {
        match name {
            CacheName::STEP => CacheName::Step,
            other => CacheName::Dependency(other.to_owned()),
        }
    }

    /// The wire and stored name.
    pub fn as_str(&self) -> &str {
        match self {
            CacheName::Step => CacheName::STEP,
            CacheName::Dependency(name) => name,
        }
    }

    /// How a summary or log line names it: `step result`, `cache deps`.
    pub fn subject(&self) -> String {
        match self {
            CacheName::Step => "step result".to_owned(),
            CacheName::Dependency(name) => format!("cache `{name}`"),
        }
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stored as its name, as it was before the name had a type.
impl serde::Serialize for CacheName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CacheName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CacheName, D::Error> {
        let name = String::deserialize(d)?;
        Ok(CacheName::parse(&name))
    }
}

/// What one cache did for a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CacheOutcome {
    /// The exact key (or action digest) was found and restored.
    Hit,
    /// The exact key missed; an entry under a `restore:` prefix was restored.
    Fallback,
    /// Nothing usable was found.
    Miss,
    /// Saving after success failed; the step's result is unchanged.
    SaveFailed,
    /// The result or the cache entry was saved.
    Saved,
    /// Caching was turned off for this shard (`--no-cache`, `cache: false`,
    /// secrets, a re-run); the report's detail says which.
    Disabled,
}

impl CacheOutcome {
    /// The one name summaries, logs and `cache explain` use.
    pub fn name(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Fallback => "fallback",
            CacheOutcome::Miss => "miss",
            CacheOutcome::SaveFailed => "cache-save-failed",
            CacheOutcome::Saved => "saved",
            CacheOutcome::Disabled => "off",
        }
    }
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one cache did for a shard, with the key it used and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheReport {
    /// Which cache.
    pub cache: CacheName,
    /// What it did.
    pub outcome: CacheOutcome,
    /// The key (dependency caches) or action digest (step results).
    pub key: String,
    /// Why it missed, which fallback matched, why a save failed, or why
    /// caching was off.
    pub detail: String,
}

impl CacheReport {
    /// A report about the step-result cache.
    pub fn step(outcome: CacheOutcome, key: String, detail: String) -> CacheReport {
        CacheReport {
            cache: CacheName::Step,
            outcome,
            key,
            detail,
        }
    }

    /// One line for the shard's log: `cache `deps`: miss [key] — why`.
    pub fn log_line(&self) -> String {
        let what = match self.outcome {
            CacheOutcome::Fallback => "restored from a fallback",
            other => other.name(),
        };
        let mut line = format!("{}: {what}", self.cache.subject());
        if !self.key.is_empty() {
            line.push_str(&format!(" [{}]", self.key));
        }
        if !self.detail.is_empty() {
            line.push_str(&format!(" — {}", self.detail));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_cache_has_one_name_on_every_path() {
        assert_eq!(CacheName::parse("step"), CacheName::Step);
        assert_eq!(
            CacheName::parse("deps"),
            CacheName::Dependency("deps".into())
        );
        let json = serde_json::to_string(&CacheName::Step).unwrap();
        assert_eq!(json, "\"step\"");
        assert_eq!(
            serde_json::from_str::<CacheName>("\"npm\"").unwrap(),
            CacheName::Dependency("npm".into())
        );
    }

    #[test]
    fn a_disabled_cache_reads_off_in_logs_and_summaries() {
        let r = CacheReport {
            cache: CacheName::Step,
            outcome: CacheOutcome::Disabled,
            key: String::new(),
            detail: "`--no-cache`".into(),
        };
        assert_eq!(r.log_line(), "step result: off — `--no-cache`");
        assert_eq!(CacheOutcome::Disabled.to_string(), "off");
    }
}

/// Where a shard's action results and dependency caches are read and
/// written: the cache trust scopes. Runs on protected refs (`main`, tags)
/// write the shared scope; any other ref reads the shared scope but writes
/// only an overlay of its own, which protected runs never read — so a
/// feature branch cannot plant a result that `main` will trust (cache
/// poisoning across trust levels). Each scope is a REAPI instance name.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CacheScope {
    /// The instance entries are written to.
    pub write: String,
    /// The instances entries are read from, first match wins.
    pub read: Vec<String>,
}

/// The prefix of every scope's instance name: instances under it are
/// written by runners only, never by a client token.
pub const SCOPE_PREFIX: &str = "buildfleet/";

/// The scope protected refs write and everyone reads.
pub const SHARED_SCOPE: &str = "buildfleet/shared";

impl CacheScope {
    /// The scope of a run on `git_ref`: the shared one when the ref is
    /// protected, else the ref's own overlay over the shared one.
    pub fn for_ref(git_ref: &str, protected: bool) -> CacheScope {
        if protected {
            return CacheScope {
                write: SHARED_SCOPE.into(),
                read: vec![SHARED_SCOPE.into()],
            };
        }
        let name = if git_ref.is_empty() {
            "(none)"
        } else {
            git_ref
        };
        let overlay = format!("{SCOPE_PREFIX}ref/{name}");
        CacheScope {
            write: overlay.clone(),
            read: vec![overlay, SHARED_SCOPE.into()],
        }
    }

    /// Whether `instance` is a scope runners write (so clients may not).
    pub fn is_scope(instance: &str) -> bool {
        instance.starts_with(SCOPE_PREFIX)
    }

    /// How a person reads the scope: `shared`, or `overlay of REF`.
    pub fn describe(instance: &str) -> String {
        match instance.strip_prefix(SCOPE_PREFIX) {
            Some("shared") => "shared".into(),
            Some(rest) => match rest.strip_prefix("ref/") {
                Some(r) => format!("overlay of {r}"),
                None => rest.to_owned(),
            },
            None if instance.is_empty() => "default instance".into(),
            None => format!("instance {instance}"),
        }
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn protected_refs_write_shared_and_others_only_their_overlay() {
        let main = CacheScope::for_ref("refs/heads/main", true);
        assert_eq!(main.write, SHARED_SCOPE);
        assert_eq!(main.read, vec![SHARED_SCOPE.to_owned()], "never an overlay");
        let feature = CacheScope::for_ref("refs/heads/f", false);
        assert_eq!(feature.write, "buildfleet/ref/refs/heads/f");
        assert_eq!(
            feature.read,
            vec![feature.write.clone(), SHARED_SCOPE.to_owned()]
        );
        assert!(CacheScope::is_scope(&feature.write) && !CacheScope::is_scope(""));
        assert_eq!(
            CacheScope::describe(&feature.write),
            "overlay of refs/heads/f"
        );
    }
}
