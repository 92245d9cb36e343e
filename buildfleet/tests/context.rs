//! The run context: which commit, ref and event a run is for reaches its
//! steps and its status, and a step that names a context variable is never
//! served a result made for another commit, while one that does not is
//! reused across commits.
mod harness;
mod procs;

use buildfleet_proto::v1 as pb;
use harness::{kind, stdout_of, step};
use pb::StateKind as K;
use procs::{lines, with_mark};

fn on(commit: &str, git_ref: &str) -> pb::RunContext {
    pb::RunContext {
        r#ref: git_ref.into(),
        commit: commit.into(),
        event: "push".into(),
        actor: "alice".into(),
        dirty: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_see_the_context_and_the_run_carries_it() {
    let fleet = harness::start(1).await;
    let yaml = "version: 1\nstages:\n  - name: s\n    steps:\n      - name: show\n        cache: false\n        run: 'echo \"$BUILDFLEET_REF|$BUILDFLEET_BRANCH|$BUILDFLEET_COMMIT|$BUILDFLEET_SHORT_SHA|$BUILDFLEET_EVENT\"'\n";
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let req = pb::SubmitRequest {
        pipeline_yaml: yaml.into(),
        context: Some(on(commit, "refs/heads/main")),
        ..Default::default()
    };
    let (status, events) = fleet.run_request(req, &[]).await;
    assert_eq!(kind(&status.state), K::Succeeded, "{status:?}");
    assert_eq!(
        stdout_of(&events, "show", 0).trim(),
        format!("refs/heads/main|main|{commit}|0123456789ab|push")
    );
    assert_eq!(status.context, Some(on(commit, "refs/heads/main")));
    let watched = events.iter().find_map(|e| match &e.event {
        Some(pb::run_event::Event::Context(c)) => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        watched,
        Some(on(commit, "refs/heads/main")),
        "a watcher reads what the run is for from the stream"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_naming_the_commit_is_keyed_by_it_and_others_are_reused_across_commits() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        "stages:\n  - name: s\n    steps:\n      - { name: plain, run: 'echo built >> \"$MARK/plain\"' }\n      - { name: tag, run: 'echo \"app:$BUILDFLEET_SHORT_SHA\" >> \"$MARK/tags\"' }\n",
    );
    let run = |commit: &'static str| {
        let req = pb::SubmitRequest {
            pipeline_yaml: yaml.clone(),
            context: Some(on(commit, "refs/heads/main")),
            ..Default::default()
        };
        fleet.run_request(req, &[("src.txt", "same inputs")])
    };
    let (first, _) = run("aaaaaaaaaaaa1").await;
    assert_eq!(kind(&first.state), K::Succeeded);
    let (second, _) = run("bbbbbbbbbbbb2").await;
    assert_eq!(
        kind(&step(&second, "plain").state),
        K::Cached,
        "a step that never names the context is reused on another commit"
    );
    assert_eq!(
        kind(&step(&second, "tag").state),
        K::Succeeded,
        "a step naming $BUILDFLEET_SHORT_SHA runs again for another commit"
    );
    let (third, _) = run("bbbbbbbbbbbb2").await;
    assert_eq!(
        kind(&step(&third, "tag").state),
        K::Cached,
        "the same commit again reuses the step's result"
    );
    assert_eq!(lines(&mark.path().join("plain")), ["built"]);
    assert_eq!(
        lines(&mark.path().join("tags")),
        ["app:aaaaaaaaaaaa", "app:bbbbbbbbbbbb"],
        "one tag per commit, each made once"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_var_reaches_its_steps_and_keys_only_the_steps_that_name_it() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = format!(
        "version: 1\nenv: {{ MARK: \"{}\", TARGET: none }}\nstages:\n  - name: s\n    steps:\n      - {{ name: plain, run: 'echo built >> \"$MARK/plain\"' }}\n      - {{ name: send, run: 'echo \"to $TARGET\" >> \"$MARK/sent\"' }}\n",
        mark.path().display()
    );
    let run = |target: &'static str| {
        let req = pb::SubmitRequest {
            pipeline_yaml: yaml.clone(),
            vars: [("TARGET".to_owned(), target.to_owned())].into(),
            ..Default::default()
        };
        fleet.run_request(req, &[("src.txt", "same")])
    };
    let (first, _) = run("staging").await;
    assert_eq!(kind(&first.state), K::Succeeded);
    let (second, _) = run("production").await;
    assert_eq!(
        kind(&step(&second, "plain").state),
        K::Cached,
        "a step that never names the variable is reused whatever its value"
    );
    assert_eq!(kind(&step(&second, "send").state), K::Succeeded);
    assert_eq!(
        lines(&mark.path().join("sent")),
        ["to production", "to staging"]
    );
    // An undeclared variable is refused at submission, naming it.
    let refused = fleet
        .client()
        .await
        .submit(pb::SubmitRequest {
            pipeline_yaml: yaml.clone(),
            input_root: Some(harness::upload(&fleet.fleet, mark.path()).await),
            vars: [("TARGTE".to_owned(), "x".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("`--var TARGTE`: the pipeline declares no variable"),
        "{}",
        refused.message()
    );
    fleet.stop().await;
}
