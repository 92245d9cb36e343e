//! The `caches:` section (dependency caches) and the caching fields of a
//! step (`caches`, `inputs`, `cache`).
//!
//! Cache paths live inside the step's working directory: a path in the
//! runner's home (`~/.cargo`) would be shared by every shard running on that
//! runner at once, so restoring into it could corrupt a neighbour's build.

use std::collections::BTreeMap;

use super::error::Collector;
use super::fields::{self, Fields};
use super::suggest;
use super::yaml::{Node, Pos, ScalarKind, Value};
use super::CacheSpec;

const CACHE_KEYS: &[&str] = &["key_files", "paths", "version", "restore"];

/// Parses `caches:`; names keep their positions for "unknown cache" errors.
pub(super) fn section(node: &Node, errors: &mut Collector) -> BTreeMap<String, CacheSpec> {
    let mut caches = BTreeMap::new();
    let Value::Mapping(pairs) = &node.value else {
        errors.error_with_hint(
            node.pos,
            format!(
                "`caches` must be a mapping from cache names to cache definitions, found {}",
                node.describe()
            ),
            "write `caches:` then `  deps: { key_files: [package-lock.json], paths: [node_modules] }`",
        );
        return caches;
    };
    for (key, value) in pairs {
        let Some(name) = key.scalar().filter(|_| !key.is_null()) else {
            errors.error(
                key.pos,
                format!("cache names must be strings, found {}", key.describe()),
            );
            continue;
        };
        if !valid_name(name) {
            errors.error_with_hint(
                key.pos,
                format!("invalid cache name `{name}`"),
                "cache names may only contain letters, digits, `_`, `.` and `-`",
            );
        }
        if name == buildfleet_model::CacheName::STEP {
            // Reports name the step-result cache `step`: a dependency cache
            // of that name would be mistaken for it in every summary.
            errors.error_with_hint(
                key.pos,
                format!("cache name `{name}` is reserved for the step-result cache"),
                "pick another name, such as `step-deps`",
            );
            continue;
        }
        if caches.contains_key(name) {
            errors.error(key.pos, format!("duplicate cache name `{name}`"));
            continue;
        }
        if let Some(def) = definition(name, value, errors) {
            caches.insert(name.to_owned(), def);
        }
    }
    caches
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn definition(name: &str, node: &Node, errors: &mut Collector) -> Option<CacheSpec> {
    let owner = format!("in cache `{name}`");
    let Some(map) = Fields::of(node, &owner, CACHE_KEYS, errors) else {
        errors.error_with_hint(
            node.pos,
            format!(
                "cache `{name}` must be a mapping, found {}",
                node.describe()
            ),
            "write `{ key_files: [lockfile], paths: [dir] }`",
        );
        return None;
    };
    let key_files = map
        .require("key_files", &owner, errors)
        .and_then(|n| relative_paths(n, "key_files", errors))
        .unwrap_or_default();
    let paths = map
        .require("paths", &owner, errors)
        .and_then(|n| relative_paths(n, "paths", errors))
        .unwrap_or_default();
    if let Some(node) = map.get("paths") {
        if paths.is_empty() && matches!(&node.value, Value::Sequence(items) if items.is_empty()) {
            errors.error(node.pos, format!("cache `{name}` has no `paths` to save"));
        }
    }
    let version = map.get("version").and_then(|n| match n.scalar_kind() {
        Some(ScalarKind::Null) | None => {
            errors.error(
                n.pos,
                format!("`version` must be a string, found {}", n.describe()),
            );
            None
        }
        // Numbers are fine as versions (`version: 2`); keep them as written.
        Some(_) => n.scalar().map(str::to_owned),
    });
    if let Some(v) = &version {
        if v.contains('/') {
            let pos = map.get("version").map_or(node.pos, |n| n.pos);
            errors.error(pos, format!("cache `version` {v:?} must not contain `/`; `/` separates the parts of a cache key"));
        }
    }
    let restore = map
        .get("restore")
        .and_then(|n| fields::string_list(n, "restore", "cache key prefixes", errors))
        .map(|entries| entries.into_iter().map(|(p, _)| p).collect())
        .unwrap_or_default();
    Some(CacheSpec {
        name: name.to_owned(),
        key_files,
        paths,
        version: version.unwrap_or_default(),
        restore,
    })
}

fn relative_paths(node: &Node, key: &str, errors: &mut Collector) -> Option<Vec<String>> {
    let entries = fields::workspace_paths(node, key, "cache", errors)?;
    for (path, pos) in &entries {
        if path.starts_with('~') {
            errors.error_with_hint(
                *pos,
                format!("`{key}` entry `{path}` is in the home directory"),
                "cache paths are restored inside the step's working directory, which no other shard shares; point the tool there instead (e.g. `CARGO_HOME=.cargo`, `npm_config_cache=.npm`)",
            );
        } else if path.split('/').any(|c| c == "..") && fields::output_path_problem(path).is_none()
        {
            // Even `a/../b`, which stays inside: a cache path is saved and
            // restored as written, and a `..` in it is a way out on restore.
            errors.error(*pos, format!("`{key}` entry `{path}` contains `..`"));
        } else if path.trim_end_matches('/').is_empty() || path == "." {
            errors.error(
                *pos,
                format!("`{key}` entry `{path}` names the whole working directory"),
            );
        }
    }
    Some(entries.into_iter().map(|(p, _)| p).collect())
}

/// A step's `caches:` list, with positions for "unknown cache" errors.
pub(super) fn step_caches(node: &Node, errors: &mut Collector) -> Vec<(String, Pos)> {
    fields::string_list(
        node,
        "caches",
        "cache names from the top-level `caches:` section",
        errors,
    )
    .unwrap_or_default()
}

/// A step's `inputs:` globs; each is compiled now so a typo is reported at
/// its position instead of failing on a runner.
pub(super) fn inputs(node: &Node, errors: &mut Collector) -> Vec<String> {
    let Some(entries) = fields::string_list(node, "inputs", "globs naming input files", errors)
    else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for (glob, pos) in entries {
        if let Err(e) = globset::Glob::new(&glob) {
            errors.error_with_hint(
                pos,
                format!("invalid glob `{glob}` in `inputs`: {}", e.kind()),
                "globs are relative to the workspace, e.g. `src/**/*.py`",
            );
        } else if glob.starts_with('/') {
            errors.error(
                pos,
                format!("`inputs` glob `{glob}` is absolute; globs are relative to the workspace"),
            );
        }
        out.push(glob);
    }
    out
}

/// `cache: true|false` on a step.
pub(super) fn enabled(node: &Node, errors: &mut Collector) -> Option<bool> {
    match (node.scalar_kind(), node.scalar()) {
        (Some(ScalarKind::Bool), Some(text)) => Some(text.eq_ignore_ascii_case("true")),
        _ => {
            errors.error_with_hint(
                node.pos,
                format!("`cache` must be true or false, found {}", node.describe()),
                "write `cache: false` to always run the step",
            );
            None
        }
    }
}

/// Reports step cache names that the `caches:` section does not define.
pub(super) fn check_references(
    step: &str,
    used: &[(String, Pos)],
    defined: &BTreeMap<String, CacheSpec>,
    errors: &mut Collector,
) {
    for (name, pos) in used {
        if defined.contains_key(name) {
            continue;
        }
        let hint = match suggest::closest(name, defined.keys().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if defined.is_empty() => "define it in a top-level `caches:` section".to_owned(),
            None => format!(
                "defined caches: {}",
                defined.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        };
        errors.error_with_hint(
            *pos,
            format!("step `{step}` uses unknown cache `{name}`"),
            hint,
        );
    }
}
