//! End-to-end tests against real `bash` processes.
//!
//! Every test makes the test binary a child subreaper first: the containers
//! these run in often have a PID 1 that never reaps zombies, and "the group is
//! gone" can only be observed once killed leftovers have been reaped.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::*;

/// Backstop so a broken implementation fails a test instead of hanging it.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn spec(command: &str) -> ExecSpec {
    become_subreaper().expect("prctl(PR_SET_CHILD_SUBREAPER)");
    ExecSpec {
        command: command.to_owned(),
        cwd: std::env::temp_dir(),
        env: Vec::new(),
        timeout: None,
        kill_grace: Duration::from_secs(5),
        supervisor: None,
        cgroups: Vec::new(),
        user: None,
    }
}

struct Run {
    report: ExecReport,
    chunks: Vec<OutputChunk>,
}

impl Run {
    fn bytes(&self, stream: LogStream) -> Vec<u8> {
        self.chunks
            .iter()
            .filter(|c| c.stream == stream)
            .flat_map(|c| c.data.iter().copied())
            .collect()
    }

    fn text(&self, stream: LogStream) -> String {
        String::from_utf8(self.bytes(stream)).expect("utf-8 output")
    }

    fn assert_group_gone(&self) {
        assert_eq!(
            killpg(Pid::from_raw(self.report.pgid), None),
            Err(Errno::ESRCH),
            "process group {} still has members; system notes: {}",
            self.report.pgid,
            self.text(LogStream::System)
        );
    }
}

/// Runs `spec`; `on_chunk` sees every chunk as it arrives and may cancel.
async fn run_with(
    spec: ExecSpec,
    mut on_chunk: impl FnMut(&OutputChunk, &watch::Sender<Option<String>>) + Send + 'static,
) -> Result<Run, ExecError> {
    let (tx, mut rx) = mpsc::channel(16);
    let (cancel_tx, cancel_rx) = watch::channel(None);
    let collector = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(chunk) = rx.recv().await {
            on_chunk(&chunk, &cancel_tx);
            chunks.push(chunk);
        }
        chunks
    });
    let report = tokio::time::timeout(HANG_GUARD, execute(spec, tx, cancel_rx))
        .await
        .expect("execute hung")?;
    let chunks = collector.await.expect("collector panicked");
    Ok(Run { report, chunks })
}

async fn run(spec: ExecSpec) -> Run {
    run_with(spec, |_, _| {}).await.expect("execute failed")
}

#[tokio::test]
async fn exit_code_zero_is_reported() {
    let run = run(spec("true")).await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 0 });
    run.assert_group_gone();
}

#[tokio::test]
async fn nonzero_exit_code_is_reported() {
    let run = run(spec("exit 3")).await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 3 });
}

#[tokio::test]
async fn death_by_signal_is_reported_as_signalled() {
    let run = run(spec("kill -9 $$")).await;
    assert_eq!(run.report.outcome, ExecOutcome::Signalled { signal: 9 });
    run.assert_group_gone();
}

