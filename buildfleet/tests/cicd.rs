//! `examples/cicd` end to end, as its README tells people to run it
//! (`examples/cicd/run`, an embedded fleet): on a feature branch the deploy
//! steps are skipped by their conditions and the run is green; on main the
//! build's artifact is pushed, pulled back, deployed to staging (the host
//! serves exactly its bytes), checked and, once approved, deployed to
//! production; a broken build fails its smoke test, the rollback runs, the
//! run is red and the webhook fires; an approval rejected or timed out
//! fails the run without deploying. The evidence is the world's own log
//! (what the registry and hosts received), read after each run.

mod procs;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use procs::{bin, receiver, Ran};

/// The commit the runs are for (the copies are not git checkouts).
const COMMIT: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cicd")
}

/// The example copied to a fresh directory (with `extra` files, and the
/// approval timeout replaced when asked), so a run can change its inputs.
fn copy_example(extra: &[(&str, &str)], approval_timeout: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", example().display()))
        .arg(dir.path())
        .status()
        .unwrap()
        .success();
    assert!(ok);
    for (name, body) in extra {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    if let Some(t) = approval_timeout {
        let file = dir.path().join("buildfleet.yaml");
        let yaml = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, yaml.replace("timeout: 1h", &format!("timeout: {t}"))).unwrap();
    }
    dir
}

/// One run of the example's launcher, its output read line by line.
struct Launched {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    work: tempfile::TempDir,
}

fn launch(dir: &Path, args: &[&str]) -> Launched {
    let work = tempfile::tempdir().unwrap();
    let mut child = Command::new(dir.join("run"))
        .args(args)
        .env("BUILDFLEET", env!("CARGO_BIN_EXE_buildfleet"))
        .env("CICD_WORK", work.path())
        .env_remove("BUILDFLEET_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Launched {
        child,
        lines,
        seen: Vec::new(),
        work,
    }
}

impl Launched {
    /// Reads output until a line contains `what` (within 3 minutes).
    fn until(&mut self, what: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {what:?}; output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the end: the exit code and the whole output.
    fn finish(mut self) -> (i32, String, Vec<String>) {
        let code = self.child.wait().unwrap().code().unwrap_or(-1);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let world = std::fs::read_to_string(self.work.path().join("world.log")).unwrap_or_default();
        (
            code,
            self.seen.join("\n"),
            world.lines().map(str::to_owned).collect(),
        )
    }

    /// The embedded fleet's coordinator URL and the file holding its
    /// admin token, from the line the run prints first.
    fn coordinator(&mut self) -> (String, String) {
        let line = self.until("embedded fleet: coordinator ");
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.get(6), Some(&"token-file"), "{line}");
        (words[3].to_owned(), words[7].to_owned())
    }
}

/// A run on main, launched and read until production waits for approval:
/// the run, its coordinator's URL and admin token file, and its id.
fn until_approval(dir: &Path) -> (Launched, (String, String), String) {
    let mut run = launch(dir, &["--ref", "refs/heads/main", "--commit", COMMIT]);
    let coordinator = run.coordinator();
    let id = run_id(&run.until(" submitted for "));
    run.until("step deploy-production waiting for approval");
    (run, coordinator, id)
}

fn run_id(out: &str) -> String {
    procs::run_id_of(out)
}

/// `digest` of each world-log line starting with `prefix`.
fn digests<'a>(world: &'a [String], prefix: &str) -> Vec<&'a str> {
    world
        .iter()
        .filter(|l| l.starts_with(prefix))
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect()
}

#[test]
fn on_a_feature_branch_the_deploys_are_skipped_by_their_conditions_and_the_run_is_green() {
    let dir = copy_example(&[], None);
    let (code, out, world) = launch(
        dir.path(),
        &["--ref", "refs/heads/feature", "--commit", COMMIT],
    )
    .finish();
    assert_eq!(code, 0, "{out}");
    for step in ["push", "deploy-staging", "smoke", "deploy-production"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{step} ")) && l.contains("0/1"))
            .unwrap_or_else(|| panic!("no summary row for {step}:\n{out}"));
        assert!(row.contains("skipped (condition false"), "{row}");
    }
    assert!(
        out.contains("skipped (condition false: branch is 'feature')"),
        "{out}"
    );
    assert!(
        world.is_empty(),
        "nothing may reach the world from a feature branch: {world:?}"
    );
}

