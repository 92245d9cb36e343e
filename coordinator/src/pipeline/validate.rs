//! Checks that span steps: unique names, `needs` that resolve to the same or
//! an earlier stage, and no dependency cycles.
//!
//! Runs even when the per-field checks found problems, so a file with both
//! kinds of mistake gets them all reported in one go.

use std::collections::HashMap;

use super::dag;
use super::error::Collector;
use super::parse::Positions;
use super::suggest;
use super::yaml::Pos;
use super::Pipeline;

/// A step that can be referred to by name.
struct Target {
    index: usize,
    stage: usize,
}

pub(super) fn pipeline(pipeline: &Pipeline, positions: &Positions, errors: &mut Collector) {
    unique_stage_names(pipeline, positions, errors);
    let targets = unique_step_names(pipeline, positions, errors);
    let edges = resolve_needs(pipeline, positions, &targets, errors);
    report_cycles(pipeline, positions, &edges, errors);
}

fn unique_stage_names(pipeline: &Pipeline, positions: &Positions, errors: &mut Collector) {
    let mut first: HashMap<&str, Pos> = HashMap::new();
    for (stage, stage_pos) in pipeline.stages.iter().zip(&positions.stages) {
        let Some(pos) = stage_pos.name else { continue };
        if let Some(first_pos) = first.get(stage.name.as_str()) {
            errors.error_with_hint(
                pos,
                format!(
                    "duplicate stage name `{}` (first defined at line {})",
                    stage.name, first_pos.line
                ),
                "stage names must be unique; rename one of them",
            );
        } else {
            first.insert(&stage.name, pos);
        }
    }
}

/// Reports duplicate step names and returns where each name is declared;
/// for a duplicated name, the first declaration is the one `needs` refers to.
fn unique_step_names<'p>(
    pipeline: &'p Pipeline,
    positions: &Positions,
    errors: &mut Collector,
) -> HashMap<&'p str, Target> {
    let mut targets: HashMap<&str, Target> = HashMap::new();
    let mut first_pos: HashMap<&str, Pos> = HashMap::new();
    let mut index = 0;
    for (stage_index, (stage, stage_pos)) in
        pipeline.stages.iter().zip(&positions.stages).enumerate()
    {
        for (step, step_pos) in stage.steps.iter().zip(&stage_pos.steps) {
            let this = index;
            index += 1;
            let Some(pos) = step_pos.name else { continue };
            if let Some(first) = first_pos.get(step.name.as_str()) {
                errors.error_with_hint(
                    pos,
                    format!(
                        "duplicate step name `{}` (first defined at line {})",
                        step.name, first.line
                    ),
                    "step names must be unique across the whole pipeline; rename one of them",
                );
                continue;
            }
            first_pos.insert(&step.name, pos);
            targets.insert(
                &step.name,
                Target {
                    index: this,
                    stage: stage_index,
                },
            );
        }
    }
    targets
}

/// Reports `needs` entries that do not resolve and returns the ones that do
/// as edges (step index → needed step indices, in the order written).
fn resolve_needs(
    pipeline: &Pipeline,
    positions: &Positions,
    targets: &HashMap<&str, Target>,
    errors: &mut Collector,
) -> Vec<Vec<usize>> {
    let mut edges = Vec::new();
    for (stage_index, (stage, stage_pos)) in
        pipeline.stages.iter().zip(&positions.stages).enumerate()
    {
        for (step, step_pos) in stage.steps.iter().zip(&stage_pos.steps) {
            let mut step_edges = Vec::new();
            let needs = step.needs.as_deref().unwrap_or_default();
            for (i, (needed, &pos)) in needs.iter().zip(&step_pos.needs).enumerate() {
                if needs[..i].contains(needed) {
                    errors.error_with_hint(
                        pos,
                        format!("`{needed}` is listed more than once in `needs`"),
                        "remove the repeated entry",
                    );
                    continue;
                }
                let Some(target) = targets.get(needed.as_str()) else {
                    let names = pipeline.steps().map(|s| s.name.as_str());
                    let message = format!("`needs` names unknown step `{needed}`");
                    match suggest::closest(needed, names) {
                        Some(close) => {
                            errors.error_with_hint(pos, message, format!("did you mean `{close}`?"))
                        }
                        None => errors.error(pos, message),
                    }
                    continue;
                };
                if target.stage > stage_index {
                    errors.error_with_hint(
                        pos,
                        format!(
                            "step `{}` needs `{needed}`, which is in the later stage `{}`",
                            step.name, pipeline.stages[target.stage].name
                        ),
                        "a step may only need steps of its own or earlier stages",
                    );
                    continue;
                }
                step_edges.push(target.index);
            }
            edges.push(step_edges);
        }
    }
    edges
}

/// Stage barriers only ever point at earlier stages, so only `needs` edges
/// can close a cycle.
fn report_cycles(
    pipeline: &Pipeline,
    positions: &Positions,
    edges: &[Vec<usize>],
    errors: &mut Collector,
) {
    let steps: Vec<_> = pipeline.steps().collect();
    let step_positions: Vec<_> = positions.stages.iter().flat_map(|s| &s.steps).collect();
    for cycle in dag::cycles(edges) {
        let (start, next) = (cycle[0], cycle[1]);
        let path: Vec<&str> = cycle.iter().map(|&i| steps[i].name.as_str()).collect();
        // Point at the `needs` entry that starts the cycle.
        let needs = steps[start].needs.as_deref().unwrap_or_default();
        let pos = needs
            .iter()
            .position(|name| *name == steps[next].name)
            .and_then(|i| step_positions[start].needs.get(i).copied())
            .or(step_positions[start].name)
            .unwrap_or(Pos::START);
        let hint = if start == next {
            "a step cannot need itself".to_owned()
        } else {
            "remove one of these `needs` entries".to_owned()
        };
        errors.error_with_hint(pos, format!("dependency cycle: {}", path.join(" → ")), hint);
    }
}
