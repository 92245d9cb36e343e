//! `buildfleet rerun RUN STEP`: a known-good deploy done again after a bad
//! one, with the earlier run's artifact and context — and really run, not
//! replayed from the step cache. The marker the deploy writes is the
//! evidence.

mod harness;
mod procs;

use buildfleet_proto::v1 as pb;
use harness::kind;
use pb::StateKind as K;
use procs::{bin, with_mark, Ran};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_redeploys_the_earlier_runs_artifact_for_real() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: build
    steps:
      - { name: build, run: 'cp src.txt app', outputs: [app] }
  - name: ship
    steps:
      - name: deploy
        run: echo "deployed $(cat app) for $BUILDFLEET_SHORT_SHA" >> "$MARK/deploys"
"#,
    );
    let on = async |commit: &str, src: &'static str| {
        let req = pb::SubmitRequest {
            pipeline_yaml: yaml.clone(),
            context: Some(pb::RunContext {
                r#ref: "refs/heads/main".into(),
                commit: commit.into(),
                event: "push".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        fleet.run_request(req, &[("src.txt", src)]).await
    };
    let (good, _) = on("aaaaaaaaaaaa1111", "good").await;
    assert_eq!(kind(&good.state), K::Succeeded);
    let (bad, _) = on("bbbbbbbbbbbb2222", "bad").await;
    assert_eq!(kind(&bad.state), K::Succeeded);
    let rerun = Ran::of(bin().args([
        "rerun",
        &good.run_id,
        "deploy",
        "--token-file",
        fleet.fleet.token_file.to_str().unwrap(),
        "--coordinator",
        &fleet.fleet.coordinator_url,
        "--actor",
        "alice",
    ]))
    .expect(0);
    assert!(
        rerun
            .stdout
            .contains(&format!("a re-run of step `deploy` of run {}", good.run_id)),
        "{}",
        rerun.stdout
    );
    let deploys = std::fs::read_to_string(mark.path().join("deploys")).unwrap();
    let lines: Vec<&str> = deploys.lines().collect();
    assert_eq!(
        lines,
        [
            "deployed good for aaaaaaaaaaaa",
            "deployed bad for bbbbbbbbbbbb",
            "deployed good for aaaaaaaaaaaa",
        ],
        "the re-run deploys the good run's artifact in its context, for real"
    );
    assert!(
        rerun.stdout.contains("re-run of step deploy of run"),
        "the new run says what it is: {}",
        rerun.stdout
    );
    let unknown = Ran::of(bin().args([
        "rerun",
        &good.run_id,
        "nope",
        "--token-file",
        fleet.fleet.token_file.to_str().unwrap(),
        "--coordinator",
        &fleet.fleet.coordinator_url,
    ]))
    .expect(2);
    assert!(
        unknown.stderr.contains("has no step `nope`"),
        "{}",
        unknown.stderr
    );
    fleet.stop().await;
}