#[tokio::test]
async fn unset_variable_fails_the_command() {
    let run = run(spec(r#"echo "value:${BUILDFLEET_EXEC_SURELY_UNSET}""#)).await;
    assert!(
        matches!(run.report.outcome, ExecOutcome::Exited { code } if code != 0),
        "{:?}",
        run.report.outcome
    );
    assert_eq!(run.text(LogStream::Stdout), "", "echo must not have run");
    assert!(run.text(LogStream::Stderr).contains("unbound variable"));
}

#[tokio::test]
async fn failing_pipeline_stage_and_failing_step_fail_the_command() {
    let run1 = run(spec("false | true; echo unreachable")).await;
    assert_eq!(run1.report.outcome, ExecOutcome::Exited { code: 1 });
    assert_eq!(run1.text(LogStream::Stdout), "");

    let run2 = run(spec("false; echo unreachable")).await;
    assert_eq!(run2.report.outcome, ExecOutcome::Exited { code: 1 });
    assert_eq!(run2.text(LogStream::Stdout), "");
}

#[tokio::test]
async fn spec_env_is_visible() {
    let mut s = spec(r#"printf '%s|%s\n' "$BF_ONE" "$BF_TWO""#);
    s.env = vec![
        ("BF_ONE".into(), "hello world".into()),
        ("BF_TWO".into(), "2".into()),
    ];
    let run = run(s).await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 0 });
    assert_eq!(run.text(LogStream::Stdout), "hello world|2\n");
}

#[tokio::test]
async fn unrelated_parent_env_is_not_inherited() {
    // No set_var: changing the environment of a threaded process races
    // with every other thread reading it. The test process already has
    // variables of its own (cargo and nextest set several).
    let foreign: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !INHERITED_ENV.contains(&k.as_str()))
        // bash sets these itself.
        .filter(|k| !["PWD", "OLDPWD", "SHLVL", "_"].contains(&k.as_str()))
        .collect();
    assert!(
        !foreign.is_empty(),
        "the test needs a variable outside {INHERITED_ENV:?} in its environment"
    );
    let run = run(spec("env")).await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 0 });
    let env = run.text(LogStream::Stdout);
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    for name in &foreign {
        assert!(!names.contains(&name.as_str()), "{name} leaked: {env}");
    }
    if std::env::var_os("PATH").is_some() {
        assert!(names.contains(&"PATH"), "PATH must be kept: {env}");
    }
}

#[tokio::test]
async fn cwd_is_respected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec("pwd -P");
    s.cwd = dir.path().to_owned();
    let run = run(s).await;
    let expected = dir.path().canonicalize().expect("canonicalize");
    assert_eq!(
        run.text(LogStream::Stdout),
        format!("{}\n", expected.display())
    );
}

#[tokio::test]
async fn missing_cwd_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec("true");
    s.cwd = dir.path().join("does-not-exist");
    let err = run_with(s.clone(), |_, _| {})
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, ExecError::Cwd { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&s.cwd.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn stdout_and_stderr_both_arrive_separately() {
    let run = run(spec("echo out; echo err >&2; echo out2")).await;
    assert_eq!(run.text(LogStream::Stdout), "out\nout2\n");
    assert_eq!(run.text(LogStream::Stderr), "err\n");
}

#[tokio::test]
async fn hundred_thousand_lines_arrive_in_order_batched() {
    let run = run(spec("seq 1 100000")).await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 0 });
    let text = run.text(LogStream::Stdout);
    let numbers: Vec<u32> = text
        .lines()
        .map(|l| l.parse().expect("numbered line"))
        .collect();
    assert_eq!(numbers, (1..=100_000).collect::<Vec<u32>>());
    let stdout_chunks = run
        .chunks
        .iter()
        .filter(|c| c.stream == LogStream::Stdout)
        .inspect(|c| assert!(c.data.ends_with(b"\n"), "chunk not line-aligned"))
        .count();
    assert!(
        stdout_chunks < 10_000,
        "lines were not batched: {stdout_chunks} chunks"
    );
}

#[tokio::test]
async fn output_without_trailing_newline_arrives() {
    let run = run(spec("printf 'a\\nno newline'; printf 'err tail' >&2")).await;
    assert_eq!(run.text(LogStream::Stdout), "a\nno newline");
    assert_eq!(run.text(LogStream::Stderr), "err tail");
}

#[tokio::test]
async fn overlong_line_is_split_and_noted() {
    let run = run(spec(
        "head -c 200000 /dev/zero | tr '\\0' x; echo; echo tail",
    ))
    .await;
    let mut expected = vec![b'x'; 200_000];
    expected.extend_from_slice(b"\ntail\n");
    assert_eq!(run.bytes(LogStream::Stdout), expected);
    for chunk in run.chunks.iter().filter(|c| c.stream == LogStream::Stdout) {
        assert!(chunk.data.ends_with(b"\n") || chunk.data.len() == output::MAX_LINE);
    }
    let notes = run.text(LogStream::System);
    assert_eq!(notes.matches("longer than").count(), 1, "{notes}");
}

