//! Artifacts between steps, on a real embedded fleet: a dependant finds
//! its dependencies' outputs at their paths — hard-linked from the
//! runner's local cache, not copied — their digests are part of its
//! action, two dependencies writing one path differently stop it before
//! it starts, and `buildfleet artifacts` downloads what a run made.

mod harness;
mod procs;

use buildfleet_proto::v1 as pb;
use harness::{kind, stdout_of, step, system_of};
use pb::StateKind as K;
use procs::{bin, Ran};

const BUILD_DEPLOY: &str = r#"version: 1
stages:
  - name: build
    steps:
      - name: build
        inputs: [src.txt]
        run: |
          mkdir -p dist cov
          cp src.txt dist/app
          echo "lines: 42" > cov/report.txt
        outputs: [dist/app, cov]
  - name: ship
    steps:
      - name: deploy
        inputs: [deploy.sh]
        run: |
          echo "app=$(cat dist/app) cov=$(cat cov/report.txt) links=$(stat -c %h dist/app)"
"#;

fn files(src: &str) -> Vec<(&'static str, String)> {
    vec![
        ("src.txt", src.to_owned()),
        ("deploy.sh", "true\n".to_owned()),
    ]
}

async fn run(fleet: &harness::TestFleet, src: &str) -> (pb::RunStatus, Vec<pb::RunEvent>) {
    let f = files(src);
    let refs: Vec<(&str, &str)> = f.iter().map(|(a, b)| (*a, b.as_str())).collect();
    fleet.run(BUILD_DEPLOY, &refs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependant_receives_the_outputs_hard_linked_and_they_key_its_action() {
    let fleet = harness::start(1).await;
    let (first, events) = run(&fleet, "v1").await;
    assert_eq!(kind(&first.state), K::Succeeded, "{first:?}");
    let out = stdout_of(&events, "deploy", 0);
    assert!(out.contains("app=v1 cov=lines: 42"), "{out}");
    // One link in the local cache, one in the shard's directory (at least).
    let links: u32 = out.trim().rsplit("links=").next().unwrap().parse().unwrap();
    assert!(
        links >= 2,
        "the artifact was copied, not hard-linked: {out}"
    );
    let sys = system_of(&events, "deploy", 0);
    assert!(sys.contains("artifact dist/app (file "), "{sys}");
    let built = system_of(&events, "build", 0);
    assert!(
        built.contains("artifacts pinned in the cache until "),
        "a run's artifacts are kept for its retention: {built}"
    );
    assert!(sys.contains("from `build`"), "{sys}");

    // Same inputs again: both reused.
    let (second, _) = run(&fleet, "v1").await;
    assert_eq!(kind(&step(&second, "deploy").state), K::Cached);
    // The build's output changes while deploy's own inputs do not: the
    // artifact's digest is part of deploy's action, so it runs again.
    let (third, events) = run(&fleet, "v2").await;
    assert_eq!(kind(&step(&third, "build").state), K::Succeeded);
    assert_eq!(
        kind(&step(&third, "deploy").state),
        K::Succeeded,
        "a result made from another artifact must not stand in"
    );
    assert!(stdout_of(&events, "deploy", 0).contains("app=v2"));

    // `buildfleet artifacts` downloads what the run made, verified.
    let out = tempfile::tempdir().unwrap();
    let dl = Ran::of(
        bin()
            .args(["artifacts", &third.run_id, "--out"])
            .arg(out.path())
            .args(["--coordinator", &fleet.fleet.coordinator_url])
            .args(["--cache", &fleet.fleet.cache_url])
            .arg("--token-file")
            .arg(&fleet.fleet.token_file),
    )
    .expect(0);
    assert_eq!(
        std::fs::read_to_string(out.path().join("build/dist/app")).unwrap(),
        "v2"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("build/cov/report.txt")).unwrap(),
        "lines: 42\n"
    );
    assert!(dl.stdout.contains("(directory "), "{}", dl.stdout);
    let unknown = Ran::of(
        bin()
            .args(["artifacts", &third.run_id, "nope", "--out"])
            .arg(out.path())
            .args(["--coordinator", &fleet.fleet.coordinator_url])
            .args(["--cache", &fleet.fleet.cache_url])
            .arg("--token-file")
            .arg(&fleet.fleet.token_file),
    )
    .expect(2);
    assert!(
        unknown.stderr.contains("has no step `nope`"),
        "{}",
        unknown.stderr
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dependencies_writing_one_path_differently_stop_the_dependant() {
    let fleet = harness::start(2).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: make
    steps:
      - { name: left, run: 'echo left > out.txt', outputs: [out.txt] }
      - { name: right, run: 'echo right > out.txt', outputs: [out.txt] }
  - name: use
    steps:
      - { name: use, run: 'touch "$MARK/ran"' }
"#,
    );
    let (status, _) = fleet.run(&yaml, &[("x", "y")]).await;
    let used = step(&status, "use");
    assert_eq!(kind(&used.state), K::Failed);
    let reason = &used.state.as_ref().unwrap().reason;
    assert!(
        reason.contains("artifact `out.txt` comes from both `left`")
            && reason.contains("and `right`")
            && reason.contains("with different content"),
        "{reason}"
    );
    assert!(!mark.path().join("ran").exists(), "the step must not start");
    fleet.stop().await;
}
