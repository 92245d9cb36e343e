//! `if:` end to end through the binary: a deploy that only runs on main,
//! a rollback that only runs after a failure, and `validate` pointing at
//! the column of a mistake. Evidence is the marker each step writes.

mod procs;

use procs::{bin, lines, with_mark, Ran};

const DELIVERY: &str = r#"stages:
  - name: build
    steps:
      - { name: build, run: 'echo build >> "$MARK/ran"' }
  - name: ship
    steps:
      - { name: deploy, run: 'echo deploy >> "$MARK/ran"', if: "branch == 'main'" }
      - { name: smoke, run: 'echo smoke >> "$MARK/ran"; test ! -e "$MARK/break"', needs: [build] }
      - { name: rollback, run: 'echo rollback >> "$MARK/ran"', needs: [smoke], if: "failure()" }
"#;

fn run_on(git_ref: &str, mark: &std::path::Path) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buildfleet.yaml");
    std::fs::write(&file, with_mark(mark, DELIVERY)).unwrap();
    let data = tempfile::tempdir().unwrap();
    Ran::of(
        bin()
            .args(["run", "--runners", "2", "--ref", git_ref, "--data"])
            .arg(data.path())
            .arg(&file),
    )
}

#[test]
fn on_a_feature_branch_the_deploy_is_skipped_by_its_condition_and_the_run_is_green() {
    let mark = tempfile::tempdir().unwrap();
    let out = run_on("refs/heads/feature", mark.path()).expect(0);
    assert_eq!(lines(&mark.path().join("ran")), ["build", "smoke"]);
    assert!(
        out.stdout
            .contains("skipped (condition false: branch is 'feature')"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("skipped (condition false: no dependency failed)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2 steps succeeded, 2 skipped (condition false)"),
        "{}",
        out.stdout
    );
}

#[test]
fn on_main_the_deploy_runs() {
    let mark = tempfile::tempdir().unwrap();
    run_on("refs/heads/main", mark.path()).expect(0);
    assert_eq!(
        lines(&mark.path().join("ran")),
        ["build", "deploy", "smoke"]
    );
}

#[test]
fn a_failing_smoke_test_runs_the_rollback_and_the_run_is_red() {
    let mark = tempfile::tempdir().unwrap();
    std::fs::write(mark.path().join("break"), "").unwrap();
    let out = run_on("refs/heads/main", mark.path()).expect(1);
    assert_eq!(
        lines(&mark.path().join("ran")),
        ["build", "deploy", "rollback", "smoke"]
    );
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
}

#[test]
fn validate_points_at_an_unknown_function_in_a_condition() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buildfleet.yaml");
    std::fs::write(
        &file,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - name: a\n        run: 'true'\n        if: succes() && brnch == 'main'\n",
    )
    .unwrap();
    let err = Ran::of(bin().arg("validate").arg(&file)).expect(2).stderr;
    assert!(
        err.contains(
            "buildfleet.yaml:7:13: in `if`: unknown function `succes()`; did you mean `success()`?"
        ),
        "{err}"
    );
    assert!(
        err.contains("buildfleet.yaml:7:25: in `if`: unknown name `brnch`; did you mean `branch`?"),
        "{err}"
    );
}
