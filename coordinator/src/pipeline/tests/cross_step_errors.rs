//! Errors that only show when steps are looked at together: duplicate
//! names, unresolvable `needs`, cycles, and several errors in one file.

use super::*;

#[test]
fn duplicate_stage_name_points_at_the_second() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: a, run: x}",
        "  - name: build",
        "    steps:",
        "      - {name: b, run: x}",
    ]);
    single_error(
        &text,
        6,
        11,
        &["duplicate stage name `build` (first defined at line 3)"],
    );
}

#[test]
fn duplicate_step_name_across_stages_points_at_the_second() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: a, run: x}",
        "  - name: test",
        "    steps:",
        "      - {name: a, run: y}",
    ]);
    single_error(
        &text,
        8,
        16,
        &["duplicate step name `a` (first defined at line 5)"],
    );
}

#[test]
fn needs_naming_a_missing_step_suggests_a_close_name() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: compile, run: x}",
        "      - {name: b, run: x, needs: [compil, zzz]}",
    ]);
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(
        &errors[0],
        6,
        35,
        &[
            "`needs` names unknown step `compil`",
            "did you mean `compile`?",
        ],
    );
    assert_error(&errors[1], 6, 43, &["`needs` names unknown step `zzz`"]);
    assert_eq!(errors[1].hint, None);
}

#[test]
fn needs_naming_a_step_of_a_later_stage_is_rejected() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: a, run: x, needs: [b]}",
        "  - name: test",
        "    steps:",
        "      - {name: b, run: x}",
    ]);
    single_error(
        &text,
        5,
        35,
        &[
            "step `a` needs `b`, which is in the later stage `test`",
            "a step may only need steps of its own or earlier stages",
        ],
    );
}

#[test]
fn needs_listing_a_step_twice_is_rejected() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: a, run: x}",
        "      - {name: b, run: x, needs: [a, a]}",
    ]);
    single_error(&text, 6, 38, &["`a` is listed more than once in `needs`"]);
}

#[test]
fn needs_cycles_are_named_including_self_needs() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - {name: a, run: x, needs: [b]}",
        "      - {name: b, run: x, needs: [a]}",
        "      - {name: c, run: x, needs: [c]}",
    ]);
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_error(&errors[0], 5, 35, &["dependency cycle: a → b → a"]);
    assert_error(
        &errors[1],
        7,
        35,
        &["dependency cycle: c → c", "a step cannot need itself"],
    );
}

#[test]
fn longer_cycle_is_reported_once_along_its_edges() {
    let text = lines(&[
        "version: 1",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - name: a",
        "        run: x",
        "        needs: [c]",
        "      - {name: b, run: x, needs: [a]}",
        "      - {name: c, run: x, needs: [b]}",
    ]);
    single_error(&text, 7, 17, &["dependency cycle: a → c → b → a"]);
}

#[test]
fn all_errors_are_reported_in_position_order() {
    let text = lines(&[
        "version: 2",
        "stages:",
        "  - name: build",
        "    steps:",
        "      - name: compile",
        "        run: make",
        "        shards: many",
        "        timout: 5m",
        "      - name: compile",
        "        run: make",
        "        needs: [nope]",
        "  - name: build",
        "    stpes: []",
    ]);
    let errors = errors(&text);
    let positions: Vec<(usize, usize)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        positions,
        [
            (1, 10),
            (7, 17),
            (8, 9),
            (9, 15),
            (11, 17),
            (12, 11),
            (13, 5)
        ],
        "{errors:#?}"
    );
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "`version` must be 1, found integer 2",
            "`shards` must be an integer from 1 to 1024 or `auto`, found string \"many\"",
            "unknown key `timout` in step",
            "duplicate step name `compile` (first defined at line 5)",
            "`needs` names unknown step `nope`",
            "duplicate stage name `build` (first defined at line 3)",
            "unknown key `stpes` in stage",
        ]
    );
    let rendered = PipelineErrors(errors).to_string();
    assert_eq!(rendered.lines().count(), 7);
    assert!(rendered.starts_with("buildfleet.yaml:1:10: `version` must be 1"));
}
