//! `resources: { memory: 2GiB, cpus: 1.5 }`: limits for each shard's
//! cgroup on runners that can enforce them (runners that cannot say so in
//! the shard's log and in `ListRunners`).

use super::error::Collector;
use super::fields::{self, Fields};
use super::yaml::{Node, ScalarKind};
use super::Resources;

/// Below this a shard cannot even start a shell.
const MIN_MEMORY: u64 = 4 << 20;
const MAX_CPUS: f64 = 1024.0;

pub(super) fn resources(node: &Node, errors: &mut Collector) -> Option<Resources> {
    let map = Fields::of(node, "in `resources`", &["memory", "cpus"], errors)?;
    let memory = map.get("memory").and_then(|n| memory(n, errors));
    let cpus = map.get("cpus").and_then(|n| cpus(n, errors));
    Some(Resources {
        memory_bytes: memory,
        cpu_millis: cpus,
    })
}

fn memory(node: &Node, errors: &mut Collector) -> Option<u64> {
    let text = fields::string(node, "memory", errors)?;
    match text.parse::<bytesize::ByteSize>() {
        Ok(s) if s.as_u64() >= MIN_MEMORY => Some(s.as_u64()),
        Ok(_) => {
            errors.error(
                node.pos,
                format!("`memory` must be at least 4MiB, found `{text}`"),
            );
            None
        }
        Err(_) => {
            errors.error_with_hint(
                node.pos,
                format!("`memory` must be a size, found `{text}`"),
                "write e.g. `2GiB` or `512MiB`",
            );
            None
        }
    }
}

fn cpus(node: &Node, errors: &mut Collector) -> Option<u32> {
    let number = match node.scalar_kind() {
        Some(ScalarKind::Integer | ScalarKind::Float) => {
            node.scalar().and_then(|t| t.parse::<f64>().ok())
        }
        _ => None,
    };
    match number {
        Some(n) if (0.001..=MAX_CPUS).contains(&n) => Some((n * 1000.0).round() as u32),
        _ => {
            errors.error_with_hint(
                node.pos,
                format!(
                    "`cpus` must be a number of CPUs from 0.001 to {MAX_CPUS}, found {}",
                    node.describe()
                ),
                "write e.g. `cpus: 1.5`",
            );
            None
        }
    }
}
