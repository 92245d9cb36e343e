//! Typed readers for individual YAML nodes.
//!
//! Each reader reports its own error at the node it was given and returns
//! `None`, so the caller can carry on checking sibling fields and one run
//! lists every problem in the file.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::Duration;

use super::error::Collector;
use super::suggest;
use super::yaml::{Node, Pos, ScalarKind, Value};

/// The keys of one mapping, after unknown and duplicate keys were reported.
pub(super) struct Fields<'a> {
    pub pos: Pos,
    entries: Vec<(&'a str, &'a Node)>,
    /// Keys already offered as "did you mean" for a misspelt key; reporting
    /// them as missing as well would only repeat the same mistake.
    suggested: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// Checks `node` is a mapping whose keys are all in `allowed`.
    /// `context` completes "unknown key `x` …", e.g. "in stage".
    pub(super) fn of(
        node: &'a Node,
        context: &str,
        allowed: &[&'static str],
        errors: &mut Collector,
    ) -> Option<Self> {
        let Value::Mapping(pairs) = &node.value else {
            return None;
        };
        let mut entries: Vec<(&'a str, &'a Node)> = Vec::new();
        let mut first_seen: Vec<(&'a str, Pos)> = Vec::new();
        let mut suggested = Vec::new();
        for (key, value) in pairs {
            let Some(name) = mapping_key(key, errors) else {
                continue;
            };
            if let Some((_, first)) = first_seen.iter().find(|(k, _)| *k == name) {
                errors.error_with_hint(
                    key.pos,
                    format!(
                        "duplicate key `{name}` {context} (first defined at line {})",
                        first.line
                    ),
                    "remove one of them; YAML keys must be unique within a mapping",
                );
                continue;
            }
            first_seen.push((name, key.pos));
            if !allowed.contains(&name) {
                let allowed_list = allowed.join(", ");
                let hint = match suggest::closest(name, allowed.iter().copied()) {
                    Some(s) => {
                        suggested.push(s);
                        format!("did you mean `{s}`? (allowed: {allowed_list})")
                    }
                    None => format!("allowed keys: {allowed_list}"),
                };
                errors.error_with_hint(key.pos, format!("unknown key `{name}` {context}"), hint);
                continue;
            }
            entries.push((name, value));
        }
        Some(Self {
            pos: node.pos,
            entries,
            suggested,
        })
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, node)| *node)
    }

    /// Like [`Fields::get`], but a missing key is reported at the mapping
    /// that lacks it, since there is no node of its own to point at.
    pub(super) fn require(
        &self,
        key: &str,
        owner: &str,
        errors: &mut Collector,
    ) -> Option<&'a Node> {
        let node = self.get(key);
        if node.is_none() && !self.suggested.contains(&key) {
            errors.error(self.pos, format!("missing required key `{key}` {owner}"));
        }
        node
    }
}

fn mapping_key<'a>(key: &'a Node, errors: &mut Collector) -> Option<&'a str> {
    match key.scalar() {
        Some(name) if !key.is_null() => Some(name),
        _ => {
            errors.error(
                key.pos,
                format!("mapping keys must be strings, found {}", key.describe()),
            );
            None
        }
    }
}

/// A non-null scalar as text; numbers and bools are accepted as written
/// because names like `1.2` are perfectly good strings to their authors.
pub(super) fn string(node: &Node, key: &str, errors: &mut Collector) -> Option<String> {
    match node.scalar() {
        Some(text) if !node.is_null() => Some(text.to_owned()),
        _ => {
            errors.error(
                node.pos,
                format!("`{key}` must be a string, found {}", node.describe()),
            );
            None
        }
    }
}

/// An integer in `min..=max`; `expected` describes the range for the error.
pub(super) fn integer(
    node: &Node,
    key: &str,
    (min, max): (u32, u32),
    expected: &str,
    errors: &mut Collector,
) -> Option<u32> {
    match node.integer() {
        Some(n) if (i128::from(min)..=i128::from(max)).contains(&n) => u32::try_from(n).ok(),
        _ => {
            errors.error(
                node.pos,
                format!("`{key}` must be {expected}, found {}", node.describe()),
            );
            None
        }
    }
}

