//! A fleet of separate OS processes — cache, coordinator, two runners — and a
//! `buildfleet submit`, all on 127.0.0.1 with OS-assigned ports.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills its process when dropped, so a failing test leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_buildfleet"))
}

/// Starts a server role and reads the `listening on ADDR` line it prints.
fn server(args: &[&str]) -> (Proc, String) {
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
fn wait_for_runners(coordinator: &str, n: usize) {
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

#[test]
fn a_pipeline_runs_across_separate_processes() {
    let data = tempfile::tempdir().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", data.path().to_str().unwrap()]);
    let (_coord, coord_url) = server(&["coordinator"]);
    let runners: Vec<Proc> = ["r1", "r2"]
        .iter()
        .map(|name| {
            Proc(
                bin()
                    .args([
                        "runner",
                        "--coordinator",
                        &coord_url,
                        "--cache",
                        &cache_url,
                        "--name",
                        name,
                    ])
                    .arg("--work-dir")
                    .arg(data.path().join(name))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.txt"), "from the client\n").unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        r#"version: 1
stages:
  - name: a
    steps:
      - { name: wide, shards: 4, run: "cat input.txt; sleep 0.5" }
  - name: b
    steps:
      - { name: last, run: "echo done" }
"#,
    )
    .unwrap();
    wait_for_runners(&coord_url, 2);
    let out = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(dir.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("wide#3 | from the client"), "{stdout}");
    assert!(
        stdout.contains("r1") && stdout.contains("r2"),
        "both runners took shards: {stdout}"
    );
    drop(runners);
}
