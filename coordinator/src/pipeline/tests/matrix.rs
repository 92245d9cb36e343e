//! `matrix:`: one step per combination, `include`/`exclude`, templates,
//! `needs` on the name as written, and the errors each can make.

use super::*;

const MATRIX: &str = r#"version: 1
stages:
  - name: test
    steps:
      - name: test
        matrix:
          python: ['3.11', '3.12']
          db: [pg15, pg16]
          exclude: [{ python: '3.11', db: pg16 }]
          include: [{ python: '3.12', db: pg16, experimental: 'yes' }, { python: '3.13', db: pg16 }]
        shards: 2
        labels: ["py-${{ matrix.python }}"]
        env: { DB: "${{ matrix.db }}" }
        if: matrix.db != 'pg15' || matrix.python == 3.11
        run: tox -e py${{ matrix.python }}
  - name: after
    steps:
      - { name: report, run: 'true', needs: [test] }
"#;

#[test]
fn a_matrix_expands_to_one_step_per_combination() {
    let p = parse(FILE, MATRIX).unwrap();
    let names: Vec<&str> = p.steps().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "test (python=3.11, db=pg15)",
            "test (python=3.12, db=pg15)",
            "test (python=3.12, db=pg16, experimental=yes)",
            "test (python=3.13, db=pg16)",
            "report",
        ]
    );
    let s = p.step("test (python=3.12, db=pg15)").unwrap();
    assert_eq!(s.run, "tox -e py3.12");
    assert_eq!(s.env["DB"], "pg15");
    assert_eq!(s.labels, ["py-3.12"]);
    assert_eq!(s.shards, Shards::Fixed(2), "each combination is sharded");
    assert_eq!(s.matrix, map(&[("python", "3.12"), ("db", "pg15")]));
    assert!(s.condition.is_some());
    let deps = p.dependencies();
    assert_eq!(
        deps["report"].len(),
        4,
        "`needs: [test]` waits for every combination"
    );
}

#[test]
fn matrix_mistakes_are_reported_where_they_are() {
    let text = one_step(&[
        "run: echo ${{ matrix.pyton }}",
        "matrix:",
        "  python: []",
        "  exclude: [{ os: linux }]",
    ]);
    let errors = errors(&text);
    let got = positions(&errors);
    assert_eq!(
        got,
        [
            (
                8,
                19,
                "matrix key `python` must list at least one value, found an empty list"
            ),
            (9, 21, "`exclude` names `os`, which is not a matrix key"),
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_template_naming_no_matrix_key_is_an_error_not_text_for_the_shell() {
    single_error(
        &one_step(&[
            "run: echo ${{ matrix.pyton }}",
            "matrix: { python: ['3.12'] }",
        ]),
        7,
        17,
        &[
            "`${{ matrix.pyton }}` in `run` names no matrix key",
            "the matrix keys are python",
        ],
    );
    single_error(
        &one_step(&["run: docker push app:${{ short_sha }}"]),
        5,
        15,
        &[
            "`${{ short_sha }}` in `run` names no matrix key",
            "$BUILDFLEET_SHORT_SHA",
        ],
    );
}

#[test]
fn an_empty_or_huge_matrix_is_an_error() {
    single_error(
        &one_step(&["run: make", "matrix: { a: [x], exclude: [{ a: x }] }"]),
        7,
        17,
        &["has no combinations left after `exclude`"],
    );
    let values: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    let list = values.join(", ");
    single_error(
        &one_step(&[
            "run: make",
            &format!("matrix: {{ a: [{list}], b: [{list}] }}"),
        ]),
        7,
        17,
        &["makes 400 combinations, more than 256"],
    );
}

/// Found while writing the `pipeline_parser` fuzz target: the product was
/// built in full before its size was checked, so one line of eight or nine
/// axes took gigabytes. Five axes (10^5 combinations, which the old code
/// built and then reported) keep the test cheap if the bound regresses.
#[test]
fn a_matrix_of_many_axes_is_refused_before_its_combinations_are_built() {
    let values: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    let axes: Vec<String> = (0..5)
        .map(|axis| format!("k{axis}: [{}]", values.join(", ")))
        .collect();
    let started = std::time::Instant::now();
    single_error(
        &one_step(&["run: make", &format!("matrix: {{ {} }}", axes.join(", "))]),
        7,
        17,
        &["makes more than 4096 combinations before `exclude`"],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_condition_error_in_a_matrix_step_is_reported_once() {
    let text = one_step(&[
        "run: make",
        "matrix: { os: [a, b, c] }",
        "if: matrix.oss == 'a'",
    ]);
    single_error(
        &text,
        8,
        13,
        &["unknown name `matrix.oss`", "did you mean `matrix.os`?"],
    );
}