/// A sequence of non-empty strings, each with its position so later checks
/// (such as `needs` resolution) can point at the exact entry.
pub(super) fn string_list(
    node: &Node,
    key: &str,
    what: &str,
    errors: &mut Collector,
) -> Option<Vec<(String, Pos)>> {
    let Value::Sequence(items) = &node.value else {
        let hint = match node.scalar_kind() {
            Some(ScalarKind::String) => format!(
                "write `{key}: [{}]` for a single entry",
                node.scalar().unwrap_or_default()
            ),
            _ => format!("write `{key}: [first, second]`"),
        };
        errors.error_with_hint(
            node.pos,
            format!(
                "`{key}` must be a sequence of {what}, found {}",
                node.describe()
            ),
            hint,
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item.scalar() {
            Some(text) if !item.is_null() && !text.trim().is_empty() => {
                out.push((text.to_owned(), item.pos));
            }
            _ => errors.error(
                item.pos,
                format!(
                    "each entry of `{key}` must be a non-empty string, found {}",
                    item.describe()
                ),
            ),
        }
    }
    Some(out)
}

/// Environment variables: names a shell accepts, scalar values rendered as
/// written, since the step will see them as strings anyway.
pub(super) fn env(node: &Node, errors: &mut Collector) -> Option<BTreeMap<String, String>> {
    let Value::Mapping(pairs) = &node.value else {
        errors.error(
            node.pos,
            format!(
                "`env` must be a mapping of variable names to values, found {}",
                node.describe()
            ),
        );
        return None;
    };
    let mut vars = BTreeMap::new();
    let mut first_line = BTreeMap::new();
    for (key, value) in pairs {
        let Some(name) = mapping_key(key, errors) else {
            continue;
        };
        if let Some(line) = first_line.get(name) {
            errors.error(
                key.pos,
                format!("duplicate key `{name}` in env (first defined at line {line})"),
            );
            continue;
        }
        first_line.insert(name, key.pos.line);
        if !is_env_name(name) {
            errors.error_with_hint(
                key.pos,
                format!("`{name}` is not a valid environment variable name"),
                "use letters, digits and `_`, not starting with a digit",
            );
        }
        match value.scalar() {
            Some(text) if !value.is_null() => {
                vars.insert(name.to_owned(), text.to_owned());
            }
            _ => errors.error_with_hint(
                value.pos,
                format!(
                    "env value of `{name}` must be a string, number or bool, found {}",
                    value.describe()
                ),
                "write `\"\"` for an empty value",
            ),
        }
    }
    Some(vars)
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

const TIMEOUT_HINT: &str =
    "use a duration such as \"30s\", \"10m\" or \"1h 30m\", or a whole number of seconds";

/// A positive duration, given as a humantime string or whole seconds.
pub(super) fn duration(node: &Node, key: &str, errors: &mut Collector) -> Option<Duration> {
    let parsed = match (node.integer(), node.scalar_kind(), node.scalar()) {
        (Some(seconds), _, _) => u64::try_from(seconds)
            .map(Duration::from_secs)
            .map_err(|_| "a negative number of seconds".to_owned()),
        (None, Some(ScalarKind::String), Some(text)) => {
            let text = text.trim();
            match text.parse::<u64>() {
                Ok(seconds) => Ok(Duration::from_secs(seconds)),
                Err(_) => humantime::parse_duration(text).map_err(|e| e.to_string()),
            }
        }
        _ => {
            errors.error_with_hint(
                node.pos,
                format!("`{key}` must be a duration, found {}", node.describe()),
                TIMEOUT_HINT,
            );
            return None;
        }
    };
    match parsed {
        Ok(duration) if !duration.is_zero() => Some(duration),
        Ok(_) => {
            errors.error_with_hint(
                node.pos,
                format!("`{key}` must be longer than zero"),
                TIMEOUT_HINT,
            );
            None
        }
        Err(reason) => {
            errors.error_with_hint(
                node.pos,
                format!("invalid `{key}` {}: {reason}", node.describe()),
                TIMEOUT_HINT,
            );
            None
        }
    }
}

/// A step's `timeout`.
pub(super) fn timeout(node: &Node, errors: &mut Collector) -> Option<Duration> {
    duration(node, "timeout", errors)
}

/// Why an output path is unsafe to collect, if it is: outputs are read from
/// the step's workspace, so anything that could leave it is refused.
/// A list of paths that must stay inside the workspace, each with its
/// position; `noun` names an entry in errors ("output path `x` …").
pub(super) fn workspace_paths(
    node: &Node,
    key: &str,
    noun: &str,
    errors: &mut Collector,
) -> Option<Vec<(String, Pos)>> {
    let entries = string_list(node, key, "relative paths", errors)?;
    for (path, pos) in &entries {
        if let Some(problem) = output_path_problem(path) {
            errors.error_with_hint(
                *pos,
                format!("{noun} path `{path}` {problem}"),
                format!("`{key}` must be relative paths inside the workspace"),
            );
        }
    }
    Some(entries)
}

pub(super) fn output_path_problem(path: &str) -> Option<&'static str> {
    if path.starts_with('/') || path.starts_with('\\') || Path::new(path).is_absolute() {
        return Some("is absolute");
    }
    let mut depth = 0usize;
    for component in Path::new(path).components() {
        match component {
            Component::ParentDir if depth == 0 => return Some("escapes the workspace with `..`"),
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Some("is absolute"),
        }
    }
    None
}
