//! A 2×2 matrix with one combination excluded, end to end: each
//! combination runs once with its own values, and the step that needs the
//! matrix starts only after all of them.

mod procs;

use procs::{bin, lines, with_mark, Ran};

#[test]
fn a_two_by_two_matrix_without_one_combination_runs_three_steps_then_its_dependant() {
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buildfleet.yaml");
    std::fs::write(
        &file,
        with_mark(
            mark.path(),
            r#"stages:
  - name: test
    steps:
      - name: test
        matrix:
          python: ['3.11', '3.12']
          db: [pg15, pg16]
          exclude: [{ python: '3.11', db: pg16 }]
        env: { DB: "${{ matrix.db }}" }
        run: echo "py${{ matrix.python }}-$DB" >> "$MARK/ran"
      - name: report
        needs: [test]
        run: echo "report saw $(wc -l < "$MARK/ran")" >> "$MARK/report"
"#,
        ),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = Ran::of(
        bin()
            .args(["run", "--runners", "2", "--data"])
            .arg(data.path())
            .arg(&file),
    )
    .expect(0);
    assert_eq!(
        lines(&mark.path().join("ran")),
        ["py3.11-pg15", "py3.12-pg15", "py3.12-pg16"]
    );
    assert_eq!(lines(&mark.path().join("report")), ["report saw 3"]);
    for name in [
        "test (python=3.11, db=pg15)",
        "test (python=3.12, db=pg15)",
        "test (python=3.12, db=pg16)",
    ] {
        assert!(out.stdout.contains(name), "{name} in\n{}", out.stdout);
    }
    assert!(
        !out.stdout.contains("python=3.11, db=pg16"),
        "{}",
        out.stdout
    );
}
