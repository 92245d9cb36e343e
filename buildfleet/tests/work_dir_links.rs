//! The runner never reads or writes through a link that leaves the work
//! directory. It runs with more rights than its steps, so a step that
//! points an output, a report or a dependency-cache path at the runner's
//! own files would otherwise have the runner upload them, and an input
//! tree holding `out -> /somewhere` would have an artifact written there.
//! Evidence from the effects: the outside file's digest is absent from the
//! cache, and nothing appears in the outside directory.

mod harness;
mod procs;

use buildfleet_cache::{CasClient, Digest};
use buildfleet_proto::v1 as pb;
use harness::{cache_reports, kind, step, system_of};
use pb::StateKind as K;

/// A directory outside every work directory, holding a file only the
/// runner should be able to name.
fn outside(secret: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.txt"), secret).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_reports_and_cache_paths_linked_out_of_the_work_dir_are_not_uploaded() {
    let secret = format!("runner-only {}", uuid::Uuid::new_v4());
    let out = outside(&secret);
    let o = out.path().display();
    let fleet = harness::start(1).await;
    let yaml = format!(
        r#"version: 1
caches:
  deps: {{ key_files: [lock.txt], paths: [vendor] }}
stages:
  - name: s
    steps:
      - name: leak-output
        cache: false
        run: ln -s {o}/secret.txt out.txt
        outputs: [out.txt]
      - name: leak-report
        cache: false
        run: ln -s {o}/secret.txt report.xml
        reports: [report.xml]
      - name: leak-cache
        cache: false
        caches: [deps]
        run: ln -s {o} vendor
      - name: inside-is-fine
        cache: false
        run: mkdir -p build/dist && echo ok > build/dist/app && ln -s build/dist dist
        outputs: [dist]
"#
    );
    let (status, events) = fleet.run(&yaml, &[("lock.txt", "1")]).await;

    assert_eq!(kind(&step(&status, "leak-output").state), K::Failed);
    let said = system_of(&events, "leak-output", 0);
    assert!(
        said.contains("`out.txt` leads outside the work directory"),
        "{said}"
    );

    let said = system_of(&events, "leak-report", 0);
    assert!(
        said.contains("report `report.xml` leads outside the work directory"),
        "{said}"
    );

    let saved = cache_reports(&status, "leak-cache", 0)
        .iter()
        .map(|r| r.detail.clone())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        saved.contains("`vendor` leads outside the work directory"),
        "{saved}"
    );

    assert_eq!(
        kind(&step(&status, "inside-is-fine").state),
        K::Succeeded,
        "a link that stays inside is followed"
    );

    let cas = CasClient::connect_with(&fleet.fleet.cache_url, &fleet.fleet.client)
        .await
        .unwrap();
    let leaked = Digest::of(secret.as_bytes());
    assert_eq!(
        cas.find_missing(&[leaked]).await.unwrap(),
        vec![leaked],
        "the runner-only file never reached the cache"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_artifact_is_not_written_through_an_input_link_that_leaves_the_work_dir() {
    let out = outside("unused");
    let fleet = harness::start(1).await;
    // The input tree holds `out -> <outside>`: an absolute link, which
    // inputs may carry (a Python venv's interpreter is one).
    let inputs = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(out.path(), inputs.path().join("out")).unwrap();
    std::fs::write(inputs.path().join("src.txt"), "v1").unwrap();
    let root = harness::upload(&fleet.fleet, inputs.path()).await;
    let yaml = r#"version: 1
stages:
  - name: build
    steps:
      - name: build
        cache: false
        run: rm out && mkdir -p out/dist && cp src.txt out/dist/app
        outputs: [out/dist]
  - name: ship
    steps:
      - name: deploy
        cache: false
        run: cat out/dist/app
"#;
    let id = fleet
        .submit_root(yaml, root, "")
        .await
        .expect("submitted")
        .run_id;
    let events = fleet.watch_all(&id).await;
    let status = fleet.get(&id).await;
    assert_eq!(kind(&step(&status, "build").state), K::Succeeded);
    assert_ne!(
        kind(&step(&status, "deploy").state),
        K::Succeeded,
        "the artifact could not be placed"
    );
    let said = system_of(&events, "deploy", 0);
    assert!(
        said.contains("`out/dist` leads outside the work directory"),
        "{said}"
    );
    assert!(
        !out.path().join("dist").exists(),
        "nothing was written through the link"
    );
    fleet.stop().await;
}
