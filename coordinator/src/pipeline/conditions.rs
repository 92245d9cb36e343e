//! `if:` on a step: parsed where it is written, its names checked once
//! the pipeline's `env` is known, every error at the column it concerns.

use std::collections::{BTreeMap, BTreeSet};

use super::condition::{Condition, ConditionError, Scope};
use super::error::Collector;
use super::fields;
use super::yaml::Node;
use super::Step;
use buildfleet_model::CONTEXT_VARS;

/// The `if:` of a step, parsed.
pub(super) fn parse(node: &Node, errors: &mut Collector) -> Option<Condition> {
    let text = fields::string(node, "if", errors)?;
    match Condition::parse(&text) {
        Ok(condition) => Some(condition),
        Err(e) => {
            report(node, &e, errors);
            None
        }
    }
}

/// Reports names and functions the step's condition does not know.
pub(super) fn check(
    step: &Step,
    node: &Node,
    pipeline_env: &BTreeMap<String, String>,
    errors: &mut Collector,
) {
    let Some(condition) = &step.condition else {
        return;
    };
    let env = scope_env(step, pipeline_env);
    let matrix: BTreeSet<String> = step.matrix.keys().cloned().collect();
    for e in condition.check(&Scope {
        env: &env,
        matrix: &matrix,
    }) {
        report(node, &e, errors);
    }
}

/// The variables `env.NAME` may name: what the step's environment is
/// sure to hold when its condition is evaluated.
fn scope_env(step: &Step, pipeline_env: &BTreeMap<String, String>) -> BTreeSet<String> {
    pipeline_env
        .keys()
        .chain(step.env.keys())
        .cloned()
        .chain(CONTEXT_VARS.iter().map(|v| (*v).to_owned()))
        .chain(["BUILDFLEET_STEP".to_owned()])
        .collect()
}

fn report(node: &Node, e: &ConditionError, errors: &mut Collector) {
    let message = format!("in `if`: {}", e.message);
    // A block scalar's columns cannot be told; say where in the text.
    let (pos, message) = match node.text_pos(e.offset) {
        Some(pos) => (pos, message),
        None => (
            node.pos,
            format!("{message} (at character {} of the condition)", e.offset + 1),
        ),
    };
    match &e.hint {
        Some(hint) => errors.error_with_hint(pos, message, hint.clone()),
        None => errors.error(pos, message),
    }
}
