//! `if:` on a step: parsed, its names checked, every error at the column
//! of the character it concerns (plain and quoted scalars alike).

use super::*;

#[test]
fn a_condition_parses_and_keeps_its_text() {
    let text = one_step(&[
        "run: make",
        "if: branch == 'main' && env.MODE == 'x'",
        "env: { MODE: x }",
    ]);
    let p = parse(FILE, &text).unwrap();
    let c = p
        .steps()
        .next()
        .unwrap()
        .condition
        .as_ref()
        .expect("condition");
    assert_eq!(c.text, "branch == 'main' && env.MODE == 'x'");
}

#[test]
fn syntax_errors_point_into_plain_and_quoted_conditions() {
    // `if: ` starts at column 9 of line 7; the plain text at column 13.
    single_error(
        &one_step(&["run: make", "if: branch = 'main'"]),
        7,
        20,
        &["in `if`: `=` is not an operator here; did you mean `==`?"],
    );
    // Quoted: one more column for the quote.
    single_error(
        &one_step(&["run: make", "if: \"branch == 'main\""]),
        7,
        24,
        &["in `if`: this string is never closed"],
    );
    single_error(
        &one_step(&["run: make", "if: ''"]),
        7,
        14,
        &["in `if`: the condition is empty"],
    );
}

#[test]
fn unknown_names_and_functions_are_reported_with_their_columns() {
    let text = one_step(&[
        "run: make",
        "if: brnach == 'main' || succes() || env.NOPE == '1' || matrix.os == 'x'",
    ]);
    let errors = errors(&text);
    let got = positions(&errors);
    assert_eq!(
        got,
        [
            (7, 13, "in `if`: unknown name `brnach`"),
            (7, 33, "in `if`: unknown function `succes()`"),
            (7, 45, "in `if`: unknown name `env.NOPE`"),
            (
                7,
                64,
                "in `if`: unknown name `matrix.os`: the step has no `matrix`"
            ),
        ]
    );
    assert_eq!(errors[0].hint.as_deref(), Some("did you mean `branch`?"));
    assert_eq!(errors[1].hint.as_deref(), Some("did you mean `success()`?"));
}

#[test]
fn env_names_come_from_the_pipeline_the_step_and_the_context() {
    let text = lines(&[
        "version: 1",
        "env: { TOP: a }",
        "stages:",
        "  - name: s",
        "    steps:",
        "      - name: a",
        "        run: make",
        "        env: { OWN: b }",
        "        if: env.TOP == 'a' && env.OWN == 'b' && env.BUILDFLEET_BRANCH == 'main'",
    ]);
    assert!(parse(FILE, &text).is_ok());
}

#[test]
fn a_block_scalar_condition_says_which_character() {
    // The block's text starts on the next line, at its indentation.
    let text = one_step(&["run: make", "if: >-", "  branch =", "  'main'"]);
    single_error(
        &text,
        8,
        11,
        &[
            "`=` is not an operator here",
            "(at character 8 of the condition)",
        ],
    );
}
