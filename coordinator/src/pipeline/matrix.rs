//! `matrix:` on a step: one step per combination of values, named
//! `test (python=3.11, db=pg15)`, with `${{ matrix.KEY }}` expanded in its
//! `run`, `env`, `labels` and `verify`, and `matrix.KEY` readable by its
//! `if:`. The expansion happens when the file is parsed, so every later
//! part — validation, scheduling, caching, history — sees plain steps,
//! and a combination's values are part of its action digest.

use std::collections::BTreeMap;

use super::error::Collector;
use super::parse::StepPositions;
use super::yaml::{Node, Pos, Value};
use super::Step;

/// More combinations than a pipeline means on purpose.
const MAX_COMBINATIONS: usize = 256;
/// Combinations the axes may make before `exclude` removes any. Every one
/// is built before `exclude` can drop it, so this bounds what a short file
/// costs: eight axes of ten values are 10^8 combinations, gigabytes.
const MAX_PRODUCT: usize = 16 * MAX_COMBINATIONS;

/// `matrix:` as written.
#[derive(Debug)]
pub(super) struct Matrix {
    /// The axes in the order written, each with its values.
    axes: Vec<(String, Vec<String>)>,
    include: Vec<Vec<(String, String)>>,
    exclude: Vec<(Vec<(String, String)>, Pos)>,
    pos: Pos,
}

type Combination = Vec<(String, String)>;

pub(super) fn parse(node: &Node, errors: &mut Collector) -> Option<Matrix> {
    let Value::Mapping(pairs) = &node.value else {
        errors.error_with_hint(
            node.pos,
            format!(
                "`matrix` must be a mapping of keys to lists of values, found {}",
                node.describe()
            ),
            "write e.g. `matrix: { python: ['3.11', '3.12'], db: [pg15, pg16] }`",
        );
        return None;
    };
    let mut matrix = Matrix {
        axes: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        pos: node.pos,
    };
    let mut any_axis = false;
    for (key, value) in pairs {
        let Some(name) = key.scalar().filter(|_| !key.is_null()) else {
            errors.error(
                key.pos,
                format!("matrix keys must be strings, found {}", key.describe()),
            );
            continue;
        };
        match name {
            "include" => {
                matrix.include = entries(value, "include", errors)
                    .into_iter()
                    .map(|(c, _)| c)
                    .collect()
            }
            "exclude" => matrix.exclude = entries(value, "exclude", errors),
            _ => {
                any_axis = true;
                if !valid_key(name) {
                    errors.error_with_hint(
                        key.pos,
                        format!("invalid matrix key `{name}`"),
                        "matrix keys may contain letters, digits, `_` and `-`, starting with a letter",
                    );
                    continue;
                }
                if matrix.axes.iter().any(|(k, _)| k == name) {
                    errors.error(key.pos, format!("duplicate matrix key `{name}`"));
                    continue;
                }
                let values = match &value.value {
                    Value::Sequence(items) if !items.is_empty() => items
                        .iter()
                        .filter_map(|item| scalar(item, name, errors))
                        .collect(),
                    other => {
                        let found = match other {
                            Value::Sequence(_) => "an empty list".to_owned(),
                            _ => value.describe().to_string(),
                        };
                        errors.error_with_hint(
                            value.pos,
                            format!(
                                "matrix key `{name}` must list at least one value, found {found}"
                            ),
                            format!("write `{name}: [a, b]`"),
                        );
                        continue;
                    }
                };
                matrix.axes.push((name.to_owned(), values));
            }
        }
    }
    for (entry, pos) in &matrix.exclude {
        for (k, _) in entry {
            if !matrix.axes.iter().any(|(axis, _)| axis == k) {
                errors.error_with_hint(
                    *pos,
                    format!("`exclude` names `{k}`, which is not a matrix key"),
                    "an exclude entry matches combinations by the matrix's own keys",
                );
            }
        }
    }
    if matrix.axes.is_empty() && matrix.include.is_empty() {
        // A key whose values were wrong was reported already.
        if !any_axis {
            errors.error(
                node.pos,
                "`matrix` needs at least one key with values, or `include`",
            );
        }
        return None;
    }
    Some(matrix)
}

