//! The shell part of the CI integrations (`ci/buildfleet-ci.sh`, run by the
//! GitHub Action and the GitLab template) against a real fleet: it submits
//! with the CI job's context, keeps the JUnit report and the artifacts,
//! tells GitHub the run id, and fails the job exactly when the run is red.

mod procs;

use std::path::Path;
use std::process::Command;

use procs::{Ran, Servers};

const PIPELINE: &str = r#"version: 1
stages:
  - name: build
    steps:
      - name: build
        run: |
          mkdir -p dist
          echo "app for $BUILDFLEET_SHORT_SHA" > dist/app
          echo '<testsuite><testcase classname="t" name="builds"/></testsuite>' > report.xml
          test ! -e FAIL
        outputs: [dist/app]
        reports: [report.xml]
"#;

fn job(servers: &Servers, repo: &Path, github_output: &Path) -> Ran {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_buildfleet"))
        .parent()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/buildfleet-ci.sh");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ran::of(
        Command::new("bash")
            .arg(script)
            .current_dir(repo)
            .env_clear()
            .env("PATH", path)
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .env("BUILDFLEET_COORDINATOR", &servers.coord_url)
            .env("BUILDFLEET_CACHE", &servers.cache_url)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_REF", "refs/heads/main")
            .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
            .env("GITHUB_EVENT_NAME", "push")
            .env("GITHUB_ACTOR", "alice")
            .env("GITHUB_OUTPUT", github_output),
    )
}

#[test]
fn a_green_run_passes_the_job_and_leaves_its_report_artifacts_and_run_id() {
    let servers = Servers::start(&[]);
    let _runner = servers.runner("r1", &[]);
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("buildfleet.yaml"), PIPELINE).unwrap();
    let output = repo.path().join("github-output");
    let ran = job(&servers, repo.path(), &output).expect(0);
    assert!(
        ran.stdout
            .contains("for refs/heads/main @ 0123456789ab (push by alice)"),
        "{}",
        ran.text()
    );
    let out = repo.path().join("buildfleet-out");
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert!(junit.contains("name=\"t::builds\""), "{junit}");
    assert_eq!(
        std::fs::read_to_string(out.join("artifacts/build/dist/app")).unwrap(),
        "app for 0123456789ab\n"
    );
    let outputs = std::fs::read_to_string(&output).unwrap();
    let run_id = std::fs::read_to_string(out.join("run-id")).unwrap();
    assert!(
        outputs.contains(&format!("run-id={}", run_id.trim())),
        "{outputs}"
    );
}

#[test]
fn a_red_run_fails_the_job_and_still_leaves_its_report() {
    let servers = Servers::start(&[]);
    let _runner = servers.runner("r1", &[]);
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("buildfleet.yaml"), PIPELINE).unwrap();
    std::fs::write(repo.path().join("FAIL"), "").unwrap();
    let ran = job(&servers, repo.path(), &repo.path().join("github-output")).expect(1);
    assert!(ran.stdout.contains("FAILED: run "), "{}", ran.text());
    assert!(repo.path().join("buildfleet-out/junit.xml").exists());
}
