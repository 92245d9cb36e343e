//! Progress on a terminal and off it. Under a pseudo-terminal (util-linux
//! `script`), `buildfleet run` draws a bar per stage — shards done of
//! total, time, what history predicts is left — with cursor movements; with
//! its output piped it prints plain lines only, not one escape sequence.

mod procs;

use std::process::Command;

use procs::bin;

const PIPELINE: &str = r#"version: 1
stages:
  - name: build
    steps:
      - name: compile
        run: echo compiled
  - name: test
    steps:
      - name: unit
        shards: 2
        run: sleep 0.4; echo "shard $BUILDFLEET_SHARD_INDEX ok"
"#;

/// The project, and a data directory outside it.
fn project() -> (tempfile::TempDir, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("buildfleet.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    (dir, file, tempfile::tempdir().unwrap())
}

fn exe() -> String {
    format!("{:?}", bin().get_program())
}

#[test]
fn a_terminal_gets_bars_per_stage() {
    let (_dir, file, data) = project();
    let data = data.path();
    // A 120x40 terminal, then the run in it; `script -e` exits as it does.
    let command = format!(
        "stty cols 120 rows 40 2>/dev/null; exec {} run {:?} --runners 2 --data {:?}",
        exe(),
        file,
        data
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .env("TERM", "xterm-256color")
        .output()
        .expect("util-linux script runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\x1b["),
        "cursor and colour sequences on a terminal: {text}"
    );
    for bar in ["1/1 shards", "2/2 shards"] {
        assert!(text.contains(bar), "a bar shows {bar:?}: {text}");
    }
    for stage in ["build", "test"] {
        assert!(text.contains(stage), "a bar per stage ({stage}): {text}");
    }
    assert!(
        text.contains("done in"),
        "a finished stage says how long it took: {text}"
    );
    assert!(
        text.contains("shard 1 ok"),
        "log lines still print above the bars: {text}"
    );
    assert!(text.contains("STEP"), "the summary follows: {text}");
}

#[test]
fn piped_output_is_plain_lines() {
    let (_dir, file, data) = project();
    let out = bin()
        .arg("run")
        .arg(&file)
        .args(["--runners", "2", "--data"])
        .arg(data.path())
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(
            !text.contains('\x1b'),
            "no escape sequence on {what}: {text}"
        );
        assert!(!text.contains("shards  "), "no bars on {what}: {text}");
    }
    assert!(stdout.contains("step compile succeeded"), "{stdout}");
    assert!(stdout.contains("unit#1 | shard 1 ok"), "{stdout}");
}
