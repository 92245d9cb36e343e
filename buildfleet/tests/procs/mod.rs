//! Fleet roles as separate OS processes on 127.0.0.1, for tests that kill,
//! restart or cut them off.
#![allow(dead_code)]

mod http;
mod pipelines;

#[allow(unused_imports)]
pub use http::{http, http_get};
#[allow(unused_imports)]
pub use pipelines::one_known_bad_test;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills its process when dropped, so a failing test leaves nothing behind.
pub struct Proc(pub Child);

impl Proc {
    /// Waits for the process to exit by itself within `limit`.
    pub fn wait_exit(&mut self, limit: std::time::Duration, what: &str) {
        let start = std::time::Instant::now();
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < limit,
                "{what}: still running after {limit:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM, as Kubernetes does before it kills a pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let pid = self.0.id();
        let mut logs = LOGS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = logs.iter().position(|(p, _, _)| *p == pid) else {
            return;
        };
        let (_, what, path) = logs.remove(at);
        drop(logs);
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- {what} (pid {pid}), last {} log lines:", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_file(path);
    }
}

/// Each role process's log file, by pid: kept while the process lives and
/// shown when the test fails, so a hang or a flake says what the fleet was
/// doing at the time.
static LOGS: std::sync::Mutex<Vec<(u32, String, std::path::PathBuf)>> =
    std::sync::Mutex::new(Vec::new());