#[test]
fn on_main_the_artifact_is_pushed_deployed_by_digest_and_after_approval_reaches_production() {
    let dir = copy_example(&[], None);
    let (run, (coordinator, token), id) = until_approval(dir.path());
    Ran::of(bin().args([
        "approve",
        &id,
        "deploy-production",
        "--token-file",
        &token,
        "--coordinator",
        &coordinator,
        "--actor",
        "alice",
    ]))
    .expect(0);
    let (code, out, world) = run.finish();
    assert_eq!(code, 0, "{out}");
    let pushed = digests(&world, "push app:");
    assert_eq!(pushed.len(), 1, "{world:?}");
    assert_eq!(
        digests(&world, "deploy staging "),
        pushed,
        "staging runs exactly the artifact that was built and pushed: {world:?}"
    );
    assert_eq!(digests(&world, "deploy production "), pushed, "{world:?}");
    assert!(out.contains("approved by alice at"), "{out}");
    assert!(
        out.contains("rollback-staging   0/1    skipped (condition false: no dependency failed)"),
        "{out}"
    );
    assert!(
        out.contains("[db] "),
        "the database service's output is kept: {out}"
    );
}

#[test]
fn a_broken_build_fails_its_smoke_test_the_rollback_runs_the_run_is_red_and_the_webhook_fires() {
    let (url, hooks) = receiver(Vec::new());
    let good = copy_example(&[], Some("1s"));
    let work = tempfile::tempdir().unwrap();
    // Both runs share CICD_WORK, so the world resumes what the first deployed.
    let shared = |dir: &Path, commit: &str| {
        let mut child = Command::new(dir.join("run"));
        child
            .args(["--ref", "refs/heads/main", "--commit", commit])
            .args(["--webhook", &format!("run-failed={url}")])
            .env("BUILDFLEET", env!("CARGO_BIN_EXE_buildfleet"))
            .env("CICD_WORK", work.path())
            .env_remove("BUILDFLEET_LOG");
        Ran::of(&mut child)
    };
    // The good version reaches staging (production's approval times out).
    let first = shared(good.path(), COMMIT);
    assert_eq!(first.code, Some(1), "{}", first.text());
    let broken = copy_example(&[("BROKEN", "on purpose\n")], Some("1s"));
    let second = shared(broken.path(), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_eq!(second.code, Some(1), "{}", second.text());
    let out = second.stdout;
    assert!(out.contains("smoke              0/1    failed"), "{out}");
    assert!(out.contains("rollback-staging   0/1    succeeded"), "{out}");
    assert!(
        out.contains("deploy-production  0/1    skipped because needs `smoke`, which failed"),
        "{out}"
    );
    let world: Vec<String> = std::fs::read_to_string(work.path().join("world.log"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let staging = digests(&world, "deploy staging ");
    assert_eq!(staging.len(), 2, "{world:?}");
    assert_eq!(
        digests(&world, "rollback staging "),
        [staging[0]],
        "the rollback puts the good version back: {world:?}"
    );
    procs::wait_for("the run-failed webhook", Duration::from_secs(20), || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.contains("\"run-failed\""))
            .count()
            >= 2
    });
}

#[test]
fn an_approval_rejected_or_timed_out_never_deploys_to_production() {
    // Rejected.
    let dir = copy_example(&[], None);
    let (run, (coordinator, token), id) = until_approval(dir.path());
    Ran::of(bin().args([
        "reject",
        &id,
        "deploy-production",
        "--token-file",
        &token,
        "--coordinator",
        &coordinator,
        "--actor",
        "bob",
        "--reason",
        "freeze week",
    ]))
    .expect(0);
    let (code, out, world) = run.finish();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("failed: rejected by bob: freeze week"),
        "{out}"
    );
    assert!(
        digests(&world, "deploy production ").is_empty(),
        "{world:?}"
    );
    // Timed out.
    let dir = copy_example(&[], Some("2s"));
    let (code, out, world) = launch(
        dir.path(),
        &["--ref", "refs/heads/main", "--commit", COMMIT],
    )
    .finish();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("approval timed out after 2s"), "{out}");
    assert!(
        digests(&world, "deploy production ").is_empty(),
        "{world:?}"
    );
    assert_eq!(digests(&world, "deploy staging ").len(), 1, "{world:?}");
}
