//! Shards as units: each in a cgroup of its own where the host allows,
//! killed whole (processes that left the shard's process group included),
//! its OOM kills told apart from its neighbours', `resources:` enforced,
//! and what the runner cannot do said in `ListRunners`. Separate processes
//! on 127.0.0.1; this machine kind has cgroup v2 (for killing) and v1
//! memory and cpu controllers (for limits and counts), writable as root.

mod procs;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use procs::{lines, wait_for, wait_for_runners, Proc};

/// A memory cgroup (v1, as on this machine) below the test's own, limited
/// to `limit` bytes; removed with everything under it on drop.
struct MemCgroup(PathBuf);

impl MemCgroup {
    fn new(limit: u64) -> MemCgroup {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own = cgroup
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
            .expect("this machine has a cgroup v1 memory controller");
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(own.trim_start_matches('/'))
            .join(format!("buildfleet-oom-{}", std::process::id()));
        std::fs::create_dir(&dir).expect("the tests run as root with a writable memory cgroup");
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        MemCgroup(dir)
    }
}

/// Removes a cgroup tree bottom-up (a runner killed with SIGKILL leaves
/// its own directories behind, empty).
fn remove_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            remove_tree(&e.path());
        }
    }
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

/// A runner with `slots`, inside `cgroup` (if any) from its first
/// instruction, as under a container's limit (joining later would leave the
/// cgroups it makes for its shards outside).
fn runner_in(fleet: &procs::Servers, name: &str, slots: u32, cgroup: Option<&Path>) -> Proc {
    let mut cmd = procs::bin();
    cmd.args([
        "runner",
        "--coordinator",
        &fleet.coord_url,
        "--cache",
        &fleet.cache_url,
    ])
    .args(["--name", name, "--slots", &slots.to_string()])
    .arg("--allow-root-steps")
    .arg("--work-dir")
    .arg(fleet.data.path().join(name))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(cgroup) = cgroup {
        let procs_file = cgroup.join("cgroup.procs");
        // SAFETY: only writes a file in the child before exec.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs_file, "0"));
        }
    }
    Proc(cmd.spawn().unwrap())
}

#[test]
fn a_step_killed_by_the_oom_killer_is_reported_as_such() {
    let fleet = procs::Servers::start(&[]);
    // The runner (and so its shards) lives in a 256 MiB memory cgroup.
    let cgroup = MemCgroup::new(256 << 20);
    let r = runner_in(&fleet, "small", 1, Some(&cgroup.0));
    wait_for_runners(&fleet.coord_url, 1);
    let (code, stdout) = fleet.submit(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: hungry, cache: false, run: 'python3 -c \"b = bytearray(1024 ** 3); print(len(b))\"' }\n",
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("killed by the kernel's OOM killer"),
        "{stdout}"
    );
    drop(r); // killed and reaped, so the cgroup can be removed
}

#[test]
fn an_oom_kill_is_told_apart_from_a_sigkill_in_the_next_shard_and_limits_are_enforced() {
    let fleet = procs::Servers::start(&[]);
    let _r = runner_in(&fleet, "two", 2, None);
    wait_for_runners(&fleet.coord_url, 1);
    let mark = tempfile::tempdir().unwrap();
    // Shard 0 outgrows its 64 MiB limit; shard 1, on the same runner at the
    // same time, is SIGKILLed by someone else right after.
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: pair
        shards: 2
        cache: false
        resources: { memory: 64MiB }
        run: |
          touch "$MARK/started-$BUILDFLEET_SHARD_INDEX"
          while [ ! -e "$MARK/started-0" ] || [ ! -e "$MARK/started-1" ]; do sleep 0.02; done
          if [ "$BUILDFLEET_SHARD_INDEX" = 0 ]; then
            python3 -c "b = bytearray(512 * 1024 ** 2); print(len(b))" || { code=$?; touch "$MARK/oom"; exit $code; }
          else
            while [ ! -e "$MARK/oom" ]; do sleep 0.02; done
            kill -9 $$
          fi
"#,
    );
    let (code, stdout) = fleet.submit(&yaml);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("pair shard 0: failed (exit code 137): killed by the kernel's OOM killer (oom_kill +1 in the shard's cgroup)"),
        "the limit was enforced, and the kill is shard 0's own: {stdout}"
    );
    assert!(
        stdout.contains("pair shard 1: failed (killed by signal 9): killed by SIGKILL from outside buildfleet (no OOM kill was counted in the shard's cgroup)"),
        "the neighbour's OOM kill is not shard 1's: {stdout}"
    );
}

