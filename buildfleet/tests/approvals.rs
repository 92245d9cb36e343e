//! Approvals end to end, the fleet as separate processes: `buildfleet
//! submit` waits while a step is waiting for approval, `approval-needed`
//! reaches a webhook, and `buildfleet approve` / `reject` decide it —
//! the marker the step writes is the evidence that it ran, or did not.

mod procs;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use buildfleet_model::State;
use procs::{bin, receiver, spawn_submit, wait_for, with_mark, Ran, Servers};

const GATED: &str = r#"stages:
  - name: build
    steps:
      - { name: build, run: 'true' }
  - name: ship
    steps:
      - name: prod
        approval: { timeout: 1h }
        run: echo deployed >> "$MARK/prod"
"#;

struct Waiting {
    servers: Servers,
    _runner: procs::Proc,
    submit: std::process::Child,
    run: String,
    mark: tempfile::TempDir,
    hooks: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// A fleet with a webhook, the gated pipeline submitted and its `prod`
/// step waiting for approval.
fn until_waiting() -> Waiting {
    let (url, hooks) = receiver(Vec::new());
    let hook = format!("approval-needed={url}");
    let servers = Servers::start(&["--webhook", &hook]);
    let runner = servers.runner("r1", &[]);
    let mark = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap().keep();
    let file = dir.join("buildfleet.yaml");
    std::fs::write(&file, with_mark(mark.path(), GATED)).unwrap();
    let mut submit = spawn_submit(&servers.coord_url, &servers.cache_url, &file);
    let mut out = BufReader::new(submit.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains(" submitted") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "submit ended early");
    }
    let run = procs::run_id_of(&line);
    // The rest of the output is read to its end by a thread so the
    // process never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let coord = servers.coord_url.clone();
    wait_for("prod to wait for approval", Duration::from_secs(30), || {
        rt.block_on(async {
            let mut c = buildfleet::wire::Coordinator::connect(
                &coord,
                &buildfleet_trust::ClientTrust::none(),
            )
            .await
            .unwrap();
            let status = c.get(&run).await.unwrap();
            status
                .steps
                .iter()
                .any(|s| s.name == "prod" && s.state == State::AwaitingApproval)
        })
    });
    Waiting {
        servers,
        _runner: runner,
        submit,
        run,
        mark,
        hooks,
    }
}

fn decide(w: &Waiting, args: &[&str]) -> Ran {
    Ran::of(bin().args(args).args([
        &w.run,
        "prod",
        "--coordinator",
        &w.servers.coord_url,
        "--actor",
        "alice",
    ]))
}

#[test]
fn an_approved_step_runs_and_the_webhook_said_it_was_waiting() {
    let w = until_waiting();
    assert!(
        !w.mark.path().join("prod").exists(),
        "nothing ran before the approval"
    );
    wait_for(
        "the approval-needed webhook",
        Duration::from_secs(20),
        || {
            w.hooks
                .lock()
                .unwrap()
                .iter()
                .any(|b| b.contains("\"approval-needed\""))
        },
    );
    let body = w.hooks.lock().unwrap()[0].clone();
    assert!(body.contains("step prod is waiting for approval"), "{body}");
    let out = decide(&w, &["approve"]).expect(0);
    assert!(
        out.stdout.contains("approved step `prod`"),
        "{}",
        out.stdout
    );
    let Waiting {
        mut submit, mark, ..
    } = w;
    let status = submit.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(procs::lines(&mark.path().join("prod")), ["deployed"]);
}

#[test]
fn a_rejected_step_never_runs_and_the_submit_fails() {
    let w = until_waiting();
    Ran::of(bin().args([
        "reject",
        &w.run,
        "prod",
        "--coordinator",
        &w.servers.coord_url,
    ]))
    .expect(2);
    let out = decide(&w, &["reject", "--reason", "freeze week"]).expect(0);
    assert!(
        out.stdout.contains("rejected step `prod`"),
        "{}",
        out.stdout
    );
    // Deciding again is refused: the step no longer waits.
    let again = decide(&w, &["approve"]).expect(2);
    assert!(
        again.stderr.contains("is not waiting for approval"),
        "{}",
        again.stderr
    );
    let Waiting {
        mut submit, mark, ..
    } = w;
    assert_eq!(submit.wait().unwrap().code(), Some(1));
    assert!(
        !mark.path().join("prod").exists(),
        "a rejected step must not run"
    );
}
