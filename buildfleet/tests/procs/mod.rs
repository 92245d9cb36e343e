//! Fleet roles as separate OS processes on 127.0.0.1, for tests that kill,
//! restart or cut them off.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills its process when dropped, so a failing test leaves nothing behind.
pub struct Proc(pub Child);

impl Proc {
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
    }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_buildfleet"))
}

/// Starts a server role and reads the `listening on ADDR` line it prints.
pub fn server(args: &[&str]) -> (Proc, String) {
    let mut child = bin()
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--print-addr"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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

/// Runners register asynchronously: wait until both are listed, so the test
/// can check that the work was spread.
pub fn wait_for_runners(coordinator: &str, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client = buildfleet::client::pipelines(coordinator).await.unwrap();
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
    let proc = Proc(
        bin()
            .args(args)
            .args(["--listen", addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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

pub fn runner_with(
    coordinator: &str,
    cache: &str,
    name: &str,
    work: &std::path::Path,
    extra: &[&str],
) -> Proc {
    Proc(
        bin()
            .args(["runner", "--coordinator", coordinator, "--cache", cache])
            .args(["--name", name, "--slots", "1"])
            .args(extra)
            .arg("--work-dir")
            .arg(work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
