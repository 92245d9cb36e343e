//! Green means the work happened, through the real binary: each hole the
//! review found, met the way a user meets it — `buildfleet run` and
//! `submit` as processes, their exit status, printed summary and files —
//! with the evidence taken from the effects (marker files the steps write
//! outside their inputs, the JUnit file, the printed log lines), not from
//! the code path. `side_effects.rs` holds the in-process counterparts.

mod procs;

use std::path::PathBuf;
use std::time::Duration;

use procs::{bin, lines, wait_for_runners, with_mark, Ran};

const SECRET: &str = "s3cr3t-t0ken-value";

/// A pipeline in an input directory, a data directory kept across runs
/// (so the step-result cache carries over), a secret store holding TOKEN,
/// and a directory the steps leave their marks in.
struct Project {
    inputs: tempfile::TempDir,
    data: tempfile::TempDir,
    secrets: tempfile::TempDir,
    mark: tempfile::TempDir,
}

impl Project {
    fn new(body: &str) -> Project {
        let p = Project {
            inputs: tempfile::tempdir().unwrap(),
            data: tempfile::tempdir().unwrap(),
            secrets: tempfile::tempdir().unwrap(),
            mark: tempfile::tempdir().unwrap(),
        };
        std::fs::write(p.secrets.path().join("TOKEN"), format!("{SECRET}\n")).unwrap();
        p.write("buildfleet.yaml", &with_mark(p.mark.path(), body));
        p
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.inputs.path().join(name), text).unwrap();
    }

    fn mark(&self, name: &str) -> PathBuf {
        self.mark.path().join(name)
    }

    /// `buildfleet run` on the embedded fleet, to its end.
    fn run(&self, extra: &[&str]) -> Ran {
        Ran::of(
            bin()
                .args(["run", "--runners", "2", "--data"])
                .arg(self.data.path())
                .arg("--secrets-dir")
                .arg(self.secrets.path())
                .args(extra)
                .arg(self.inputs.path().join("buildfleet.yaml")),
        )
    }
}

/// The STATE column of `step`'s shard `i` in the run's summary table.
fn summary_state(stdout: &str, step: &str, i: usize, of: usize) -> String {
    let row = stdout
        .lines()
        .find(|l| {
            l.split_whitespace()
                .take(2)
                .eq([step, &format!("{i}/{of}")])
        })
        .unwrap_or_else(|| panic!("no summary row for {step} {i}/{of}: {stdout}"));
    // STATE, DURATION, PREDICTED, ITEMS, RUNNER: the state is what the
    // columns after it do not hold.
    let rest: Vec<&str> = row.split_whitespace().skip(2).collect();
    rest[..rest.len().saturating_sub(4)].join(" ")
}

#[test]
fn a_push_runs_on_every_run_and_verify_checks_the_world_after_a_hit() {
    let p = Project::new(
        r#"stages:
  - name: ship
    steps:
      - { name: push, secrets: [TOKEN], run: 'echo pushed >> "$MARK/push"' }
      - name: publish
        outputs: [out.txt]
        run: 'echo v1 > out.txt; cp out.txt "$MARK/published"'
        verify: 'echo checked >> "$MARK/verified"; cmp out.txt "$MARK/published"'
"#,
    );
    p.write("src.txt", "x\n");
    p.run(&[]).expect(0);
    let second = p.run(&[]).expect(0).stdout;
    assert_eq!(
        lines(&p.mark("push")),
        ["pushed", "pushed"],
        "the push happened again: {second}"
    );
    assert!(
        second.contains("push#0           step result: off — the step receives secrets (TOKEN)"),
        "the summary says why it ran: {second}"
    );
    assert!(
        summary_state(&second, "publish", 0, 1).starts_with("cached"),
        "{second}"
    );
    assert_eq!(
        lines(&p.mark("verified")).len(),
        2,
        "the check ran again after the hit"
    );

    // The world changes: the published file is gone.
    std::fs::remove_file(p.mark("published")).unwrap();
    let third = p.run(&[]).expect(1).stdout;
    assert!(
        third.contains("verify-failed: cached result no longer holds"),
        "{third}"
    );
    assert!(third.contains("FAILED"), "{third}");
    assert_eq!(lines(&p.mark("verified")).len(), 3);
    assert_eq!(lines(&p.mark("push")).len(), 3);
}