#[tokio::test]
async fn timeout_terminates_the_whole_group() {
    let mut s = spec("sleep 1000 & sleep 1000 & wait");
    s.timeout = Some(Duration::from_millis(300));
    let run = run(s).await;
    assert_eq!(
        run.report.outcome,
        ExecOutcome::TimedOut {
            after: Duration::from_millis(300)
        }
    );
    let pgid = run.report.pgid;
    assert!(run.text(LogStream::System).contains(&format!(
        "timed out after 300ms: sent SIGTERM to process group {pgid}"
    )));
    run.assert_group_gone();
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    // The timeout only has to outlast bash reaching `trap`.
    let mut s = spec("trap '' TERM; sleep 1000 & sleep 1000");
    s.timeout = Some(Duration::from_secs(2));
    s.kill_grace = Duration::from_millis(200);
    let run = run(s).await;
    assert!(matches!(run.report.outcome, ExecOutcome::TimedOut { .. }));
    let pgid = run.report.pgid;
    let notes = run.text(LogStream::System);
    assert!(
        notes.contains(&format!("sent SIGTERM to process group {pgid}")),
        "{notes}"
    );
    assert!(
        notes.contains(&format!(
            "process group {pgid} still running 200ms after SIGTERM: sent SIGKILL"
        )),
        "{notes}"
    );
    run.assert_group_gone();
}

#[tokio::test]
async fn cancel_stops_the_group_with_the_reason() {
    // Cancelling only once "started" arrives also proves output is streamed
    // while the command runs: otherwise this would hang.
    let s = spec("echo started; sleep 1000 & sleep 1000 & wait");
    let run = run_with(s, |chunk, cancel| {
        if chunk.stream == LogStream::Stdout && chunk.data.starts_with(b"started") {
            cancel.send_replace(Some("user abort".into()));
        }
    })
    .await
    .expect("execute failed");
    assert_eq!(
        run.report.outcome,
        ExecOutcome::Cancelled {
            reason: "user abort".into()
        }
    );
    assert!(run
        .text(LogStream::System)
        .contains("cancelled (user abort): sent SIGTERM"));
    run.assert_group_gone();
}

#[tokio::test]
async fn background_process_left_after_exit_is_killed() {
    let run = run(spec("sleep 1000 & echo done")).await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 0 });
    assert_eq!(run.text(LogStream::Stdout), "done\n");
    let pgid = run.report.pgid;
    let notes = run.text(LogStream::System);
    assert!(
        notes.contains(&format!("sent SIGKILL to process group {pgid}")),
        "{notes}"
    );
    run.assert_group_gone();
}

#[tokio::test]
async fn pipe_held_by_process_outside_the_group_does_not_block_forever() {
    // `setsid` moves the sleep out of the group, so we cannot kill it; it holds
    // stdout open for 30s, far beyond the drain period. The shell waits until
    // the move has happened, or cleanup could kill the sleep while it is still
    // in the group.
    let run = run(spec(
        r#"setsid sleep 30 & p=$!
        while [ "$(cut -d' ' -f5 /proc/$p/stat)" = "$$" ]; do sleep 0.01; done
        echo "$p" >&2
        echo done"#,
    ))
    .await;
    assert_eq!(run.report.outcome, ExecOutcome::Exited { code: 0 });
    assert_eq!(run.text(LogStream::Stdout), "done\n");
    let notes = run.text(LogStream::System);
    assert!(notes.contains("stopped reading"), "{notes}");
    // Run directly, without the supervisor that would have caught it, the
    // escaped sleep is this test's to clean up.
    let escaped: i32 = run.text(LogStream::Stderr).trim().parse().unwrap();
    let _ = nix::sys::signal::kill(Pid::from_raw(escaped), nix::sys::signal::Signal::SIGKILL);
}
