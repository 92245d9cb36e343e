//! `split: { files }`: the matching files of the submitted tree divided
//! among the shards, each exactly once, in the environment and a file.

mod harness;
mod procs;

use procs::{bin, Ran};
use std::collections::BTreeSet;

use buildfleet_proto::v1 as pb;
use harness::{kind, stdout_of, step};

const PIPELINE: &str = r#"version: 1
stages:
  - name: s
    steps:
      - name: t
        shards: 3
        split: { files: "tests/**/test_*.py" }
        run: |
          test "$BUILDFLEET_SHARD_FILES" = "$BUILDFLEET_SHARD_ITEMS"
          for f in $BUILDFLEET_SHARD_ITEMS; do echo "env $f"; done
          while read -r f; do echo "file $f"; test -f "$f"; done < "$BUILDFLEET_SHARD_ITEMS_FILE"
"#;

#[test]
fn every_matching_file_runs_in_exactly_one_shard_and_ignored_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("buildfleet.yaml"), PIPELINE).unwrap();
    std::fs::write(dir.path().join(".gitignore"), "tests/skip/\n").unwrap();
    let mut expected = BTreeSet::new();
    for i in 0..7 {
        let rel = format!("tests/unit/test_{i}.py");
        std::fs::create_dir_all(dir.path().join("tests/unit")).unwrap();
        std::fs::write(dir.path().join(&rel), "").unwrap();
        expected.insert(rel);
    }
    std::fs::create_dir_all(dir.path().join("tests/skip")).unwrap();
    std::fs::write(dir.path().join("tests/skip/test_ignored.py"), "").unwrap();
    std::fs::write(dir.path().join("tests/unit/helper.py"), "").unwrap();
    let text = Ran::of(
        bin()
            .args(["run", "--runners", "2", "--data"])
            .arg(data.path())
            .arg(dir.path().join("buildfleet.yaml")),
    )
    .expect(0)
    .stdout;
    let mut from_env = Vec::new();
    let mut from_file = Vec::new();
    let mut shards_with_items = BTreeSet::new();
    for line in text.lines() {
        if let Some((label, rest)) = line.split_once(" | ") {
            if let Some(f) = rest.strip_prefix("env ") {
                from_env.push(f.to_string());
                shards_with_items.insert(label.to_string());
            } else if let Some(f) = rest.strip_prefix("file ") {
                from_file.push(f.to_string());
            }
        }
    }
    from_env.sort();
    from_file.sort();
    assert_eq!(
        from_env,
        expected.iter().cloned().collect::<Vec<_>>(),
        "{text}"
    );
    assert_eq!(from_file, from_env);
    assert_eq!(shards_with_items.len(), 3, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_matching_nothing_is_refused_before_the_run() {
    let fleet = harness::start(1).await;
    let root = harness::upload(&fleet.fleet, harness::write_files(&[("a.txt", "x")]).path()).await;
    let err = fleet.submit_root(PIPELINE, root, "").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .contains("step `t` splits by files, but `tests/**/test_*.py` matches no files"),
        "{}",
        err.message()
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_items_than_shards_means_fewer_shards() {
    let fleet = harness::start(2).await;
    let yaml = PIPELINE.replace("shards: 3", "shards: 8");
    let dir = harness::write_files(&[("tests/test_a.py", ""), ("tests/test_b.py", "")]);
    let root = harness::upload(&fleet.fleet, dir.path()).await;
    let id = fleet
        .client()
        .await
        .submit(pb::SubmitRequest {
            pipeline_yaml: yaml,
            pipeline_path: "t.yaml".into(),
            input_root: Some(root),
            split_items: [(
                "t".to_string(),
                pb::SplitItems {
                    items: vec!["tests/test_a.py".into(), "tests/test_b.py".into()],
                },
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run_id;
    let events = fleet.watch_all(&id).await;
    let status = fleet.get(&id).await;
    assert_eq!(kind(&status.state), pb::StateKind::Succeeded, "{status:?}");
    assert_eq!(step(&status, "t").shards.len(), 2);
    assert!(stdout_of(&events, "t", 0).contains("env tests/test_a.py"));
    assert!(stdout_of(&events, "t", 1).contains("env tests/test_b.py"));
    fleet.stop().await;
}