fn valid_key(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// A value becomes part of a step name, which history keys and logs
/// carry: no control characters.
fn scalar(node: &Node, key: &str, errors: &mut Collector) -> Option<String> {
    match node.scalar() {
        Some(text) if text.chars().any(char::is_control) => {
            errors.error(
                node.pos,
                format!("a value of matrix key `{key}` must not contain control characters"),
            );
            None
        }
        Some(text) if !node.is_null() => Some(text.to_owned()),
        _ => {
            errors.error(
                node.pos,
                format!(
                    "a value of matrix key `{key}` must be a scalar, found {}",
                    node.describe()
                ),
            );
            None
        }
    }
}

/// `include:` / `exclude:`: a list of mappings from key to value.
fn entries(node: &Node, what: &str, errors: &mut Collector) -> Vec<(Combination, Pos)> {
    let Value::Sequence(items) = &node.value else {
        errors.error(
            node.pos,
            format!(
                "`{what}` must be a list of mappings, found {}",
                node.describe()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Mapping(pairs) = &item.value else {
            errors.error(
                item.pos,
                format!(
                    "each `{what}` entry must be a mapping of matrix keys to values, found {}",
                    item.describe()
                ),
            );
            continue;
        };
        let mut entry = Vec::new();
        for (k, v) in pairs {
            let (Some(k), Some(v)) = (
                k.scalar(),
                scalar(v, k.scalar().unwrap_or_default(), errors),
            ) else {
                continue;
            };
            if !valid_key(k) {
                errors.error(item.pos, format!("invalid matrix key `{k}` in `{what}`"));
                continue;
            }
            entry.push((k.to_owned(), v));
        }
        out.push((entry, item.pos));
    }
    out
}

impl Matrix {
    /// How many combinations the axes make before `exclude`; saturates.
    fn product(&self) -> usize {
        self.axes
            .iter()
            .fold(1usize, |n, (_, values)| n.saturating_mul(values.len()))
    }

    /// Every combination, in the order a reader expects: the product of
    /// the axes (last key varying fastest), without the excluded ones,
    /// then what `include` adds. An include entry that agrees with
    /// product combinations on their keys adds its other keys to them;
    /// one that agrees with none is a combination of its own.
    fn combinations(&self) -> Vec<Combination> {
        let mut combos: Vec<Combination> = vec![Vec::new()];
        for (key, values) in &self.axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut next = c.clone();
                        next.push((key.clone(), v.clone()));
                        next
                    })
                })
                .collect();
        }
        if self.axes.is_empty() {
            combos.clear();
        }
        combos.retain(|c| {
            !self
                .exclude
                .iter()
                .any(|(ex, _)| ex.iter().all(|pair| c.contains(pair)))
        });
        let product = combos.len();
        for inc in &self.include {
            let is_axis = |k: &str| self.axes.iter().any(|(a, _)| a == k);
            let (shared, extra): (Vec<_>, Vec<_>) =
                inc.iter().cloned().partition(|(k, _)| is_axis(k));
            let mut matched = false;
            for c in combos.iter_mut().take(product) {
                if shared.iter().all(|pair| c.contains(pair)) && !shared.is_empty() {
                    matched = true;
                    for (k, v) in &extra {
                        if !c.iter().any(|(ck, _)| ck == k) {
                            c.push((k.clone(), v.clone()));
                        }
                    }
                }
            }
            if !matched && !combos.contains(inc) {
                combos.push(inc.clone());
            }
        }
        combos
    }
}