#[test]
fn the_runner_says_how_it_isolates_shards_and_each_shard_has_cgroups_of_its_own() {
    let fleet = procs::Servers::start(&[]);
    let _r = fleet.runner("iso", &[]);
    wait_for_runners(&fleet.coord_url, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed = rt.block_on(async {
        let mut c =
            buildfleet::wire::pipelines(&fleet.coord_url, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        c.list_runners(buildfleet_proto::v1::ListRunnersRequest {})
            .await
            .unwrap()
            .into_inner()
            .runners
    });
    let isolation = &listed[0].isolation;
    assert!(
        isolation.contains("a cgroup per shard under")
            && isolation.contains("killed as a unit")
            && isolation.contains("memory limits and OOM counts per shard (cgroup v")
            && isolation.contains("cpu limits per shard (cgroup v"),
        "{isolation}"
    );
    // `capped` spins for a second under a fifth of a cpu and reads its own
    // cpu cgroup's throttling counter (v2 `cpu.stat` or v1's): the limit is
    // felt by the process, not only written down.
    let (code, stdout) = fleet.submit(
        r#"version: 1
stages:
  - name: s
    steps:
      - { name: where, cache: false, run: 'cat /proc/self/cgroup' }
      - name: capped
        cache: false
        resources: { cpus: 0.2 }
        run: |
          timeout 1 sh -c 'while :; do :; done' || true
          v1=$(sed -n 's/^[0-9]*:[^:]*\bcpu\b[^:]*:\(.*\)$/\1/p' /proc/self/cgroup | head -n 1)
          v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
          for f in "/sys/fs/cgroup/cpu$v1/cpu.stat" "/sys/fs/cgroup$v2/cpu.stat" "/sys/fs/cgroup/unified$v2/cpu.stat"; do
            [ -r "$f" ] && grep -q nr_throttled "$f" && sed -n 's/^nr_throttled /throttled=/p' "$f" && break
          done
"#,
    );
    assert_eq!(code, 0, "{stdout}");
    let throttled: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("capped#0 | throttled="))
        .unwrap_or_else(|| panic!("the shard found its cpu cgroup: {stdout}"))
        .parse()
        .unwrap();
    assert!(
        throttled > 0,
        "a fifth of a cpu throttled the spin: {stdout}"
    );
    let shard_lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("where#0 | ") && l.contains("/shard-"))
        .collect();
    assert!(
        shard_lines.iter().any(|l| l.contains("0::/")),
        "the shard runs in a cgroup v2 of its own: {stdout}"
    );
}

#[test]
fn a_timed_out_shard_is_killed_with_the_processes_that_left_its_group() {
    let fleet = procs::Servers::start(&[]);
    let _r = fleet.runner("r", &["--kill-grace", "200ms"]);
    wait_for_runners(&fleet.coord_url, 1);
    let mark = tempfile::tempdir().unwrap();
    // A daemon in a session of its own ignores the group's SIGTERM and
    // SIGKILL alike; only the shard as a unit reaches it.
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: hang
        cache: false
        timeout: 1s
        run: |
          ( setsid bash -c 'trap "" TERM; echo $$ >> "$MARK/daemon"; while true; do sleep 0.05; done' & )
          trap '' TERM
          while true; do sleep 0.05; done
"#,
    );
    let (code, stdout) = fleet.submit(&yaml);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("hang shard 0: timed out after 1.0s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sent SIGKILL to every process of the shard"),
        "{stdout}"
    );
    let daemon: i32 = lines(&mark.path().join("daemon"))[0].parse().unwrap();
    wait_for("the daemon to be gone", Duration::from_secs(5), || {
        !procs::alive(daemon)
    });
}

/// A runner that sees no cgroup at all (started in a mount namespace with
/// `/sys/fs/cgroup` unmounted, as in a container without delegation).
fn runner_without_cgroups(fleet: &procs::Servers, log: &Path) -> Proc {
    let probe = std::process::Command::new("unshare")
        .args(["--mount", "sh", "-c", "umount -l /sys/fs/cgroup"])
        .output()
        .expect("unshare (util-linux) is installed");
    assert!(
        probe.status.success(),
        "this test needs a mount namespace with /sys/fs/cgroup unmounted (root with CAP_SYS_ADMIN): {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"])
        .arg(r#"umount -l /sys/fs/cgroup && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_buildfleet"))
        .args(["runner", "--coordinator", &fleet.coord_url])
        .args(["--cache", &fleet.cache_url, "--name", "bare"])
        .args(["--slots", "1", "--allow-root-steps", "--work-dir"])
        .arg(fleet.data.path().join("bare"))
        .env_remove("BUILDFLEET_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Proc(cmd.spawn().expect("unshare (util-linux) starts the runner"))
}

#[test]
fn a_runner_without_cgroups_says_so_once_and_still_kills_its_shards_whole() {
    let fleet = procs::Servers::start(&[]);
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("runner.log");
    let _r = runner_without_cgroups(&fleet, &log);
    wait_for_runners(&fleet.coord_url, 1);
    let runners = procs::json(&["runners", "--coordinator", &fleet.coord_url]);
    let isolation = runners[0]["isolation"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        isolation.starts_with(
            "no per-shard cgroups — missing: no cgroup v2 hierarchy holds this runner"
        ),
        "ListRunners says what the runner cannot do: {runners}"
    );
    let mark = tempfile::tempdir().unwrap();
    // A grandchild left behind in the shard's process group, and a memory
    // limit that cannot be enforced here.
    let yaml = procs::with_mark(
        mark.path(),
        r#"stages:
  - name: s
    steps:
      - name: left
        cache: false
        resources: { memory: 64MiB }
        run: |
          sh -c 'echo $$ > "$MARK/grandchild"; exec sleep 300' &
          while [ ! -s "$MARK/grandchild" ]; do sleep 0.02; done
"#,
    );
    let (code, stdout) = fleet.submit(&yaml);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("NOT enforced"),
        "the shard's log says its limit is not enforced: {stdout}"
    );
    let pid: i32 = lines(&mark.path().join("grandchild"))[0].parse().unwrap();
    wait_for(
        "the shard's grandchild to die with the shard",
        Duration::from_secs(10),
        || !procs::alive(pid),
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("shard isolation"))
        .collect();
    assert_eq!(said.len(), 1, "said once, at start: {text}");
    assert!(said[0].contains("no per-shard cgroups"), "{text}");
}
