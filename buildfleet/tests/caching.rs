//! Step results and dependency caches end to end: real fleet, real RocksDB,
//! real processes. Every "not run again" is proven by a trace file the step
//! itself appends to.

mod harness;

use buildfleet_proto::v1 as pb;
use harness::{
    cache_report, cache_reports, kind, outcome, stdout_of, step, system_of, trace_lines,
};
use pb::CacheOutcome as C;
use pb::StateKind as K;

fn traced(trace: &std::path::Path, body: &str) -> String {
    format!("version: 1\nenv:\n  TRACE: {}\n{body}", trace.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_step_is_not_run_again_and_its_log_is_replayed() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = traced(
        &trace,
        r#"stages:
  - name: s
    steps:
      - name: build
        run: echo "building $(cat src.txt)"; echo built >> "$TRACE"; mkdir -p dist; cp src.txt dist/app
        outputs: [dist/app]
"#,
    );
    let files = [("src.txt", "v1")];
    let (first, _) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&first.state), K::Succeeded, "{first:?}");
    assert_eq!(outcome(cache_report(&first, "build", 0, "step")), C::Miss);
    assert!(cache_reports(&first, "build", 0)
        .iter()
        .any(|r| r.cache == "step" && outcome(r) == C::Saved));

    let (second, events) = fleet.run_with(&yaml, &files, false).await;
    assert_eq!(kind(&second.state), K::Succeeded, "cached counts as green");
    assert_eq!(kind(&step(&second, "build").state), K::Cached);
    assert_eq!(outcome(cache_report(&second, "build", 0, "step")), C::Hit);
    assert_eq!(
        trace_lines(&trace),
        vec!["built"],
        "the command ran only once"
    );
    assert!(stdout_of(&events, "build", 0).contains("building v1"));
    let system = system_of(&events, "build", 0);
    assert!(
        system.contains("cached: reusing the result of action"),
        "{system}"
    );
    assert!(
        system.contains("output dist/app (file) in the cache as"),
        "{system}"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_input_misses_and_the_reason_names_the_path() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = traced(
        &trace,
        "stages:\n  - name: s\n    steps:\n      - { name: t, run: 'cat a.txt b.txt >> \"$TRACE\"' }\n",
    );
    fleet
        .run_with(&yaml, &[("a.txt", "1\n"), ("b.txt", "1\n")], false)
        .await;
    let (second, _) = fleet
        .run_with(&yaml, &[("a.txt", "2\n"), ("b.txt", "1\n")], false)
        .await;
    assert_eq!(kind(&step(&second, "t").state), K::Succeeded);
    let miss = cache_report(&second, "t", 0, "step");
    assert_eq!(outcome(miss), C::Miss);
    assert_eq!(miss.detail, "input path a.txt (changed)");
    assert_eq!(trace_lines(&trace).len(), 4, "both runs ran the command");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_globs_ignore_unrelated_files_and_env_changes_are_named() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = |flag: &str| {
        traced(
            &trace,
            &format!(
                "stages:\n  - name: s\n    steps:\n      - name: t\n        inputs: [\"src/**\"]\n        env: {{ FLAG: \"{flag}\" }}\n        run: cat src/x >> \"$TRACE\"\n"
            ),
        )
    };
    fleet
        .run_with(&yaml("a"), &[("src/x", "x\n"), ("README", "one")], false)
        .await;
    let (readme_changed, _) = fleet
        .run_with(&yaml("a"), &[("src/x", "x\n"), ("README", "two")], false)
        .await;
    assert_eq!(kind(&step(&readme_changed, "t").state), K::Cached);
    let (env_changed, _) = fleet
        .run_with(&yaml("b"), &[("src/x", "x\n"), ("README", "two")], false)
        .await;
    let miss = cache_report(&env_changed, "t", 0, "step");
    assert_eq!(outcome(miss), C::Miss);
    assert_eq!(miss.detail, "env FLAG changed");
    assert_eq!(trace_lines(&trace).len(), 2);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cache_and_cache_false_force_the_step_to_run() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = traced(
        &trace,
        r#"stages:
  - name: s
    steps:
      - { name: cached, run: 'echo c >> "$TRACE"' }
      - { name: always, run: 'echo a >> "$TRACE"', cache: false }
"#,
    );
    fleet.run_with(&yaml, &[], false).await;
    let (second, _) = fleet.run_with(&yaml, &[], false).await;
    assert_eq!(kind(&step(&second, "cached").state), K::Cached);
    assert_eq!(kind(&step(&second, "always").state), K::Succeeded);
    assert_eq!(
        outcome(cache_report(&second, "always", 0, "step")),
        C::Disabled
    );
    let (third, _) = fleet.run_with(&yaml, &[], true).await;
    assert_eq!(kind(&step(&third, "cached").state), K::Succeeded);
    assert_eq!(
        outcome(cache_report(&third, "cached", 0, "step")),
        C::Disabled
    );
    let mut lines = trace_lines(&trace);
    lines.sort();
    assert_eq!(lines, vec!["a", "a", "a", "c", "c"]);
    fleet.stop().await;
}

