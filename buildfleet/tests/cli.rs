//! The `buildfleet` binary as users and CI call it: exit statuses and output.

mod procs;

use procs::{bin, Ran};

fn write(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn validate_exits_2_and_names_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "buildfleet.yaml",
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: a, run: 'true', needs: [nope] }\n",
    );
    let err = Ran::of(bin().arg("validate").arg(&f)).expect(2).stderr;
    assert!(err.contains("buildfleet.yaml:5:"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn validate_accepts_a_good_file() {
    let out = Ran::of(bin().arg("validate").arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hello/buildfleet.yaml"
    )))
    .expect(0);
    assert!(out.stdout.contains("valid (3 stages, 4 steps)"));
}

#[test]
fn run_exits_1_and_names_the_failing_shard_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "buildfleet.yaml",
        r#"version: 1
stages:
  - name: test
    steps:
      - name: unit
        shards: 3
        run: |
          echo "shard $BUILDFLEET_SHARD_INDEX"
          if [ "$BUILDFLEET_SHARD_INDEX" = 1 ]; then exit 7; fi
"#,
    );
    let data = tempfile::tempdir().unwrap();
    let stdout = Ran::of(
        bin()
            .args(["run", "--runners", "2", "--data"])
            .arg(data.path())
            .arg(&f),
    )
    .expect(1)
    .stdout;
    assert!(
        stdout.contains("unit shard 1: failed (exit code 7)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unit#1 | shard 1"),
        "log lines carry step and shard: {stdout}"
    );
    assert!(stdout.contains("FAILED"), "{stdout}");
}

#[test]
fn run_of_the_example_pipeline_is_green() {
    let data = tempfile::tempdir().unwrap();
    let out = Ran::of(
        bin()
            .args(["run", "--runners", "4", "--data"])
            .arg(data.path())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/hello/buildfleet.yaml"
            )),
    )
    .expect(0);
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    assert!(stdout.contains("PASSED"), "{stdout}");
    // The fleet stops in order after the summary: runners drain and leave
    // first, so none of them sees its coordinator vanish.
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("PASSED: run "),
        "a clean run ends on its summary: {stdout}"
    );
    assert!(
        !stderr.contains("WARN") && !stderr.contains("ERROR"),
        "a clean run warns about nothing: {stderr}"
    );
    // Four shards of `unit`, each on the summary table.
    for i in 0..4 {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["unit", &format!("{i}/4")]))
            .unwrap_or_else(|| panic!("no summary row for unit {i}/4: {stdout}"));
        assert_eq!(row.split_whitespace().nth(2), Some("succeeded"), "{row}");
    }
}

#[test]
fn run_of_an_invalid_file_exits_2_before_starting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "p.yaml", "version: 1\nstages: []\n");
    let out = Ran::of(
        bin()
            .args(["run", "--data"])
            .arg(dir.path().join("data"))
            .arg(&f),
    )
    .expect(2);
    assert!(
        !dir.path().join("data").exists(),
        "nothing was started for an invalid file"
    );
    assert!(out.stderr.contains("p.yaml:2:"));
}

#[test]
fn bad_usage_exits_2() {
    Ran::of(bin().args(["run"])).expect(2);
}

#[test]
fn run_refuses_a_data_dir_inside_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "p.yaml",
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: a, run: 'true' }\n",
    );
    let out = Ran::of(
        bin()
            .args(["run", "--data"])
            .arg(dir.path().join("cache-data"))
            .arg(&f),
    )
    .expect(2);
    assert!(out.stderr.contains("is inside the input directory"));
    assert!(!dir.path().join("cache-data").exists());
}

#[test]
fn second_run_is_cached_and_cache_explain_names_the_changed_input() {
    let inputs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let f = write(
        inputs.path(),
        "buildfleet.yaml",
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: t, run: 'cat a.txt', shards: 2 }\n",
    );
    write(inputs.path(), "a.txt", "one\n");
    let run = || {
        Ran::of(
            bin()
                .args(["run", "--runners", "2", "--data"])
                .arg(data.path())
                .arg(&f),
        )
    };
    let explain = || {
        Ran::of(
            bin()
                .args(["cache", "explain", "--data"])
                .arg(data.path())
                .arg(&f)
                .arg("t"),
        )
        .expect(0)
        .stdout
    };
    run().expect(0);
    let text = run().expect(0).stdout;
    assert!(text.contains("succeeded (1 from cache)"), "{text}");
    assert!(text.contains("t#0              step result: hit"), "{text}");

    let before = explain();
    assert!(
        before.contains("t#0              step result: hit"),
        "{before}"
    );
    assert!(
        before.contains("t#1              step result: hit"),
        "{before}"
    );
    write(inputs.path(), "a.txt", "two\n");
    let after = explain();
    assert!(
        after.contains("step result: miss") && after.contains("input path a.txt (changed)"),
        "{after}"
    );
    let unknown = Ran::of(
        bin()
            .args(["cache", "explain", "--data"])
            .arg(data.path())
            .arg(&f)
            .arg("nope"),
    )
    .expect(2);
    assert!(unknown.stderr.contains("no step `nope`"));
}

#[test]
fn cache_explain_reports_the_decisions_a_run_makes_about_side_effects() {
    let inputs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("TOKEN"), "t0ken-value").unwrap();
    let f = write(
        inputs.path(),
        "buildfleet.yaml",
        r#"version: 1
stages:
  - name: s
    steps:
      - { name: push, secrets: [TOKEN], run: 'true' }
      - { name: checked, run: 'echo ok > out.txt', outputs: [out.txt], verify: 'test -s out.txt' }
      - { name: tag, run: 'echo "app:$BUILDFLEET_RUN_ID"' }
"#,
    );
    let text = Ran::of(
        bin()
            .args(["run", "--runners", "2", "--data"])
            .arg(data.path())
            .arg("--secrets-dir")
            .arg(secrets.path())
            .arg(&f),
    )
    .expect(0)
    .stdout;
    assert!(
        text.contains("push#0           step result: off — the step receives secrets (TOKEN)"),
        "the run's summary says why it ran: {text}"
    );
    let explain = |step: &str| {
        Ran::of(
            bin()
                .args(["cache", "explain", "--data"])
                .arg(data.path())
                .arg(&f)
                .arg(step),
        )
        .expect(0)
        .stdout
    };
    let push = explain("push");
    assert!(
        push.contains(
            "step result: off — the step receives secrets (TOKEN), so it acts on the outside world"
        ),
        "{push}"
    );
    let checked = explain("checked");
    assert!(
        checked.contains("step result: hit")
            && checked.contains("`verify:` still runs after the hit"),
        "{checked}"
    );
    let tag = explain("tag");
    assert!(
        tag.contains("off — the step uses BUILDFLEET_RUN_ID"),
        "{tag}"
    );
}
