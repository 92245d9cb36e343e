//! Checks the tree's shape against the pipeline schema and builds the
//! [`Pipeline`].
//!
//! Fields that fail a check get placeholder values so the walk can go on;
//! the caller discards the pipeline whenever any error was reported. The
//! positions of names and `needs` entries are returned on the side because
//! the cross-step checks in `validate` need somewhere to point.

use std::collections::BTreeMap;

use super::error::Collector;
use super::fields::{self, Fields};
use super::yaml::{Node, Pos, Value};
use super::{caches, conditions, matrix, resources, sharding, step_fields};
use super::{Pipeline, Shards, SplitBy, Stage, Step};

const TOP_KEYS: &[&str] = &[
    "version",
    "target_minutes",
    "env",
    "caches",
    "quarantine",
    "stages",
];
const STAGE_KEYS: &[&str] = &["name", "steps"];
const STEP_KEYS: &[&str] = &[
    "name",
    "run",
    "shards",
    "timeout",
    "env",
    "outputs",
    "needs",
    "labels",
    "caches",
    "inputs",
    "cache",
    "reports",
    "split",
    "max_shards",
    "retries",
    "verify",
    "secrets",
    "log_cap",
    "resources",
    "if",
    "matrix",
    "approval",
    "services",
];

pub(super) const MAX_SHARDS: u32 = 1024;

/// Source positions parallel to `Pipeline::stages`, for cross-step checks.
#[derive(Debug, Default)]
pub(super) struct Positions {
    pub stages: Vec<StagePositions>,
}

#[derive(Debug)]
pub(super) struct StagePositions {
    /// `None` when the stage has no usable name, so it takes no part in
    /// duplicate-name checks.
    pub name: Option<Pos>,
    pub steps: Vec<StepPositions>,
}

#[derive(Debug, Clone)]
pub(super) struct StepPositions {
    /// `None` when the step has no usable name, so nothing can refer to it.
    pub name: Option<Pos>,
    /// Parallel to the step's `needs` entries.
    pub needs: Vec<Pos>,
    /// The step's `caches` entries with their positions.
    pub caches: Vec<(String, Pos)>,
    /// Where `shards: auto` is written, if it is.
    pub auto_shards: Option<Pos>,
    /// The `if:` node, for name checks once the pipeline's `env` is known.
    pub condition: Option<Node>,
    /// The name as written, for a step made from a `matrix:` (so `needs`
    /// naming it waits for every combination).
    pub matrix_of: Option<String>,
}

pub(super) fn pipeline(root: &Node, errors: &mut Collector) -> (Pipeline, Positions) {
    let mut pipeline = Pipeline {
        version: 1,
        target_minutes: None,
        quarantine: None,
        env: BTreeMap::new(),
        caches: BTreeMap::new(),
        stages: Vec::new(),
    };
    let mut positions = Positions::default();
    let Some(top) = Fields::of(root, "at the top level", TOP_KEYS, errors) else {
        errors.error_with_hint(
            root.pos,
            format!(
                "the pipeline file must be a mapping at the top level, found {}",
                root.describe()
            ),
            "start with `version: 1` and a `stages:` list",
        );
        return (pipeline, positions);
    };

    if let Some(node) = top.require("version", "at the top level", errors) {
        if node.integer() != Some(1) {
            errors.error_with_hint(
                node.pos,
                format!("`version` must be 1, found {}", node.describe()),
                "write `version: 1`; it is the only pipeline format version",
            );
        }
    }
    if let Some(node) = top.get("target_minutes") {
        pipeline.target_minutes = fields::integer(
            node,
            "target_minutes",
            (1, u32::MAX),
            "a positive integer",
            errors,
        );
    }
    if let Some(node) = top.get("quarantine") {
        pipeline.quarantine = sharding::quarantine(node, errors);
    }
    if let Some(node) = top.get("env") {
        pipeline.env = fields::env(node, errors).unwrap_or_default();
    }
    if let Some(node) = top.get("caches") {
        pipeline.caches = caches::section(node, errors);
    }
    if let Some(node) = top.require("stages", "at the top level", errors) {
        stages(node, &mut pipeline, &mut positions, errors);
    }
    matrix_needs(&mut pipeline, &mut positions);
    for (stage, stage_pos) in pipeline.stages.iter().zip(&positions.stages) {
        for (step, step_pos) in stage.steps.iter().zip(&stage_pos.steps) {
            caches::check_references(&step.name, &step_pos.caches, &pipeline.caches, errors);
            if let Some(node) = &step_pos.condition {
                conditions::check(step, node, &pipeline.env, errors);
            }
            if let (Some(pos), None) = (step_pos.auto_shards, pipeline.target_minutes) {
                errors.error_with_hint(
                    pos,
                    format!(
                        "`shards: auto` on step `{}` needs `target_minutes` at the top level",
                        step.name
                    ),
                    "add e.g. `target_minutes: 10`; each stage's shards aim to fit its share of it",
                );
            }
        }
    }
    (pipeline, positions)
}

