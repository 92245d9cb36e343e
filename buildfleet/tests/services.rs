//! `services:` on a real embedded fleet: a step waits until its service is
//! ready, gets its port, and the service's whole process tree is gone after
//! the step; one that never becomes ready fails the step before its
//! command runs; one that dies during the step is said. Evidence comes
//! from markers the processes write and from whether their pids live.

mod harness;
mod procs;

use buildfleet_proto::v1 as pb;
use harness::{kind, stdout_of, step, system_of};
use pb::StateKind as K;
use procs::{alive, with_mark};

fn pid_in(path: &std::path::Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_runs_once_its_service_is_ready_and_the_service_tree_is_stopped_after() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: integration
        cache: false
        services:
          web:
            run: |
              (sleep 300 & echo $! > "$MARK/grandchild"; wait) &
              echo $$ > "$MARK/service"
              sleep 0.5
              echo "listening on $BUILDFLEET_SERVICE_WEB_PORT"
              touch "$MARK/up"
              exec sleep 300
            ready: test -e "$MARK/up"
            ready_timeout: 20s
        run: |
          test -e "$MARK/up"
          echo "port=$BUILDFLEET_SERVICE_WEB_PORT"
"#,
    );
    let (status, events) = fleet.run(&yaml, &[("x", "y")]).await;
    assert_eq!(kind(&status.state), K::Succeeded, "{status:?}");
    let out = stdout_of(&events, "integration", 0);
    let port: u16 = out.trim().strip_prefix("port=").unwrap().parse().unwrap();
    assert!(port > 0);
    let sys = system_of(&events, "integration", 0);
    assert!(
        sys.contains("service web is ready (BUILDFLEET_SERVICE_WEB_PORT = "),
        "{sys}"
    );
    assert!(sys.contains("service web stopped"), "{sys}");
    assert!(
        sys.contains(&format!("[web] listening on {port}")),
        "the service's output is kept: {sys}"
    );
    for marker in ["service", "grandchild"] {
        let pid = pid_in(&mark.path().join(marker));
        assert!(
            !alive(pid),
            "the service's {marker} (pid {pid}) outlived the step"
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_becomes_ready_fails_the_step_before_its_command() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: integration
        services:
          db:
            run: 'echo "FATAL: could not bind"; exec sleep 300'
            ready: 'echo "no response"; false'
            ready_timeout: 1s
        run: touch "$MARK/ran"
"#,
    );
    let (status, events) = fleet.run(&yaml, &[("x", "y")]).await;
    let st = step(&status, "integration");
    assert_eq!(kind(&st.state), K::Failed);
    let reason = &st.state.as_ref().unwrap().reason;
    assert!(
        reason.starts_with("service-not-ready: db (not ready after 1s"),
        "{reason}"
    );
    assert!(
        reason.contains("no response"),
        "the last check is said: {reason}"
    );
    assert!(
        reason.contains("FATAL: could not bind"),
        "the service's output is said: {reason}"
    );
    assert!(
        !mark.path().join("ran").exists(),
        "the command must not run"
    );
    assert!(system_of(&events, "integration", 0).contains("[db] FATAL: could not bind"));
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_ready_command_a_service_is_ready_when_its_port_accepts_and_a_death_is_said() {
    let fleet = harness::start(1).await;
    let mark = tempfile::tempdir().unwrap();
    // `short` dies when the step tells it to; the step then waits until
    // its supervisor (the service shell's parent) is reaped by the runner,
    // so the death is over before the step ends however slow the machine.
    let yaml = with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: web
        cache: false
        services:
          http:
            run: exec python3 -m http.server "$BUILDFLEET_SERVICE_HTTP_PORT" --bind 127.0.0.1
          short:
            run: 'echo $PPID > "$MARK/short.sup"; while [ ! -e "$MARK/die" ]; do sleep 0.05; done; exit 3'
            ready: 'test -s "$MARK/short.sup"'
        run: |
          python3 -c "import urllib.request,os; print(urllib.request.urlopen('http://127.0.0.1:%s/' % os.environ['BUILDFLEET_SERVICE_HTTP_PORT']).status)"
          touch "$MARK/die"
          while kill -0 "$(cat "$MARK/short.sup")" 2>/dev/null; do sleep 0.05; done
"#,
    );
    let (status, events) = fleet.run(&yaml, &[("x", "y")]).await;
    assert_eq!(kind(&status.state), K::Succeeded, "{status:?}");
    assert_eq!(stdout_of(&events, "web", 0).trim(), "200");
    let sys = system_of(&events, "web", 0);
    assert!(
        sys.contains("service short exited with code 3 during the step"),
        "{sys}"
    );
    fleet.stop().await;
}
