//! `shards: auto`, `max_shards`, `split`, `retries` and `quarantine`:
//! what parses, and errors at exact positions for what does not.

use super::*;
use buildfleet_model::Check;
use std::time::Duration;

fn with_target(step_lines: &[&str]) -> String {
    format!("target_minutes: 10\n{}", one_step(step_lines))
}

#[test]
fn auto_shards_list_split_retries_and_quarantine_parse() {
    let text = format!(
        "quarantine: .buildfleet/quarantine\n{}",
        with_target(&[
            "run: pytest $BUILDFLEET_SHARD_ITEMS",
            "shards: auto",
            "max_shards: 6",
            "split: { list: \"pytest --collect-only -q | grep ::\" }",
            "retries: { flaky: 2 }",
        ])
    );
    let p = parse(FILE, &text).unwrap();
    let step = p.step("compile").unwrap();
    assert_eq!(step.shards, Shards::Auto { max: 6 });
    assert_eq!(
        step.split,
        Some(Split::List("pytest --collect-only -q | grep ::".into()))
    );
    assert_eq!(
        (step.flaky_retries, step.infra_retries),
        (2, 2),
        "infra defaults to 2"
    );
    assert_eq!(p.quarantine.as_deref(), Some(".buildfleet/quarantine"));
    assert_eq!(p.stage_budget(), Some(Duration::from_secs(600)));

    let default_max = with_target(&["run: t", "shards: auto", "split: { files: \"*.py\" }"]);
    assert_eq!(
        parse(FILE, &default_max)
            .unwrap()
            .steps()
            .next()
            .unwrap()
            .shards,
        Shards::Auto { max: 64 }
    );
}

#[test]
fn auto_shards_need_split_and_target_minutes() {
    let no_split = with_target(&["run: t", "shards: auto"]);
    single_error(&no_split, 8, 17, &["`shards: auto` needs `split:`"]);
    let no_target = one_step(&["run: t", "shards: auto", "split: { files: \"*.py\" }"]);
    single_error(&no_target, 7, 17, &["needs `target_minutes`", "compile"]);
}

#[test]
fn bad_shard_fields_say_what_is_allowed() {
    single_error(
        &one_step(&["run: t", "shards: many"]),
        7,
        17,
        &["`shards` must be an integer from 1 to 1024 or `auto`"],
    );
    single_error(
        &one_step(&["run: t", "shards: 2", "max_shards: 4"]),
        8,
        21,
        &["`max_shards` only applies to `shards: auto`"],
    );
    single_error(
        &with_target(&[
            "run: t",
            "shards: auto",
            "max_shards: 0",
            "split: { files: \"*\" }",
        ]),
        9,
        21,
        &["`max_shards` must be an integer from 1 to 1024"],
    );
}

#[test]
fn bad_split_and_retries_are_refused_at_their_position() {
    single_error(
        &one_step(&["run: t", "split: { files: \"*.py\", list: \"ls\" }"]),
        7,
        39,
        &["either `files` or `list`"],
    );
    single_error(
        &one_step(&["run: t", "split: {}"]),
        7,
        16,
        &["`split` needs `files` or `list`"],
    );
    single_error(
        &one_step(&["run: t", "split: { list: \" \" }"]),
        7,
        24,
        &["`split.list` must not be empty"],
    );
    single_error(
        &one_step(&["run: t", "retries: { flaky: 9 }"]),
        7,
        27,
        &["`flaky` must be an integer from 0 to 5"],
    );
    single_error(
        &one_step(&["run: t", "retries: { infra: 11 }"]),
        7,
        27,
        &["`infra` must be an integer from 0 to 10"],
    );
}

#[test]
fn a_quarantine_file_outside_the_workspace_is_refused() {
    let text = format!("quarantine: ../q.txt\n{}", one_step(&["run: t"]));
    single_error(
        &text,
        1,
        13,
        &["quarantine file `../q.txt` escapes the workspace"],
    );
}

#[test]
fn verify_checks_take_retries_and_an_interval_and_bad_ones_are_named() {
    let text = one_step(&[
        "run: deploy",
        "verify:",
        "  - test -s out.txt",
        "  - { run: 'curl -fs localhost:8080/health', retries: 5, interval: 2s }",
        "  - { run: smoke }",
    ]);
    let p = parse(FILE, &text).unwrap();
    assert_eq!(
        p.step("compile").unwrap().verify,
        [
            Check::once("test -s out.txt"),
            Check {
                command: "curl -fs localhost:8080/health".into(),
                retries: 5,
                interval: Duration::from_secs(2),
            },
            Check {
                command: "smoke".into(),
                retries: 0,
                interval: Duration::from_secs(1),
            },
        ]
    );
    let bad = one_step(&[
        "run: deploy",
        "verify:",
        "  - { run: h, retries: -1 }",
        "  - { run: h, interval: soon }",
        "  - { retries: 2 }",
        "  - { run: h, retry: 2 }",
    ]);
    let errs = errors(&bad);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_error(
        &errs[0],
        8,
        32,
        &["`retries` must be a whole number from 0 to 100"],
    );
    assert_error(&errs[1], 9, 33, &["invalid `interval`"]);
    assert_error(
        &errs[2],
        10,
        13,
        &["missing required key `run`", "`verify` check"],
    );
    assert_error(&errs[3], 11, 23, &["unknown key `retry`"]);
}

#[test]
fn verify_and_secrets_parse_and_bad_names_are_refused() {
    let p = parse(
        FILE,
        &one_step(&[
            "run: push",
            "verify: docker manifest inspect img",
            "secrets: [REGISTRY_TOKEN]",
        ]),
    )
    .unwrap();
    let step = p.step("compile").unwrap();
    assert_eq!(step.verify, [Check::once("docker manifest inspect img")]);
    assert_eq!(step.secrets, ["REGISTRY_TOKEN"]);
    let list = parse(FILE, &one_step(&["run: push", "verify: [a, b]"])).unwrap();
    assert_eq!(
        list.step("compile").unwrap().verify,
        [Check::once("a"), Check::once("b")]
    );
    single_error(
        &one_step(&["run: push", "secrets: [token]"]),
        7,
        19,
        &["invalid secret name `token`"],
    );
}

#[test]
fn split_by_count_or_timings_and_anything_else_is_refused() {
    let p = parse(
        FILE,
        &one_step(&["run: t", "split: { files: \"*.py\", by: count }"]),
    )
    .unwrap();
    assert_eq!(p.step("compile").unwrap().split_by, SplitBy::Count);
    let p = parse(FILE, &one_step(&["run: t", "split: { files: \"*.py\" }"])).unwrap();
    assert_eq!(p.step("compile").unwrap().split_by, SplitBy::Timings);
    single_error(
        &one_step(&["run: t", "split: { files: \"*.py\", by: speed }"]),
        7,
        37,
        &["`split.by` must be `timings` or `count`"],
    );
}
