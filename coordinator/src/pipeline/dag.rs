//! The step dependency graph: stage barriers, `needs`, and cycle finding.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::Pipeline;

/// See [`Pipeline::dependencies`]. Lists follow declaration order rather
/// than the order `needs` was written in, so equal pipelines always schedule
/// the same way.
pub(super) fn dependencies(pipeline: &Pipeline) -> BTreeMap<String, Vec<String>> {
    let order: HashMap<&str, usize> = pipeline
        .steps()
        .enumerate()
        .map(|(i, step)| (step.name.as_str(), i))
        .collect();
    let mut deps = BTreeMap::new();
    for (index, stage) in pipeline.stages.iter().enumerate() {
        for step in &stage.steps {
            let list = match &step.needs {
                Some(needs) => {
                    let mut needed: Vec<&String> = needs.iter().collect();
                    needed.sort_by_key(|name| order.get(name.as_str()).copied());
                    needed.dedup();
                    needed.into_iter().cloned().collect()
                }
                None if index == 0 => Vec::new(),
                None => pipeline.stages[index - 1]
                    .steps
                    .iter()
                    .map(|s| s.name.clone())
                    .collect(),
            };
            deps.insert(step.name.clone(), list);
        }
    }
    deps
}

/// One cycle per strongly connected component of `edges` (node → the nodes
/// it depends on), each as a path that starts and ends at the component's
/// lowest-numbered node, e.g. `[a, b, a]`; a self-loop gives `[a, a]`.
///
/// Reporting one shortest cycle per component, rather than every cycle,
/// keeps a tangle of `needs` from flooding the error list. Quadratic in the
/// worst case, which is fine for pipelines of a few thousand steps.
pub(super) fn cycles(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut reverse = vec![Vec::new(); n];
    for (from, targets) in edges.iter().enumerate() {
        for &to in targets {
            reverse[to].push(from);
        }
    }
    let mut done = vec![false; n];
    let mut found = Vec::new();
    for start in 0..n {
        if done[start] {
            continue;
        }
        let Some(path) = shortest_cycle_through(start, edges) else {
            continue;
        };
        // Members of the same component cannot start another report.
        let forward = reachable(start, edges);
        let backward = reachable(start, &reverse);
        for node in 0..n {
            if forward[node] && backward[node] {
                done[node] = true;
            }
        }
        found.push(path);
    }
    found
}

/// Breadth-first from `start`'s successors back to `start`.
fn shortest_cycle_through(start: usize, edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut parent: Vec<Option<usize>> = vec![None; edges.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &edges[node] {
            if next == start {
                let mut path = vec![start];
                let mut cursor = node;
                while cursor != start {
                    path.push(cursor);
                    cursor = parent[cursor].expect("every queued node but the start has a parent");
                }
                path[1..].reverse();
                path.push(start);
                return Some(path);
            }
            if parent[next].is_none() {
                parent[next] = Some(node);
                queue.push_back(next);
            }
        }
    }
    None
}

fn reachable(start: usize, edges: &[Vec<usize>]) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        for &next in &edges[node] {
            if !seen[next] {
                seen[next] = true;
                stack.push(next);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_one_shortest_cycle_per_component() {
        // 0 → 1 → 2 → 0 and 1 → 0 share a component; 3 needs itself; 4 is free.
        let edges = vec![vec![1], vec![2, 0], vec![0], vec![3], vec![0]];
        assert_eq!(cycles(&edges), vec![vec![0, 1, 0], vec![3, 3]]);
    }

    #[test]
    fn acyclic_graph_has_no_cycles() {
        let edges = vec![vec![], vec![0], vec![0, 1]];
        assert!(cycles(&edges).is_empty());
    }

    #[test]
    fn cycle_path_follows_edges_in_order() {
        let edges = vec![vec![1], vec![2], vec![3], vec![0]];
        assert_eq!(cycles(&edges), vec![vec![0, 1, 2, 3, 0]]);
    }
}
