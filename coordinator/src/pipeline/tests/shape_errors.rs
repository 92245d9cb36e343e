//! Nodes that break the schema on their own, and exactly where each error
//! points.
//!
//! `one_step` puts the given lines in step `compile`, starting on line 6 at
//! column 9; the step mapping itself is at 5:9.

use super::*;

#[test]
fn yaml_syntax_error_uses_the_parser_position() {
    let error = single_error(
        &one_step(&["run: echo a: b"]),
        6,
        20,
        &["YAML syntax error"],
    );
    assert!(
        error.message.contains("mapping values are not allowed"),
        "{error}"
    );
}

#[test]
fn unterminated_flow_sequence_is_a_syntax_error() {
    let text = lines(&["version: 1", "stages: [", "  - a"]);
    let errors = errors(&text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].message.starts_with("YAML syntax error"),
        "{}",
        errors[0]
    );
    assert!(errors[0].line >= 2, "{}", errors[0]);
}

#[test]
fn unknown_top_level_key_suggests_and_does_not_also_report_it_missing() {
    let text = lines(&[
        "versoin: 1",
        "stages: [{name: s, steps: [{name: a, run: x}]}]",
    ]);
    let error = single_error(
        &text,
        1,
        1,
        &[
            "unknown key `versoin` at the top level",
            "did you mean `version`?",
            "(allowed: version, target_minutes, env, caches, quarantine, stages)",
        ],
    );
    assert!(!error.to_string().contains("missing"));
}

#[test]
fn unknown_step_key_suggests_the_closest_key() {
    single_error(
        &one_step(&["run: make", "timout: 5m"]),
        7,
        9,
        &[
            "unknown key `timout` in step",
            "did you mean `timeout`?",
            "allowed: name, run, shards, timeout, env, outputs, needs, labels",
        ],
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_allowed_keys() {
    let error = single_error(
        &one_step(&["run: make", "command: make"]),
        7,
        9,
        &["unknown key `command` in step"],
    );
    assert_eq!(
        error.hint.as_deref(),
        Some("allowed keys: name, run, shards, timeout, env, outputs, needs, labels, caches, inputs, cache, reports, split, max_shards, retries, verify, secrets, log_cap, resources, if, matrix, approval, services")
    );
}

#[test]
fn shards_given_as_a_word_is_a_type_error() {
    let error = single_error(&one_step(&["run: make", "shards: four"]), 7, 17, &[]);
    assert_eq!(
        error.message,
        "`shards` must be an integer from 1 to 1024 or `auto`, found string \"four\""
    );
}

#[test]
fn quoted_shards_are_a_string_not_an_integer() {
    single_error(
        &one_step(&["run: make", "shards: \"4\""]),
        7,
        17,
        &["found string \"4\""],
    );
}

#[test]
fn shards_out_of_range_are_rejected() {
    single_error(
        &one_step(&["run: make", "shards: 0"]),
        7,
        17,
        &["`shards` must be an integer from 1 to 1024, found integer 0"],
    );
    single_error(
        &one_step(&["shards: 1025", "run: make"]),
        6,
        17,
        &["found integer 1025"],
    );
}

#[test]
fn run_must_be_a_string() {
    single_error(
        &one_step(&["run: [make, test]"]),
        6,
        14,
        &["`run` must be a string, found a sequence"],
    );
}

#[test]
fn run_must_not_be_empty() {
    single_error(
        &one_step(&["run: '  '"]),
        6,
        14,
        &["`run` must not be empty"],
    );
}

#[test]
fn target_minutes_must_be_positive() {
    let text = lines(&[
        "version: 1",
        "target_minutes: 0",
        "stages: [{name: s, steps: [{name: a, run: x}]}]",
    ]);
    single_error(
        &text,
        2,
        17,
        &["`target_minutes` must be a positive integer, found integer 0"],
    );
}

#[test]
fn needs_given_as_a_string_hints_at_a_list() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: compile, run: x}",
        "      - name: test",
        "        run: x",
        "        needs: compile",
    ]);
    single_error(
        &text,
        8,
        16,
        &[
            "`needs` must be a sequence of step names, found string \"compile\"",
            "write `needs: [compile]`",
        ],
    );
}

#[test]
fn null_label_entry_points_at_the_entry() {
    single_error(
        &one_step(&["run: make", "labels: [linux, ~]"]),
        7,
        25,
        &["each entry of `labels` must be a non-empty string, found null"],
    );
}

#[test]
fn env_values_must_be_scalars() {
    single_error(
        &one_step(&["run: make", "env: {A: {b: 1}}"]),
        7,
        18,
        &["env value of `A` must be a string, number or bool, found a mapping"],
    );
}

#[test]
fn env_names_must_be_shell_variable_names() {
    single_error(
        &one_step(&["run: make", "env: {BAD-NAME: 1}"]),
        7,
        15,
        &["`BAD-NAME` is not a valid environment variable name"],
    );
}

#[test]
fn top_level_env_must_be_a_mapping() {
    let text = lines(&[
        "version: 1",
        "env: [A]",
        "stages: [{name: s, steps: [{name: a, run: x}]}]",
    ]);
    single_error(
        &text,
        2,
        6,
        &["`env` must be a mapping of variable names to values, found a sequence"],
    );
}

#[test]
fn missing_version_is_reported_at_the_top_mapping() {
    let text = lines(&["stages: [{name: s, steps: [{name: a, run: x}]}]"]);
    single_error(
        &text,
        1,
        1,
        &["missing required key `version` at the top level"],
    );
}

