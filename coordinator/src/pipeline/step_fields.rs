//! Readers for the step keys whose values have a shape of their own:
//! `verify` checks, `approval`, sizes, secret names and outputs.

use std::time::Duration;

use super::error::Collector;
use super::fields::{self, Fields};
use super::yaml::{Node, Value};
use buildfleet_model::Check;

/// `verify: CMD`, or a list whose entries are commands or
/// `{ run: CMD, retries: N, interval: DURATION }` (a health check that gives
/// a new version time to come up).
pub(super) fn checks(node: &Node, errors: &mut Collector) -> Vec<Check> {
    let entries: Vec<&Node> = match &node.value {
        Value::Sequence(items) => items.iter().collect(),
        _ => vec![node],
    };
    entries
        .into_iter()
        .filter_map(|entry| check(entry, errors))
        .collect()
}

const CHECK_KEYS: &[&str] = &["run", "retries", "interval"];
const MAX_VERIFY_RETRIES: u32 = 100;

fn check(node: &Node, errors: &mut Collector) -> Option<Check> {
    let (command, pos, retries, interval) = match &node.value {
        Value::Mapping(_) => {
            let map = Fields::of(node, "in a `verify` check", CHECK_KEYS, errors)?;
            let run = map.require("run", "in a `verify` check", errors)?;
            let retries = match map.get("retries") {
                Some(n) => fields::integer(
                    n,
                    "retries",
                    (0, MAX_VERIFY_RETRIES),
                    "a whole number from 0 to 100",
                    errors,
                )?,
                None => 0,
            };
            let interval = match map.get("interval") {
                Some(n) => fields::duration(n, "interval", errors)?,
                None => Duration::from_secs(1),
            };
            (
                fields::string(run, "run", errors)?,
                run.pos,
                retries,
                interval,
            )
        }
        _ => (
            fields::string(node, "verify", errors)?,
            node.pos,
            0,
            Duration::ZERO,
        ),
    };
    if command.trim().is_empty() {
        errors.error(pos, "a `verify` command must not be empty");
        return None;
    }
    Some(Check {
        command,
        retries,
        interval,
    })
}

const APPROVAL_KEYS: &[&str] = &["timeout"];
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `approval: true` or `approval: { timeout: 24h }` (the default timeout).
pub(super) fn approval(node: &Node, errors: &mut Collector) -> Option<Duration> {
    if let Value::Mapping(_) = &node.value {
        let map = Fields::of(node, "in `approval`", APPROVAL_KEYS, errors)?;
        return match map.get("timeout") {
            Some(t) => fields::duration(t, "timeout", errors),
            None => Some(DEFAULT_APPROVAL_TIMEOUT),
        };
    }
    match node.scalar() {
        Some("true") => Some(DEFAULT_APPROVAL_TIMEOUT),
        Some("false") => None,
        _ => {
            errors.error_with_hint(
                node.pos,
                format!(
                    "`approval` must be true or a mapping, found {}",
                    node.describe()
                ),
                "write `approval: { timeout: 24h }`",
            );
            None
        }
    }
}

const SERVICE_KEYS: &[&str] = &["run", "ready", "ready_timeout"];
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `services: { NAME: { run, ready, ready_timeout } }`.
pub(super) fn services(node: &Node, errors: &mut Collector) -> Vec<buildfleet_model::Service> {
    let Value::Mapping(pairs) = &node.value else {
        errors.error_with_hint(
            node.pos,
            format!(
                "`services` must be a mapping of names to services, found {}",
                node.describe()
            ),
            "write `services: { db: { run: 'postgres …', ready: 'pg_isready …' } }`",
        );
        return Vec::new();
    };
    let mut out: Vec<buildfleet_model::Service> = Vec::new();
    for (key, value) in pairs {
        let Some(name) = key.scalar().filter(|n| !n.is_empty()) else {
            errors.error(
                key.pos,
                format!("service names must be strings, found {}", key.describe()),
            );
            continue;
        };
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if !valid {
            errors.error_with_hint(
                key.pos,
                format!("invalid service name `{name}`"),
                "service names become BUILDFLEET_SERVICE_<NAME>_PORT: letters, digits, `_` and `-`, starting with a letter",
            );
            continue;
        }
        let owner = format!("in service `{name}`");
        let Some(map) = Fields::of(value, &owner, SERVICE_KEYS, errors) else {
            errors.error_with_hint(
                value.pos,
                format!(
                    "service `{name}` must be a mapping with `run`, found {}",
                    value.describe()
                ),
                "write `db: { run: 'postgres …', ready: 'pg_isready …', ready_timeout: 30s }`",
            );
            continue;
        };
        let Some(run) = map
            .require("run", &owner, errors)
            .and_then(|n| fields::string(n, "run", errors))
        else {
            continue;
        };
        let ready = map
            .get("ready")
            .and_then(|n| fields::string(n, "ready", errors));
        let ready_timeout = match map.get("ready_timeout") {
            Some(n) => match fields::duration(n, "ready_timeout", errors) {
                Some(d) => d,
                None => continue,
            },
            None => DEFAULT_READY_TIMEOUT,
        };
        let service = buildfleet_model::Service {
            name: name.to_owned(),
            command: run,
            ready,
            ready_timeout,
        };
        if let Some(other) = out.iter().find(|s| s.port_var() == service.port_var()) {
            errors.error(
                key.pos,
                format!(
                    "services `{}` and `{name}` would share {}",
                    other.name,
                    service.port_var()
                ),
            );
            continue;
        }
        out.push(service);
    }
    out
}

/// More live output than any watcher reads; each runner holds the tail.
const MAX_SIZE: u64 = 1 << 30;

/// A byte size such as `1MiB` or `500KB`, from 1 KiB to 1 GiB.
pub(super) fn size(node: &Node, key: &str, errors: &mut Collector) -> Option<u64> {
    let text = fields::string(node, key, errors)?;
    match text.parse::<bytesize::ByteSize>() {
        Ok(s) if s.as_u64() > MAX_SIZE => {
            errors.error_with_hint(
                node.pos,
                format!("`{key}` must be at most 1GiB, found `{text}`"),
                "the whole log is kept in the cache anyway; the cap bounds what watchers are sent",
            );
            None
        }
        Ok(s) if s.as_u64() >= 1024 => Some(s.as_u64()),
        Ok(_) => {
            errors.error(
                node.pos,
                format!("`{key}` must be at least 1KiB, found `{text}`"),
            );
            None
        }
        Err(_) => {
            errors.error_with_hint(
                node.pos,
                format!("`{key}` must be a size, found `{text}`"),
                "write e.g. `1MiB` or `500KB`",
            );
            None
        }
    }
}

/// Secret names become environment variable names.
pub(super) fn secret_names(node: &Node, errors: &mut Collector) -> Vec<String> {
    let names = fields::string_list(node, "secrets", "secret names", errors).unwrap_or_default();
    let valid = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let mut out = Vec::new();
    for (name, pos) in names {
        if valid(&name) {
            out.push(name);
        } else {
            errors.error_with_hint(
                pos,
                format!("invalid secret name `{name}`"),
                "secret names are environment variable names: A-Z, 0-9 and `_`, not starting with a digit",
            );
        }
    }
    out
}

pub(super) fn outputs(node: &Node, errors: &mut Collector) -> Option<Vec<String>> {
    fields::workspace_paths(node, "outputs", "output", errors)
        .map(|paths| paths.into_iter().map(|(p, _)| p).collect())
}