/// A `needs` entry naming a matrix step by the name it was written with
/// stands for every combination.
fn matrix_needs(pipeline: &mut Pipeline, positions: &mut Positions) {
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (stage, stage_pos) in pipeline.stages.iter().zip(&positions.stages) {
        for (step, step_pos) in stage.steps.iter().zip(&stage_pos.steps) {
            if let Some(base) = &step_pos.matrix_of {
                families
                    .entry(base.clone())
                    .or_default()
                    .push(step.name.clone());
            }
        }
    }
    if families.is_empty() {
        return;
    }
    for (stage, stage_pos) in pipeline.stages.iter_mut().zip(&mut positions.stages) {
        for (step, step_pos) in stage.steps.iter_mut().zip(&mut stage_pos.steps) {
            let Some(needs) = &step.needs else { continue };
            let mut names = Vec::new();
            let mut at = Vec::new();
            for (name, pos) in needs.iter().zip(&step_pos.needs) {
                match families.get(name) {
                    Some(members) => {
                        names.extend(members.iter().cloned());
                        at.extend(std::iter::repeat_n(*pos, members.len()));
                    }
                    None => {
                        names.push(name.clone());
                        at.push(*pos);
                    }
                }
            }
            step.needs = Some(names);
            step_pos.needs = at;
        }
    }
}

fn stages(node: &Node, pipeline: &mut Pipeline, positions: &mut Positions, errors: &mut Collector) {
    let Value::Sequence(items) = &node.value else {
        errors.error_with_hint(
            node.pos,
            format!(
                "`stages` must be a sequence of stages, found {}",
                node.describe()
            ),
            "write each stage as `- name: ...` followed by its `steps:`",
        );
        return;
    };
    if items.is_empty() {
        errors.error_with_hint(
            node.pos,
            "`stages` must not be empty",
            "add at least one stage with a `name` and `steps`",
        );
    }
    for item in items {
        if let Some((stage, stage_positions)) = stage(item, errors) {
            pipeline.stages.push(stage);
            positions.stages.push(stage_positions);
        }
    }
}

fn stage(node: &Node, errors: &mut Collector) -> Option<(Stage, StagePositions)> {
    let Some(map) = Fields::of(node, "in stage", STAGE_KEYS, errors) else {
        errors.error_with_hint(
            node.pos,
            format!(
                "each stage must be a mapping with `name` and `steps`, found {}",
                node.describe()
            ),
            "write `- name: build` and indent `steps:` under it",
        );
        return None;
    };
    let mut name = None;
    let mut name_pos = None;
    if let Some(node) = map.require("name", "in stage", errors) {
        if let Some(text) = fields::string(node, "name", errors) {
            if text.trim().is_empty() {
                errors.error(node.pos, "stage `name` must not be empty");
            } else {
                name_pos = Some(node.pos);
            }
            name = Some(text);
        }
    }
    let owner = match &name {
        Some(name) => format!("in stage `{name}`"),
        None => "in stage".to_owned(),
    };
    let name = name.unwrap_or_default();
    let mut stage = Stage {
        name: name.clone(),
        steps: Vec::new(),
    };
    let mut positions = StagePositions {
        name: name_pos,
        steps: Vec::new(),
    };
    let Some(steps_node) = map.require("steps", &owner, errors) else {
        return Some((stage, positions));
    };
    let Value::Sequence(items) = &steps_node.value else {
        errors.error_with_hint(
            steps_node.pos,
            format!(
                "`steps` must be a non-empty sequence of steps, found {}",
                steps_node.describe()
            ),
            "write each step as `- name: ...` with its `run:` command",
        );
        return Some((stage, positions));
    };
    if items.is_empty() {
        errors.error_with_hint(
            steps_node.pos,
            format!("stage `{name}` has no steps"),
            "add at least one step, or remove the stage",
        );
    }
    for item in items {
        for (step, step_positions) in step(item, &name, errors) {
            stage.steps.push(step);
            positions.steps.push(step_positions);
        }
    }
    Some((stage, positions))
}