/// The steps `step` stands for under `matrix`: one per combination, each
/// with its name, its values, and `${{ matrix.KEY }}` expanded.
pub(super) fn expand(
    step: Step,
    positions: StepPositions,
    matrix: &Matrix,
    errors: &mut Collector,
) -> Vec<(Step, StepPositions)> {
    if matrix.product() > MAX_PRODUCT {
        errors.error_with_hint(
            matrix.pos,
            format!(
                "the matrix of step `{}` makes more than {MAX_PRODUCT} combinations before `exclude`",
                step.name
            ),
            format!("a step may have at most {MAX_COMBINATIONS} combinations: use fewer axes or values"),
        );
        return Vec::new();
    }
    let combos = matrix.combinations();
    if combos.is_empty() {
        errors.error(
            matrix.pos,
            format!(
                "the matrix of step `{}` has no combinations left after `exclude`",
                step.name
            ),
        );
        return Vec::new();
    }
    if combos.len() > MAX_COMBINATIONS {
        errors.error(
            matrix.pos,
            format!(
                "the matrix of step `{}` makes {} combinations, more than {MAX_COMBINATIONS}",
                step.name,
                combos.len()
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::with_capacity(combos.len());
    for (i, combo) in combos.iter().enumerate() {
        let values: BTreeMap<String, String> = combo.iter().cloned().collect();
        // Errors in the templates are the same for every combination:
        // report them once.
        let mut sink = Collector::discard();
        let report = if i == 0 { &mut *errors } else { &mut sink };
        let mut s = step.clone();
        s.name = name(&step.name, combo);
        s.run = expand_text(&s.run, &values, "run", matrix.pos, report);
        for v in s.env.values_mut() {
            *v = expand_text(v, &values, "env", matrix.pos, report);
        }
        for l in &mut s.labels {
            *l = expand_text(l, &values, "labels", matrix.pos, report);
        }
        for c in &mut s.verify {
            c.command = expand_text(&c.command, &values, "verify", matrix.pos, report);
        }
        s.matrix = values;
        let mut p = positions.clone();
        p.matrix_of = Some(step.name.clone());
        out.push((s, p));
    }
    out
}

/// `test (python=3.11, db=pg15)`.
pub(super) fn name(base: &str, combo: &[(String, String)]) -> String {
    let parts: Vec<String> = combo.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base} ({})", parts.join(", "))
}

/// Replaces each `${{ matrix.KEY }}`; anything else inside `${{ }}` is an
/// error, since the shell would only fail on it later.
fn expand_text(
    text: &str,
    values: &BTreeMap<String, String>,
    field: &str,
    pos: Pos,
    errors: &mut Collector,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            errors.error(
                pos,
                format!("`${{{{` in `{field}` is never closed with `}}}}`"),
            );
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = after[..end].trim();
        match inner.strip_prefix("matrix.").and_then(|k| values.get(k)) {
            Some(v) => out.push_str(v),
            None => {
                let hint = if values.is_empty() {
                    "the step has no `matrix`; only `${{ matrix.KEY }}` is expanded, and the run context is in $BUILDFLEET_REF, $BUILDFLEET_SHORT_SHA, …".to_owned()
                } else if inner.starts_with("matrix.") {
                    format!(
                        "the matrix keys are {}",
                        values.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                } else {
                    "only `${{ matrix.KEY }}` is expanded; the run context is in $BUILDFLEET_REF, $BUILDFLEET_SHORT_SHA, …".to_owned()
                };
                errors.error_with_hint(
                    pos,
                    format!("`${{{{ {inner} }}}}` in `{field}` names no matrix key"),
                    hint,
                );
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `${{ … }}` in a step without a matrix: nothing would expand it.
pub(super) fn reject_templates(step: &Step, pos: Pos, errors: &mut Collector) {
    let empty = BTreeMap::new();
    let texts = std::iter::once(("run", &step.run))
        .chain(step.env.values().map(|v| ("env", v)))
        .chain(step.labels.iter().map(|l| ("labels", l)))
        .chain(step.verify.iter().map(|c| ("verify", &c.command)));
    for (field, text) in texts {
        if text.contains("${{") {
            expand_text(text, &empty, field, pos, errors);
        }
    }
}