/// Spawns a role with its log (stderr, at the roles' default level) kept in
/// a file for [`Proc`]'s drop to show.
fn spawn_logged(cmd: &mut Command, what: &str) -> Child {
    let path = std::env::temp_dir().join(format!(
        "buildfleet-test-{}-{}.log",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let file = std::fs::File::create(&path).expect("a log file in the temp dir");
    let child = cmd.stderr(Stdio::from(file)).spawn().unwrap();
    LOGS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((child.id(), what.to_owned(), path));
    child
}

/// The `buildfleet` binary under test (with the test's own log filter
/// left out, so its output is what users see).
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_buildfleet"));
    c.env_remove("BUILDFLEET_LOG");
    c
}

/// A finished `buildfleet` command: its exit code and what it printed.
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Runs `command` to its end.
    pub fn of(command: &mut Command) -> Ran {
        Ran::from(command.output().expect("the buildfleet binary runs"))
    }

    /// Waits for a spawned command (its output piped) to end.
    pub fn waited(child: Child) -> Ran {
        Ran::from(
            child
                .wait_with_output()
                .expect("the command can be waited for"),
        )
    }

    fn from(out: std::process::Output) -> Ran {
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code; when it differs, the failure shows what the
    /// command printed (the end of it, for long outputs).
    #[track_caller]
    pub fn expect(self, code: i32) -> Ran {
        if self.code != Some(code) {
            let tail = |s: &str| s[s.len().saturating_sub(4000)..].to_owned();
            panic!(
                "exit {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
                self.code,
                tail(&self.stdout),
                tail(&self.stderr)
            );
        }
        self
    }

    /// Stdout then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Servers need a token file or `--no-auth`: the process tests of other
/// features run without tokens (the tests of tokens pass `--tokens`).
fn open_unless_tokens(args: &[&str]) -> &'static [&'static str] {
    if args.contains(&"--tokens") {
        &[]
    } else {
        &["--no-auth"]
    }
}

/// Starts a server role and reads the `listening on ADDR` line it prints.
pub fn server(args: &[&str]) -> (Proc, String) {
    server_with_env(args, &[])
}

/// Runners register asynchronously: wait until both are listed, so the test
/// can check that the work was spread.
pub fn wait_for_runners(coordinator: &str, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client =
            buildfleet::wire::pipelines(coordinator, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        for _ in 0..500 {
            let listed = client
                .list_runners(buildfleet_proto::v1::ListRunnersRequest {})
                .await
                .unwrap()
                .into_inner()
                .runners;
            if listed.len() >= n {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{n} runners did not register within 10s");
    });
}

/// A port that was free a moment ago, for a role that must come back on
/// the same address after a restart.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a server role on a fixed address and waits until it accepts.
pub fn server_at(args: &[&str], addr: &str) -> Proc {
    // Wrapped at once, so the process is killed and reaped on every path.
    let proc = Proc(spawn_logged(
        bin()
            .args(args)
            .args(open_unless_tokens(args))
            .args(["--listen", addr])
            .stdout(Stdio::null()),
        args.first().copied().unwrap_or("server"),
    ));
    for _ in 0..500 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return proc;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{args:?} did not listen on {addr} within 10s");
}

/// Starts a runner process with its own work directory.
pub fn runner(coordinator: &str, cache: &str, name: &str, work: &std::path::Path) -> Proc {
    runner_with(coordinator, cache, name, work, &[])
}

/// One slot unless `extra` says otherwise. Steps run as the test's user
/// (root, here) unless `extra` gives a step user: the tests are about
/// other things.
pub fn runner_with(
    coordinator: &str,
    cache: &str,
    name: &str,
    work: &std::path::Path,
    extra: &[&str],
) -> Proc {
    let root_steps: &[&str] = if extra.contains(&"--step-user") {
        &[]
    } else {
        &["--allow-root-steps"]
    };
    let slots: &[&str] = if extra.contains(&"--slots") {
        &[]
    } else {
        &["--slots", "1"]
    };
    Proc(spawn_logged(
        bin()
            .args(["runner", "--coordinator", coordinator, "--cache", cache])
            .args(["--name", name])
            .args(slots)
            .args(root_steps)
            .args(extra)
            .arg("--work-dir")
            .arg(work)
            .stdout(Stdio::null()),
        &format!("runner {name}"),
    ))
}

/// Writes `yaml` as a pipeline file and runs `buildfleet submit` on it;
/// returns the exit code and stdout.
pub fn submit_yaml(coordinator: &str, cache: &str, yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let out = bin()
        .args(["submit", "--coordinator", coordinator, "--cache", cache])
        .arg(dir.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A cache and a coordinator as processes on one fresh data directory.
pub struct Servers {
    pub data: tempfile::TempDir,
    pub cache_url: String,
    pub coord_url: String,
    procs: (Proc, Proc),
}

impl Servers {
    /// `coordinator` holds extra coordinator flags.
    pub fn start(coordinator: &[&str]) -> Servers {
        let data = tempfile::tempdir().unwrap();
        let d = data.path().to_str().unwrap().to_owned();
        let (cache, cache_url) = server(&["cache", "--data", &d]);
        let mut args = vec!["coordinator", "--data", &d];
        args.extend_from_slice(coordinator);
        let (coord, coord_url) = server(&args);
        Servers {
            data,
            cache_url,
            coord_url,
            procs: (cache, coord),
        }
    }

    pub fn coordinator_pid(&self) -> u32 {
        self.procs.1 .0.id()
    }

    pub fn runner(&self, name: &str, extra: &[&str]) -> Proc {
        runner_with(
            &self.coord_url,
            &self.cache_url,
            name,
            &self.data.path().join(name),
            extra,
        )
    }

    pub fn submit(&self, yaml: &str) -> (i32, String) {
        submit_yaml(&self.coord_url, &self.cache_url, yaml)
    }
}

/// Polls until `ready` or `limit` passes (then fails, naming `what`).
pub fn wait_for(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A file's lines, sorted (marker files are appended to by concurrent
/// shards, so their order means nothing); none if it does not exist.
pub fn lines(path: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

/// `buildfleet submit FILE` running in the background, output captured.
pub fn spawn_submit(coordinator: &str, cache: &str, file: &std::path::Path) -> std::process::Child {
    bin()
        .args(["submit", "--coordinator", coordinator, "--cache", cache])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether `pid` is running (a zombie is dead, only not yet reaped).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Whether `ancestor` is `pid`'s parent, grandparent, … (read from /proc).
pub fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut p = pid;
    for _ in 0..64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            return false;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|pp| pp.parse::<i32>().ok())
        else {
            return false;
        };
        if ppid == ancestor {
            return true;
        }
        if ppid <= 1 {
            return false;
        }
        p = ppid;
    }
    false
}

/// A pipeline whose steps see `$MARK`, a directory outside their inputs
/// where they leave evidence of what they did.
pub fn with_mark(mark: &std::path::Path, body: &str) -> String {
    format!(
        "version: 1\nenv: {{ MARK: \"{}\" }}\n{body}",
        mark.display()
    )
}

/// The run id `buildfleet submit` printed.
pub fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| Some(l.strip_prefix("run ")?.split_once(" submitted")?.0))
        .unwrap_or_else(|| panic!("no run id in: {stdout}"))
        .to_owned()
}

/// The run's notices once one satisfies `done` (or after 20s, as they are).
pub fn notices_until(coordinator: &str, run: &str, done: impl Fn(&str) -> bool) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client =
            buildfleet::wire::pipelines(coordinator, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        let start = std::time::Instant::now();
        loop {
            let status = client
                .get(buildfleet_proto::v1::GetRequest {
                    run_id: run.to_owned(),
                })
                .await
                .unwrap()
                .into_inner();
            let texts: Vec<String> = status.notices.iter().map(|n| n.text.clone()).collect();
            if texts.iter().any(|t| done(t)) || start.elapsed() > std::time::Duration::from_secs(20)
            {
                return texts;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
}

/// A cache, and a coordinator on a fixed address so it can be killed and
/// started again where its runners and watchers look for it.
pub struct Restartable {
    pub data: tempfile::TempDir,
    pub cache_url: String,
    pub coord_url: String,
    addr: String,
    args: Vec<String>,
    _cache: Proc,
}

impl Restartable {
    /// `coordinator` holds extra coordinator flags.
    pub fn start(coordinator: &[&str]) -> (Restartable, Proc) {
        let data = tempfile::tempdir().unwrap();
        let d = data.path().to_str().unwrap().to_owned();
        let (cache, cache_url) = server(&["cache", "--data", &d]);
        let addr = format!("127.0.0.1:{}", free_port());
        let mut args = vec!["coordinator".to_owned(), "--data".into(), d];
        args.extend(coordinator.iter().map(|s| s.to_string()));
        let fleet = Restartable {
            data,
            cache_url,
            coord_url: format!("http://{addr}"),
            addr,
            args,
            _cache: cache,
        };
        let coord = fleet.coordinator();
        (fleet, coord)
    }

    /// Starts the coordinator (again) on its address.
    pub fn coordinator(&self) -> Proc {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        server_at(&args, &self.addr)
    }

    pub fn runner(&self, name: &str) -> Proc {
        runner(
            &self.coord_url,
            &self.cache_url,
            name,
            &self.data.path().join(name),
        )
    }
}

/// An HTTP receiver on 127.0.0.1:0 answering `statuses` in turn (then 200),
/// recording each request body.
pub fn receiver(statuses: Vec<u16>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut answers = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let status = answers.next().unwrap_or(200);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

/// Starts a server role with `--metrics-listen 127.0.0.1:0`: its gRPC URL
/// and its metrics address, from the two lines it prints. What it prints
/// later is drained, so its stdout never closes under it.
pub fn server_with_metrics(args: &[&str]) -> (Proc, String, String) {
    let mut child = spawn_logged(
        bin()
            .args(args)
            .args(open_unless_tokens(args))
            .args(["--listen", "127.0.0.1:0", "--print-addr"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped()),
        args.first().copied().unwrap_or("server"),
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = |prefix: &str| {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        line.trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected {prefix:?}, got {line:?}"))
            .to_string()
    };
    let grpc = line("listening on ");
    let metrics = line("metrics on ");
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (Proc(child), format!("http://{grpc}"), metrics)
}

/// [`server`] with extra environment variables.
pub fn server_with_env(args: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
    let mut command = bin();
    command
        .args(args)
        .args(open_unless_tokens(args))
        .args(["--listen", "127.0.0.1:0", "--print-addr"])
        .stdout(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = spawn_logged(&mut command, args.first().copied().unwrap_or("server"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("got {line:?}"))
        .to_string();
    (Proc(child), format!("http://{addr}"))
}

/// `buildfleet ARGS --output json`, which must succeed, parsed.
pub fn json(args: &[&str]) -> serde_json::Value {
    let out = bin()
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