/// An "install" that records every time it really ran.
fn install_pipeline(trace: &std::path::Path, restore: &str) -> String {
    traced(
        trace,
        &format!(
            r#"caches:
  deps:
    key_files: [lock.txt]
    paths: [deps]
    version: "1"
    restore: [{restore}]
stages:
  - name: s
    steps:
      - name: install
        cache: false
        caches: [deps]
        run: |
          echo "cache said $BUILDFLEET_CACHE_DEPS"
          if [ "$BUILDFLEET_CACHE_DEPS" != hit ]; then
            mkdir -p deps; cp lock.txt deps/installed; echo installed >> "$TRACE"
          fi
          cat deps/installed
"#
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependency_cache_hits_exactly_falls_back_by_prefix_and_explains_misses() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = install_pipeline(&trace, "deps/1/");

    let (first, _) = fleet
        .run_with(&yaml, &[("lock.txt", "a==1\n")], false)
        .await;
    assert_eq!(kind(&first.state), K::Succeeded, "{first:?}");
    let miss = cache_report(&first, "install", 0, "deps");
    assert_eq!(outcome(miss), C::Miss);
    assert!(
        miss.detail.contains("no earlier entry for cache `deps`"),
        "{}",
        miss.detail
    );
    assert!(cache_reports(&first, "install", 0)
        .iter()
        .any(|r| r.cache == "deps" && outcome(r) == C::Saved));

    let (second, events) = fleet
        .run_with(&yaml, &[("lock.txt", "a==1\n")], false)
        .await;
    assert_eq!(outcome(cache_report(&second, "install", 0, "deps")), C::Hit);
    let out = stdout_of(&events, "install", 0);
    assert!(
        out.contains("cache said hit") && out.contains("a==1"),
        "{out}"
    );
    assert!(
        !cache_reports(&second, "install", 0)
            .iter()
            .any(|r| outcome(r) == C::Saved),
        "an exact hit is not saved again"
    );

    let (third, events) = fleet
        .run_with(&yaml, &[("lock.txt", "a==2\n")], false)
        .await;
    let fallback = cache_report(&third, "install", 0, "deps");
    assert_eq!(outcome(fallback), C::Fallback);
    assert!(
        fallback.detail.contains("key file lock.txt changed"),
        "{}",
        fallback.detail
    );
    assert!(
        fallback.detail.contains("via `restore: deps/1/`"),
        "{}",
        fallback.detail
    );
    let out = stdout_of(&events, "install", 0);
    assert!(out.contains("cache said fallback"), "{out}");
    assert_eq!(trace_lines(&trace), vec!["installed", "installed"]);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallbacks_a_lockfile_change_is_a_miss_naming_the_file() {
    let fleet = harness::start(1).await;
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let yaml = install_pipeline(&trace, "");
    fleet
        .run_with(&yaml, &[("lock.txt", "a==1\n")], false)
        .await;
    let (second, _) = fleet
        .run_with(&yaml, &[("lock.txt", "a==2\n")], false)
        .await;
    let miss = cache_report(&second, "install", 0, "deps");
    assert_eq!(outcome(miss), C::Miss);
    assert_eq!(miss.detail, "key file lock.txt changed");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_save_is_marked_but_the_step_stays_green() {
    let fleet = harness::start(1).await;
    let yaml = r#"version: 1
caches:
  deps: { key_files: [lock.txt], paths: [never-created] }
stages:
  - name: s
    steps:
      - { name: install, run: 'true', caches: [deps] }
"#;
    let (status, events) = fleet.run_with(yaml, &[("lock.txt", "x")], false).await;
    assert_eq!(kind(&status.state), K::Succeeded);
    let failed = cache_reports(&status, "install", 0)
        .iter()
        .find(|r| outcome(r) == C::SaveFailed)
        .expect("a cache-save-failed mark");
    assert!(
        failed.detail.contains("`never-created` is not a directory"),
        "{}",
        failed.detail
    );
    assert!(system_of(&events, "install", 0).contains("cache-save-failed"));
    fleet.stop().await;
}

/// The stdout and stderr chunks of one shard, in the order sent.
fn output_chunks(events: &[pb::RunEvent], step: &str) -> Vec<(i32, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::run_event::Event::Log(l))
                if l.step == step && l.stream != pb::LogStream::System as i32 =>
            {
                Some((l.stream, l.data.clone()))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_log_is_the_stream_watchers_saw_when_the_step_ran() {
    let fleet = harness::start(1).await;
    // 100,000 numbered lines with stderr lines among them: enough chunks
    // that any re-cutting of the stored log would split some line.
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - name: loud
        run: |
          seq -f 'seq-%g' 1 50000
          echo "err-1" >&2
          seq -f 'seq-%g' 50001 100000
          echo "err-2" >&2
          printf 'no newline at the end'
"#;
    let (first, ran) = fleet.run_with(yaml, &[], false).await;
    assert_eq!(kind(&first.state), K::Succeeded, "{first:?}");
    let (second, replayed) = fleet.run_with(yaml, &[], false).await;
    assert_eq!(kind(&step(&second, "loud").state), K::Cached);
    let live = output_chunks(&ran, "loud");
    let again = output_chunks(&replayed, "loud");
    assert!(live.len() > 10, "the run streamed {} chunks", live.len());
    assert_eq!(
        live.len(),
        again.len(),
        "the replay sends the chunks the run sent"
    );
    for (i, (a, b)) in live.iter().zip(&again).enumerate() {
        assert_eq!(a, b, "chunk {i} differs between the run and its replay");
    }
    let stderr: Vec<&[u8]> = again
        .iter()
        .filter(|(s, _)| *s == pb::LogStream::Stderr as i32)
        .map(|(_, d)| d.as_slice())
        .collect();
    assert_eq!(
        stderr,
        [&b"err-1\n"[..], &b"err-2\n"[..]],
        "stderr kept apart"
    );
    let stdout: Vec<u8> = again
        .iter()
        .filter(|(s, _)| *s == pb::LogStream::Stdout as i32)
        .flat_map(|(_, d)| d.clone())
        .collect();
    let expected: String = (1..=100_000)
        .map(|i| format!("seq-{i}\n"))
        .chain(std::iter::once("no newline at the end".to_owned()))
        .collect();
    assert!(stdout == expected.as_bytes(), "every line, whole and once");
    fleet.stop().await;
}