/// The step a node declares — or, with `matrix:`, one per combination.
fn step(node: &Node, stage: &str, errors: &mut Collector) -> Vec<(Step, StepPositions)> {
    let Some(map) = Fields::of(node, "in step", STEP_KEYS, errors) else {
        errors.error_with_hint(
            node.pos,
            format!(
                "each step must be a mapping with at least `name` and `run`, found {}",
                node.describe()
            ),
            "write `- name: compile` and indent `run: ...` under it",
        );
        return Vec::new();
    };
    let mut positions = StepPositions {
        name: None,
        needs: Vec::new(),
        caches: map
            .get("caches")
            .map(|node| caches::step_caches(node, errors))
            .unwrap_or_default(),
        auto_shards: None,
        condition: map.get("if").cloned(),
        matrix_of: None,
    };
    let name = map
        .require("name", "in step", errors)
        .and_then(|node| step_name(node, errors).map(|name| (name, node.pos)));
    let owner = match &name {
        Some((name, pos)) => {
            positions.name = Some(*pos);
            format!("in step `{name}`")
        }
        None => "in step".to_owned(),
    };
    let run = map.require("run", &owner, errors).and_then(|node| {
        let text = fields::string(node, "run", errors)?;
        if text.trim().is_empty() {
            errors.error(node.pos, "`run` must not be empty");
        }
        Some(text)
    });
    let shards = sharding::shards(map.get("shards"), map.get("max_shards"), errors);
    let split = map
        .get("split")
        .and_then(|node| sharding::split(node, errors));
    let retries = map
        .get("retries")
        .map_or((0, sharding::DEFAULT_INFRA_RETRIES), |node| {
            sharding::retries(node, errors)
        });
    if let (Shards::Auto { .. }, Some(node)) = (shards, map.get("shards")) {
        positions.auto_shards = Some(node.pos);
        if map.get("split").is_none() {
            errors.error_with_hint(
                node.pos,
                "`shards: auto` needs `split:` so there are items to learn durations for",
                "add `split: { files: GLOB }` or `split: { list: COMMAND }`, or write a fixed `shards: N`",
            );
        }
    }
    let needs = map
        .get("needs")
        .and_then(|node| fields::string_list(node, "needs", "step names", errors))
        .map(|entries| {
            entries
                .into_iter()
                .map(|(name, pos)| {
                    positions.needs.push(pos);
                    name
                })
                .collect()
        });
    let step = Step {
        name: name.map(|(name, _)| name).unwrap_or_default(),
        stage: stage.to_owned(),
        run: run.unwrap_or_default(),
        shards,
        timeout: map
            .get("timeout")
            .and_then(|node| fields::timeout(node, errors)),
        env: map
            .get("env")
            .and_then(|node| fields::env(node, errors))
            .unwrap_or_default(),
        outputs: map
            .get("outputs")
            .and_then(|node| step_fields::outputs(node, errors))
            .unwrap_or_default(),
        needs,
        labels: map
            .get("labels")
            .and_then(|node| fields::string_list(node, "labels", "runner labels", errors))
            .map(|labels| labels.into_iter().map(|(label, _)| label).collect())
            .unwrap_or_default(),
        caches: positions.caches.iter().map(|(n, _)| n.clone()).collect(),
        inputs: map
            .get("inputs")
            .map(|node| caches::inputs(node, errors))
            .unwrap_or_default(),
        cache: map
            .get("cache")
            .and_then(|node| caches::enabled(node, errors)),
        split: split.as_ref().map(|(s, _)| s.clone()),
        split_by: split.map_or(SplitBy::Timings, |(_, by)| by),
        flaky_retries: retries.0,
        infra_retries: retries.1,
        verify: map
            .get("verify")
            .map(|node| step_fields::checks(node, errors))
            .unwrap_or_default(),
        secrets: map
            .get("secrets")
            .map(|node| step_fields::secret_names(node, errors))
            .unwrap_or_default(),
        log_cap: map
            .get("log_cap")
            .and_then(|node| step_fields::size(node, "log_cap", errors)),
        condition: map
            .get("if")
            .and_then(|node| conditions::parse(node, errors)),
        matrix: BTreeMap::new(),
        services: map
            .get("services")
            .map(|node| step_fields::services(node, errors))
            .unwrap_or_default(),
        approval: map
            .get("approval")
            .and_then(|node| step_fields::approval(node, errors)),
        resources: map
            .get("resources")
            .and_then(|node| resources::resources(node, errors))
            .unwrap_or_default(),
        reports: map
            .get("reports")
            .and_then(|node| fields::workspace_paths(node, "reports", "report", errors))
            .map(|paths| paths.into_iter().map(|(p, _)| p).collect())
            .unwrap_or_default(),
    };
    match map.get("matrix") {
        Some(node) => match matrix::parse(node, errors) {
            Some(m) => matrix::expand(step, positions, &m, errors),
            None => Vec::new(),
        },
        None => {
            let pos = positions.name.unwrap_or(map.pos);
            matrix::reject_templates(&step, pos, errors);
            vec![(step, positions)]
        }
    }
}

/// Step names appear in `needs`, logs and artifact paths, so they are kept
/// to characters that are safe in all three.
fn step_name(node: &Node, errors: &mut Collector) -> Option<String> {
    let name = fields::string(node, "name", errors)?;
    if name.is_empty() {
        errors.error(node.pos, "step `name` must not be empty");
        return None;
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if !name.chars().all(allowed) {
        errors.error_with_hint(
            node.pos,
            format!("invalid step name `{name}`"),
            "step names may only contain letters, digits, `_`, `.` and `-`",
        );
    }
    // Still usable as a name: `needs` entries naming it should resolve
    // rather than pile up "unknown step" errors on top of this one.
    Some(name)
}
