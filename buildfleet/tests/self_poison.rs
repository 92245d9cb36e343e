//! Runners cannot poison themselves (issue 13, item 4): a step that
//! rewrites a hard-linked input and puts its mtime back does not reach the
//! next shard — caught by the entry's ctime as root, refused outright
//! (EACCES) as a step user — and shards of one runner running as uids of
//! their own cannot read each other's environment. Real fleets: embedded
//! for the first two, separate processes for the runner flags. This
//! machine runs the tests as root; where a test needs root and does not
//! have it, it checks the runner says so instead.

mod harness;
mod procs;

use std::os::unix::fs::PermissionsExt;

use buildfleet_proto::v1 as pb;
use buildfleet_runner::step_users::StepUsers;
use harness::{kind, stdout_of, step, system_of};
use procs::{bin, wait_for_runners, Ran};

fn root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// As long as the step's `POISONED-BYTES!\n`: a rewrite that keeps the size.
const TRUE_BYTES: &str = "the true bytes!\n";

#[tokio::test]
async fn a_root_step_that_rewrites_a_linked_input_and_puts_its_mtime_back_does_not_reach_the_next_shard(
) {
    // One runner: both shards link input.txt from the same local cache.
    let fleet = harness::start(1).await;
    let yaml = r#"version: 1
stages:
  - name: one
    steps:
      - name: poison
        cache: false
        run: |
          chmod u+w input.txt
          printf 'POISONED-BYTES!\n' > input.txt
          chmod 444 input.txt
          touch -d '2000-01-01 00:00:00 UTC' input.txt
          echo "now: $(cat input.txt), mtime $(stat -c %Y input.txt), mode $(stat -c %a input.txt)"
  - name: two
    steps:
      - name: reader
        cache: false
        run: cat input.txt
"#;
    let (status, events) = fleet.run(yaml, &[("input.txt", TRUE_BYTES)]).await;
    let poisoner = stdout_of(&events, "poison", 0);
    assert!(
        poisoner.contains("now: POISONED-BYTES!, mtime 946684800, mode 444"),
        "the step did rewrite its linked input and put size, mode and mtime back: {poisoner}"
    );
    assert_eq!(
        kind(&step(&status, "reader").state),
        pb::StateKind::Succeeded
    );
    assert_eq!(
        stdout_of(&events, "reader", 0),
        TRUE_BYTES,
        "the next shard reads the true bytes"
    );
    let said = system_of(&events, "reader", 0);
    assert!(
        said.contains("1 input file(s) (first: input.txt) had changed in the runner's local cache")
            && said.contains("fetched again"),
        "the shard's log says its input was fetched again: {said}"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_step_user_cannot_write_a_linked_input_but_owns_its_directory() {
    let started = harness::start_as(1, StepUsers::parse("65534").unwrap()).await;
    if !root() {
        let err = format!("{:#}", started.err().expect("only root can switch users"));
        assert!(err.contains("cannot run steps as uid 65534"), "{err}");
        return;
    }
    let fleet = started.expect("fleet starts");
    let yaml = r#"version: 1
caches:
  deps: { key_files: [lock.txt], paths: [deps] }
stages:
  - name: one
    steps:
      - name: try
        cache: false
        caches: [deps]
        outputs: [made.txt]
        run: |
          echo "uid $(id -u) home $HOME"
          attempt() { if "$@" 2> err.txt; then echo "DID: $*"; else echo "refused: $* ($(cat err.txt))"; fi; }
          attempt sh -c 'printf POISON >> input.txt'
          attempt touch -d '2000-01-01 00:00:00 UTC' input.txt
          attempt chmod u+w input.txt
          echo made > made.txt
          mkdir -p deps; echo "cache $BUILDFLEET_CACHE_DEPS" > deps/new && rm deps/new && echo "wrote in deps"
          if [ -e deps/installed ]; then attempt sh -c 'echo more >> deps/installed'; else echo installed > deps/installed; fi
          touch "$HOME/ok" "$TMPDIR/ok"
          rm input.txt && echo mine > input.txt && echo "replaced its own link: $(cat input.txt)"
  - name: two
    steps:
      - name: reader
        cache: false
        run: cat input.txt
"#;
    let files = [("input.txt", TRUE_BYTES), ("lock.txt", "1")];
    for round in ["first", "second"] {
        let (status, events) = fleet.run(yaml, &files).await;
        let out = stdout_of(&events, "try", 0);
        assert_eq!(
            kind(&step(&status, "try").state),
            pb::StateKind::Succeeded,
            "{round}: {out}{}",
            system_of(&events, "try", 0)
        );
        assert!(out.contains("uid 65534 home /"), "{round}: {out}");
        for refused in [
            "refused: sh -c printf POISON >> input.txt (sh: 1: cannot create input.txt: Permission denied)",
            "refused: touch -d 2000-01-01 00:00:00 UTC input.txt (touch: cannot touch 'input.txt': Permission denied)",
            "refused: chmod u+w input.txt (chmod: changing permissions of 'input.txt': Operation not permitted)",
        ] {
            assert!(out.contains(refused), "{round}: {refused}\n{out}");
        }
        assert!(!out.contains("DID:"), "{round}: {out}");
        assert!(out.contains("replaced its own link: mine"), "{out}");
        assert!(out.contains("wrote in deps"), "{out}");
        if round == "second" {
            // The restored dependency cache: its directory is the step's,
            // its files (adopted into the local cache from the first
            // round's, which 65534 wrote) are the runner's.
            assert!(
                out.contains("refused: sh -c echo more >> deps/installed (sh: 1: cannot create deps/installed: Permission denied)"),
                "{out}"
            );
        }
        assert_eq!(stdout_of(&events, "reader", 0), TRUE_BYTES, "{round}");
        let said = system_of(&events, "reader", 0);
        assert!(!said.contains("had changed"), "{round}: {said}");
    }
    fleet.stop().await;
}

#[test]
fn a_root_runner_without_a_step_user_refuses_to_start_before_connecting() {
    // Nothing listens on port 1: a runner that got as far as connecting
    // would retry for ever instead of exiting.
    let mut cmd = bin();
    cmd.args([
        "runner",
        "--coordinator",
        "http://127.0.0.1:1",
        "--cache",
        "http://127.0.0.1:1",
    ]);
    if root() {
        let ran = Ran::of(&mut cmd).expect(1);
        assert!(
            ran.stderr
                .contains("this runner runs as root and no --step-user is set")
                && ran.stderr.contains("--allow-root-steps"),
            "{}",
            ran.text()
        );
    }
    let ran = Ran::of(cmd.args(["--step-user", "100000-100001", "--slots", "3"])).expect(1);
    assert!(
        ran.stderr
            .contains("--step-user 100000-100001 has 2 uid(s) for 3 slot(s)"),
        "{}",
        ran.text()
    );
}

#[test]
fn shards_of_one_runner_cannot_read_each_others_environment() {
    let fleet = procs::Servers::start(&[]);
    let open = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(fleet.data.path(), 0o711);
    let cas = fleet.data.path().join("runner-cas");
    let args = [
        "--slots",
        "2",
        "--step-user",
        "100000-100001",
        "--local-cache-dir",
        cas.to_str().unwrap(),
    ];
    if !root() {
        let mut cmd = bin();
        cmd.args(["runner", "--coordinator", &fleet.coord_url])
            .args(["--cache", &fleet.cache_url])
            .args(args);
        let ran = Ran::of(&mut cmd).expect(1);
        assert!(
            ran.stderr.contains("cannot run steps as uid 100000"),
            "{}",
            ran.text()
        );
        return;
    }
    let _runner = fleet.runner("two", &args);
    wait_for_runners(&fleet.coord_url, 1);
    let listed = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut c =
            buildfleet::wire::pipelines(&fleet.coord_url, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        c.list_runners(pb::ListRunnersRequest {})
            .await
            .unwrap()
            .into_inner()
            .runners
    });
    assert!(
        listed[0]
            .isolation
            .contains("each shard runs as a uid of its own from 100000-100001"),
        "{}",
        listed[0].isolation
    );
    let mark = tempfile::tempdir().unwrap();
    open(mark.path(), 0o777);
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: pair
        shards: 2
        cache: false
        timeout: 60s
        run: |
          if [ "$BUILDFLEET_SHARD_INDEX" = 0 ]; then
            SHARD_A_SECRET=env-of-shard-a bash -c 'echo $$ > "$MARK/pid.tmp"; mv "$MARK/pid.tmp" "$MARK/pid"; while [ ! -e "$MARK/done" ]; do sleep 0.05; done' &
            while [ ! -e "$MARK/pid" ]; do sleep 0.05; done
            echo "own: $(tr '\0' '\n' < /proc/$(cat "$MARK/pid")/environ | grep SHARD_A_SECRET)"
            touch "$MARK/own-read"
            wait
          else
            while [ ! -e "$MARK/pid" ]; do sleep 0.05; done
            pid=$(cat "$MARK/pid")
            echo "reader $(id -u) target $(awk '/^Uid:/ {print $2}' /proc/$pid/status)"
            if tr '\0' '\n' < /proc/$pid/environ > "$MARK/stolen" 2> "$MARK/err"; then echo "READ IT"; else echo "refused: $(cat "$MARK/err")"; fi
            # Shard 0's process lives until shard 0 has read it too.
            while [ ! -e "$MARK/own-read" ]; do sleep 0.05; done
            touch "$MARK/done"
          fi
"#,
    );
    let (code, stdout) = fleet.submit(&yaml);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("pair#0 | own: SHARD_A_SECRET=env-of-shard-a"),
        "a shard reads its own processes' environment: {stdout}"
    );
    let ids: Vec<u32> = stdout
        .lines()
        .find_map(|l| l.split_once("pair#1 | reader "))
        .map(|(_, rest)| {
            rest.split(" target ")
                .map(|n| n.trim().parse().unwrap())
                .collect()
        })
        .unwrap_or_else(|| panic!("no reader line: {stdout}"));
    assert!(
        ids[0] != ids[1] && ids.iter().all(|id| (100000..=100001).contains(id)),
        "each shard a uid of its own from the range: {ids:?}"
    );
    assert!(
        stdout.contains("pair#1 | refused: ") && stdout.contains("Permission denied"),
        "{stdout}"
    );
    assert!(!stdout.contains("READ IT"), "{stdout}");
    let stolen = std::fs::read_to_string(mark.path().join("stolen")).unwrap_or_default();
    assert!(!stolen.contains("env-of-shard-a"), "{stolen}");
}
