//! The fields that say how a step is cut into shards and how its tests are
//! treated: `shards`, `max_shards`, `split`, `retries`, and the top-level
//! `quarantine` file.

use super::error::Collector;
use super::fields::{self, Fields};
use super::parse::MAX_SHARDS;
use super::yaml::Node;
use super::{Shards, Split, SplitBy};

/// `max_shards` when `shards: auto` gives none: enough for large suites, and
/// the runner slots that exist cap it anyway.
pub(super) const DEFAULT_AUTO_MAX: u32 = 64;

/// Flaky re-runs beyond this hide real failures more than they help.
const MAX_FLAKY_RETRIES: u32 = 5;

/// `shards: N | auto` together with `max_shards`.
pub(super) fn shards(
    shards: Option<&Node>,
    max_shards: Option<&Node>,
    errors: &mut Collector,
) -> Shards {
    let range = format!("an integer from 1 to {MAX_SHARDS}");
    let max =
        max_shards.and_then(|n| fields::integer(n, "max_shards", (1, MAX_SHARDS), &range, errors));
    let Some(node) = shards else {
        if let (Some(node), Some(_)) = (max_shards, max) {
            errors.error_with_hint(
                node.pos,
                "`max_shards` only applies to `shards: auto`",
                "write `shards: auto` to let history choose the count, or drop `max_shards`",
            );
        }
        return Shards::Fixed(1);
    };
    if node.scalar() == Some("auto") {
        return Shards::Auto {
            max: max.unwrap_or(DEFAULT_AUTO_MAX),
        };
    }
    let fixed = match node.integer() {
        Some(_) => fields::integer(node, "shards", (1, MAX_SHARDS), &range, errors),
        None => {
            errors.error_with_hint(
                node.pos,
                format!(
                    "`shards` must be {range} or `auto`, found {}",
                    node.describe()
                ),
                "write `shards: 4`, or `shards: auto` with `split:` and `target_minutes`",
            );
            None
        }
    };
    if let (Some(node), Some(_)) = (max_shards, max) {
        errors.error_with_hint(
            node.pos,
            "`max_shards` only applies to `shards: auto`",
            "drop `max_shards`, or write `shards: auto`",
        );
    }
    Shards::Fixed(fixed.unwrap_or(1))
}

/// `split: { files: GLOB | list: COMMAND [, by: timings | count] }`.
pub(super) fn split(node: &Node, errors: &mut Collector) -> Option<(Split, SplitBy)> {
    let map = Fields::of(node, "in `split`", &["files", "list", "by"], errors)?;
    let by = match map.get("by").map(|n| (n, n.scalar())) {
        None | Some((_, Some("timings"))) => SplitBy::Timings,
        Some((_, Some("count"))) => SplitBy::Count,
        Some((n, _)) => {
            errors.error_with_hint(
                n.pos,
                format!(
                    "`split.by` must be `timings` or `count`, found {}",
                    n.describe()
                ),
                "`timings` balances by durations learned from reports; `count` by item count",
            );
            SplitBy::Timings
        }
    };
    split_source(node, &map, errors).map(|s| (s, by))
}

fn split_source(node: &Node, map: &Fields<'_>, errors: &mut Collector) -> Option<Split> {
    match (map.get("files"), map.get("list")) {
        (Some(_), Some(list)) => {
            errors.error_with_hint(
                list.pos,
                "`split` takes either `files` or `list`, not both",
                "keep `files: GLOB` for files of the tree, or `list: COMMAND` for items a command prints",
            );
            None
        }
        (None, Some(list)) => {
            let command = fields::string(list, "list", errors)?;
            if command.trim().is_empty() {
                errors.error(list.pos, "`split.list` must not be empty");
                return None;
            }
            Some(Split::List(command))
        }
        (Some(files), None) => files_glob(files, errors).map(Split::Files),
        (None, None) => {
            errors.error_with_hint(
                node.pos,
                "`split` needs `files` or `list`",
                "write `split: { files: \"tests/**/test_*.py\" }` or `split: { list: \"pytest --collect-only -q | grep ::\" }`",
            );
            None
        }
    }
}

fn files_glob(files: &Node, errors: &mut Collector) -> Option<String> {
    let glob = fields::string(files, "files", errors)?;
    match globset::Glob::new(&glob) {
        Ok(_) if !glob.starts_with('/') => Some(glob),
        Ok(_) => {
            errors.error(
                files.pos,
                format!(
                    "`split.files` glob `{glob}` is absolute; globs are relative to the workspace"
                ),
            );
            None
        }
        Err(e) => {
            errors.error(
                files.pos,
                format!("invalid glob `{glob}` in `split.files`: {}", e.kind()),
            );
            None
        }
    }
}

/// Lost runners are re-tried this many times unless the step says otherwise.
pub(super) const DEFAULT_INFRA_RETRIES: u32 = 2;

const MAX_INFRA_RETRIES: u32 = 10;

/// `retries: { flaky: N, infra: M }` → (flaky, infra).
pub(super) fn retries(node: &Node, errors: &mut Collector) -> (u32, u32) {
    let Some(map) = Fields::of(node, "in `retries`", &["flaky", "infra"], errors) else {
        return (0, DEFAULT_INFRA_RETRIES);
    };
    let range = |max: u32| format!("an integer from 0 to {max}");
    let flaky = map.get("flaky").and_then(|n| {
        fields::integer(
            n,
            "flaky",
            (0, MAX_FLAKY_RETRIES),
            &range(MAX_FLAKY_RETRIES),
            errors,
        )
    });
    let infra = map.get("infra").and_then(|n| {
        fields::integer(
            n,
            "infra",
            (0, MAX_INFRA_RETRIES),
            &range(MAX_INFRA_RETRIES),
            errors,
        )
    });
    (flaky.unwrap_or(0), infra.unwrap_or(DEFAULT_INFRA_RETRIES))
}

/// `quarantine: FILE` at the top level: one path inside the workspace.
pub(super) fn quarantine(node: &Node, errors: &mut Collector) -> Option<String> {
    let path = fields::string(node, "quarantine", errors)?;
    if let Some(problem) = fields::output_path_problem(&path) {
        errors.error_with_hint(
            node.pos,
            format!("quarantine file `{path}` {problem}"),
            "name a file in the repository, e.g. `quarantine: .buildfleet/quarantine`",
        );
        return None;
    }
    Some(path)
}
