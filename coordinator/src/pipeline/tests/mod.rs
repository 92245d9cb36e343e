//! Tests for the pipeline parser, through its public entry points.

use std::collections::BTreeMap;

use super::*;

mod caches;
mod conditions;
mod cross_step_errors;
mod files;
mod hostile;
mod matrix;
mod services;
mod shape_errors;
mod sharding;
mod valid;

pub(super) const FILE: &str = "buildfleet.yaml";

pub(super) fn errors(text: &str) -> Vec<PipelineError> {
    match parse(FILE, text) {
        Ok(pipeline) => panic!("expected errors, got {pipeline:#?}"),
        Err(errors) => errors.0,
    }
}

/// The only error in `text`, checked for position and message fragments.
pub(super) fn single_error(
    text: &str,
    line: usize,
    column: usize,
    fragments: &[&str],
) -> PipelineError {
    let errors = errors(text);
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one error, got {errors:#?}"
    );
    let error = errors.into_iter().next().unwrap();
    assert_error(&error, line, column, fragments);
    error
}

pub(super) fn assert_error(error: &PipelineError, line: usize, column: usize, fragments: &[&str]) {
    assert_eq!(error.file, FILE);
    assert_eq!(
        (error.line, error.column),
        (line, column),
        "wrong position for {error}"
    );
    let rendered = error.to_string();
    for fragment in fragments {
        assert!(
            rendered.contains(fragment),
            "{rendered:?} does not contain {fragment:?}"
        );
    }
}

/// Each error's line, column and message, for comparing whole lists.
pub(super) fn positions(errors: &[PipelineError]) -> Vec<(usize, usize, &str)> {
    errors
        .iter()
        .map(|e| (e.line, e.column, e.message.as_str()))
        .collect()
}

pub(super) fn lines(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

pub(super) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A pipeline with one stage `build` holding one step `compile` whose extra
/// keys come from `step_lines` (indented 8 spaces, starting on line 6).
pub(super) fn one_step(step_lines: &[&str]) -> String {
    let mut text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - name: compile",
    ]);
    for line in step_lines {
        text.push_str("        ");
        text.push_str(line);
        text.push('\n');
    }
    text
}