#[test]
fn missing_stages_is_reported_at_the_top_mapping() {
    let text = lines(&["# header comment", "version: 1"]);
    single_error(
        &text,
        2,
        1,
        &["missing required key `stages` at the top level"],
    );
}

#[test]
fn missing_run_is_reported_at_the_step_mapping() {
    single_error(
        &one_step(&[]),
        5,
        9,
        &["missing required key `run` in step `compile`"],
    );
}

#[test]
fn missing_step_name_is_reported_at_the_step_mapping() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - run: make",
    ]);
    single_error(&text, 5, 9, &["missing required key `name` in step"]);
}

#[test]
fn missing_stage_name_is_reported_at_the_stage_mapping() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - steps:",
        "      - {name: a, run: x}",
    ]);
    single_error(&text, 3, 5, &["missing required key `name` in stage"]);
}

#[test]
fn duplicate_mapping_key_points_at_the_second() {
    single_error(
        &one_step(&["run: make", "run: other"]),
        7,
        9,
        &["duplicate key `run` in step (first defined at line 6)"],
    );
}

#[test]
fn duplicate_env_key_points_at_the_second() {
    single_error(
        &one_step(&["run: make", "env:", "  A: 1", "  A: 2"]),
        9,
        11,
        &["duplicate key `A` in env (first defined at line 8)"],
    );
}

#[test]
fn empty_stages_list_is_rejected() {
    single_error(
        &lines(&["version: 1", "stages: []"]),
        2,
        9,
        &["`stages` must not be empty"],
    );
}

#[test]
fn stage_without_steps_is_rejected() {
    let text = lines(&["version: 1", "stages:", "  - name: build", "    steps: []"]);
    single_error(&text, 4, 12, &["stage `build` has no steps"]);
}

#[test]
fn stage_with_null_steps_is_rejected() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "  - name: test",
        "    steps: [{name: a, run: x}]",
    ]);
    let error = single_error(
        &text,
        4,
        5,
        &["`steps` must be a non-empty sequence of steps, found null"],
    );
    assert!(error.hint.is_some());
}

#[test]
fn unparseable_timeout_is_rejected_with_a_hint() {
    single_error(
        &one_step(&["run: make", "timeout: 10 minutes please"]),
        7,
        18,
        &[
            "invalid `timeout` string \"10 minutes please\"",
            "use a duration such as \"30s\", \"10m\" or \"1h 30m\"",
        ],
    );
}

#[test]
fn zero_and_negative_timeouts_are_rejected() {
    single_error(
        &one_step(&["run: make", "timeout: 0s"]),
        7,
        18,
        &["`timeout` must be longer than zero"],
    );
    single_error(
        &one_step(&["run: make", "timeout: -5"]),
        7,
        18,
        &["invalid `timeout` integer -5"],
    );
    single_error(
        &one_step(&["run: make", "timeout: [1]"]),
        7,
        18,
        &["`timeout` must be a duration, found a sequence"],
    );
}

#[test]
fn version_other_than_one_is_rejected() {
    let text = lines(&[
        "version: 2",
        "stages: [{name: s, steps: [{name: a, run: x}]}]",
    ]);
    single_error(&text, 1, 10, &["`version` must be 1, found integer 2"]);
    let text = lines(&[
        "version: '1'",
        "stages: [{name: s, steps: [{name: a, run: x}]}]",
    ]);
    single_error(&text, 1, 10, &["`version` must be 1, found string \"1\""]);
}

#[test]
fn empty_documents_are_rejected_at_the_start() {
    for text in ["", "\n\n", "# only a comment\n", "---\n", "~\n"] {
        single_error(text, 1, 1, &["the pipeline file is empty", "version: 1"]);
    }
}

#[test]
fn top_level_must_be_a_mapping() {
    single_error(
        "- a\n- b\n",
        1,
        1,
        &["the pipeline file must be a mapping at the top level, found a sequence"],
    );
}

#[test]
fn a_second_document_is_rejected() {
    let text = format!(
        "{}---\nversion: 1\n",
        lines(&[
            "version: 1",
            "stages: [{name: s, steps: [{name: a, run: x}]}]"
        ])
    );
    single_error(&text, 3, 1, &["exactly one YAML document"]);
}

#[test]
fn absolute_and_escaping_outputs_are_rejected() {
    let errors = errors(&one_step(&[
        "run: make",
        "outputs: [/etc/passwd, ../up, a/../../b, ok/file]",
    ]));
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert_error(
        &errors[0],
        7,
        19,
        &["output path `/etc/passwd` is absolute"],
    );
    assert_error(
        &errors[1],
        7,
        32,
        &["output path `../up` escapes the workspace"],
    );
    assert_error(
        &errors[2],
        7,
        39,
        &["output path `a/../../b` escapes the workspace"],
    );
}

#[test]
fn step_names_are_limited_to_safe_characters() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - name: my step",
        "        run: make",
    ]);
    single_error(
        &text,
        5,
        15,
        &[
            "invalid step name `my step`",
            "letters, digits, `_`, `.` and `-`",
        ],
    );
}

#[test]
fn step_that_is_not_a_mapping_is_rejected() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - make",
    ]);
    single_error(
        &text,
        5,
        9,
        &["each step must be a mapping with at least `name` and `run`, found string \"make\""],
    );
}
