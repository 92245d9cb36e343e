//! Cache trust scopes on a real embedded fleet: a feature branch's
//! results never answer a protected ref, and one project's dependency
//! cache is never another's fallback. The evidence is the trace each step
//! writes when it really runs.

mod harness;

use buildfleet_proto::v1 as pb;
use harness::{cache_report, kind, outcome, trace_lines};
use pb::CacheOutcome as C;
use pb::StateKind as K;

fn request(yaml: &str, git_ref: &str, project: &str) -> pb::SubmitRequest {
    pb::SubmitRequest {
        pipeline_yaml: yaml.to_owned(),
        project: project.to_owned(),
        context: Some(pb::RunContext {
            r#ref: git_ref.into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            event: "push".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_branch_result_is_invisible_to_a_protected_ref() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = format!(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - name: build\n        run: echo ran >> {}\n",
        trace.display()
    );
    let files = [("src.txt", "v1")];
    let run = async |git_ref: &str| {
        let (status, _) = fleet
            .run_request(request(&yaml, git_ref, "app"), &files)
            .await;
        let step = &status.steps[0];
        (
            kind(&step.state),
            cache_report(&status, "build", 0, "step").clone(),
        )
    };

    let (state, _) = run("refs/heads/feature").await;
    assert_eq!(state, K::Succeeded);
    // The feature branch reads its own overlay.
    let (state, hit) = run("refs/heads/feature").await;
    assert_eq!(state, K::Cached);
    assert!(
        hit.detail.contains("overlay of refs/heads/feature") && hit.detail.contains("project app"),
        "the hit says where it came from: {}",
        hit.detail
    );
    // main never reads it: the step runs again.
    let (state, miss) = run("refs/heads/main").await;
    assert_eq!(state, K::Succeeded, "{miss:?}");
    assert_eq!(outcome(&miss), C::Miss);
    assert_eq!(trace_lines(&trace).len(), 2, "main ran the step itself");
    // What main wrote is shared: another branch reads it.
    let (state, hit) = run("refs/heads/other").await;
    assert_eq!(state, K::Cached);
    assert!(hit.detail.contains("shared scope"), "{}", hit.detail);
    assert!(
        hit.detail.contains("written by runner-1"),
        "the writer is the runner's token: {}",
        hit.detail
    );
    assert_eq!(trace_lines(&trace).len(), 2);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_projects_dependency_cache_is_never_anothers_fallback() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = format!(
        r#"version: 1
caches:
  deps:
    key_files: [lock.txt]
    paths: [deps]
    restore: [deps/]
stages:
  - name: s
    steps:
      - name: install
        cache: false
        caches: [deps]
        run: |
          if [ "$BUILDFLEET_CACHE_DEPS" = miss ]; then mkdir -p deps; cp lock.txt deps/installed; fi
          echo "$BUILDFLEET_CACHE_DEPS $(cat deps/installed)" >> {}
"#,
        trace.display()
    );
    let main = "refs/heads/main";
    let (a, _) = fleet
        .run_request(request(&yaml, main, "project-a"), &[("lock.txt", "a==1")])
        .await;
    assert_eq!(kind(&a.state), K::Succeeded, "{a:?}");
    // Project B, other lockfile: A's entry matches `restore: deps/` by
    // name, but it is A's — B starts clean.
    let (b, _) = fleet
        .run_request(request(&yaml, main, "project-b"), &[("lock.txt", "b==1")])
        .await;
    assert_eq!(outcome(cache_report(&b, "install", 0, "deps")), C::Miss);
    // Project A itself does fall back to its own entry.
    let (a2, _) = fleet
        .run_request(request(&yaml, main, "project-a"), &[("lock.txt", "a==2")])
        .await;
    let fallback = cache_report(&a2, "install", 0, "deps");
    assert_eq!(outcome(fallback), C::Fallback, "{}", fallback.detail);
    assert!(
        fallback.detail.contains("project project-a"),
        "{}",
        fallback.detail
    );
    assert_eq!(
        trace_lines(&trace),
        vec!["miss a==1", "miss b==1", "fallback a==1"],
        "B never saw A's files"
    );
    fleet.stop().await;
}