/// [`procs::one_known_bad_test`], its failed test in the quarantine file,
/// with a check that marks each time it runs.
fn muted_project(makes_output: bool) -> Project {
    let verify = "        verify: 'echo ran >> \"$MARK/verify\"; test -s dist/app'\n";
    let steps = procs::one_known_bad_test(verify, makes_output);
    let p = Project::new(&format!("quarantine: quarantine.txt\n{steps}"));
    p.write("quarantine.txt", "suite::known_bad\n");
    p
}

#[test]
fn a_muted_exit_without_its_output_fails_and_a_muted_exit_says_so_in_the_summary() {
    let missing = muted_project(false);
    let out = missing.run(&[]).expect(1).stdout;
    let state = summary_state(&out, "t", 0, 1);
    assert!(
        state.contains("not muted")
            && state.contains("missing-output")
            && state.contains("dist/app"),
        "{out}"
    );
    assert!(
        !missing.mark("verify").exists(),
        "no verify for a step that already failed"
    );

    let kept = muted_project(true);
    let out = kept.run(&[]).expect(0).stdout;
    assert_eq!(
        summary_state(&out, "t", 0, 1),
        "succeeded (exit code 1 muted: its failed tests are quarantined)",
        "{out}"
    );
    assert_eq!(
        lines(&kept.mark("verify")),
        ["ran"],
        "the muted exit still ran its check"
    );
}

#[test]
fn listings_reports_and_the_junit_file_carry_no_secret() {
    let p = Project::new(
        r#"stages:
  - name: s
    steps:
      - name: listed
        cache: false
        secrets: [TOKEN]
        split: { list: 'echo "item-${TOKEN:-none}"' }
        run: |
          echo "$BUILDFLEET_SHARD_ITEMS" >> "$MARK/items"
          echo "token=${TOKEN:-unset}" >> "$MARK/env"
      - name: reported
        secrets: [TOKEN]
        reports: [report.xml]
        run: |
          printf '%s\n' '<testsuite name="suite" tests="1" failures="1">' \
            "<testcase classname=\"suite\" name=\"login_$TOKEN\"><failure message=\"rejected $TOKEN\">x</failure></testcase>" \
            '</testsuite>' > report.xml
"#,
    );
    let junit = p.mark.path().join("junit.xml");
    let out = p.run(&["--junit", junit.to_str().unwrap()]).expect(1);
    assert_eq!(
        lines(&p.mark("items")),
        ["item-none"],
        "the listing had no secret"
    );
    assert_eq!(
        lines(&p.mark("env")),
        [format!("token={SECRET}")],
        "the step itself still gets it"
    );
    let report = std::fs::read_to_string(&junit).unwrap();
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("junit", &report),
    ] {
        assert!(!text.contains(SECRET), "{what} leaks the secret: {text}");
    }
    assert!(report.contains("login_***"), "{report}");
    assert!(report.contains("rejected ***"), "{report}");
    assert!(out.stdout.contains("login_***"), "{}", out.stdout);
}

/// The log lines a run printed for `label`'s stream `tag` (`|` stdout, `!`
/// stderr), in order.
fn printed<'a>(stdout: &'a str, label: &str, tag: char) -> Vec<&'a str> {
    let prefix = format!("{label} {tag} ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn a_replayed_log_prints_the_lines_the_step_printed() {
    let p = Project::new(
        r#"stages:
  - name: s
    steps:
      - name: count
        run: |
          seq -f 'seq-%.0f' 1 50000
          echo err-1 >&2
          seq -f 'seq-%.0f' 50001 100000
          echo err-2 >&2
          printf 'no-newline'
"#,
    );
    let ran = p.run(&[]).expect(0).stdout;
    let replayed = p.run(&[]).expect(0).stdout;
    assert!(
        summary_state(&replayed, "count", 0, 1).starts_with("cached"),
        "the second run is a replay: {replayed}"
    );
    let want: Vec<String> = (1..=100_000)
        .map(|i| format!("seq-{i}"))
        .chain(["no-newline".to_owned()])
        .collect();
    for (what, out) in [("ran", &ran), ("replayed", &replayed)] {
        assert_eq!(
            printed(out, "count#0", '|'),
            want,
            "{what}: every stdout line whole and in order"
        );
        assert_eq!(
            printed(out, "count#0", '!'),
            ["err-1", "err-2"],
            "{what}: stderr kept apart"
        );
    }
}

