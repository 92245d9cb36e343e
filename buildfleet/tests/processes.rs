//! A fleet of separate OS processes — cache, coordinator, two runners — and a
//! `buildfleet submit`, all on 127.0.0.1 with OS-assigned ports.

mod procs;

use std::process::Stdio;

use procs::{bin, server, wait_for_runners, Proc, Ran};

#[test]
fn a_pipeline_runs_across_separate_processes() {
    let data = tempfile::tempdir().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", data.path().to_str().unwrap()]);
    let (_coord, coord_url) = server(&["coordinator", "--data", data.path().to_str().unwrap()]);
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
                        "--allow-root-steps",
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
    // Each runner has one slot, and no shard ends before two have
    // started: both runners take shards however the leases fall.
    let mark = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("buildfleet.yaml"),
        procs::with_mark(
            mark.path(),
            r#"stages:
  - name: a
    steps:
      - name: wide
        shards: 4
        run: |
          cat input.txt
          touch "$MARK/started-$BUILDFLEET_SHARD_INDEX"
          while [ "$(ls "$MARK" | wc -l)" -lt 2 ]; do sleep 0.05; done
  - name: b
    steps:
      - { name: last, run: "echo done" }
"#,
        ),
    )
    .unwrap();
    wait_for_runners(&coord_url, 2);
    let stdout = Ran::of(
        bin()
            .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
            .arg(dir.path().join("buildfleet.yaml")),
    )
    .expect(0)
    .stdout;
    assert!(stdout.contains("wide#3 | from the client"), "{stdout}");
    assert!(
        stdout.contains("r1") && stdout.contains("r2"),
        "both runners took shards: {stdout}"
    );
    drop(runners);
}