/// The run as `runs show --output json` gives it, less the time it has
/// been running (which moves on by itself).
fn shown(coordinator: &str, run: &str) -> serde_json::Value {
    let mut v = procs::json(&["runs", "show", run, "--coordinator", coordinator]);
    v.as_object_mut().unwrap().remove("duration_ms");
    v
}

#[test]
fn a_run_restored_after_kill_9_is_the_run_before_it() {
    let mark = tempfile::tempdir().unwrap();
    let (fleet, mut coord) = procs::Restartable::start(&[]);
    let _r = fleet.runner("r1");
    wait_for_runners(&fleet.coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buildfleet.yaml");
    // A listing lease, a step ended unrun by its condition, then a step
    // waiting for approval: nothing is running when the coordinator dies.
    std::fs::write(
        &file,
        with_mark(
            mark.path(),
            r#"stages:
  - name: build
    steps:
      - name: listed
        cache: false
        split: { list: 'printf "a\nb\n"' }
        run: 'echo "$BUILDFLEET_SHARD_ITEMS" >> "$MARK/items"'
      - { name: elsewhere, cache: false, if: "branch == 'no-such-branch'", run: 'touch "$MARK/elsewhere"' }
  - name: ship
    steps:
      - name: prod
        cache: false
        needs: [listed]
        approval: { timeout: 1h }
        run: 'echo deployed >> "$MARK/prod"'
"#,
        ),
    )
    .unwrap();
    let submit = procs::spawn_submit(&fleet.coord_url, &fleet.cache_url, &file);
    let run = wait_for_waiting_run(&fleet.coord_url);
    let before = shown(&fleet.coord_url, &run);
    coord.0.kill().unwrap(); // kill -9: nothing more is saved
    coord.0.wait().unwrap();
    let _coord = fleet.coordinator();
    wait_for_runners(&fleet.coord_url, 1);
    let mut after = shown(&fleet.coord_url, &run);
    // The restart itself is said on the run, after what was there.
    let notices = after["notices"].as_array_mut().unwrap();
    assert_eq!(
        notices.pop().unwrap(),
        "the coordinator restarted; 0 shard(s) or listing(s) in flight were leased again"
    );
    assert_eq!(
        after, before,
        "the restored run is the run before the restart"
    );
    Ran::of(bin().args(["approve", &run, "prod", "--coordinator", &fleet.coord_url])).expect(0);
    let stdout = Ran::waited(submit).expect(0).stdout;
    assert_eq!(
        lines(&mark.path().join("items")),
        ["a b"],
        "the listed shard ran once, before the restart, not again: {stdout}"
    );
    assert_eq!(lines(&mark.path().join("prod")), ["deployed"]);
    assert!(!mark.path().join("elsewhere").exists());
}

/// The id of the one run on `coordinator`, once its `prod` step waits for
/// approval.
fn wait_for_waiting_run(coordinator: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = serde_json::Value::Null;
    while std::time::Instant::now() < deadline {
        let runs = procs::json(&["runs", "--coordinator", coordinator]);
        if let Some(id) = runs[0]["run_id"].as_str() {
            last = procs::json(&["runs", "show", id, "--coordinator", coordinator]);
            let waiting = last["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["step"] == "prod" && s["state"] == "awaiting_approval");
            if waiting {
                return id.to_owned();
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("prod never waited for approval: {last:#}");
}
