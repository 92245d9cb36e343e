//! The fleet from a terminal or a script: `logs -f` follows a shard's
//! stream as it is printed and ends with the run, `logs RUN` prints every
//! shard's whole log, `logs -f` of a red run exits 1, and `runs`, `runs
//! show` and `runners` list what the coordinator holds, as columns or as
//! JSON with stable field names.

mod procs;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use procs::{bin, json, wait_for, wait_for_runners, Servers};

#[test]
fn logs_follow_a_live_shard_and_listings_show_runs_and_runners() {
    let fleet = Servers::start(&[]);
    let (coord, cache) = (fleet.coord_url.clone(), fleet.cache_url.clone());
    let _runner = fleet.runner("r1", &["--slots", "2"]);
    wait_for_runners(&coord, 1);

    let tree = tempfile::tempdir().unwrap();
    let release = fleet.data.path().join("release");
    let file = tree.path().join("buildfleet.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nstages:\n  - name: s\n    steps:\n      - name: tail\n        run: |\n          echo one\n          while [ ! -e {} ]; do sleep 0.05; done\n          echo two\n      - name: other\n        run: echo other\n",
            release.display()
        ),
    )
    .unwrap();
    let mut submit = bin()
        .args(["submit", "--coordinator", &coord, "--cache", &cache])
        .arg(&file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut run = String::new();
    wait_for("the run to be listed", Duration::from_secs(30), || {
        let runs = json(&["runs", "--coordinator", &coord]);
        run = runs[0]["run_id"].as_str().unwrap_or("").to_owned();
        !run.is_empty()
    });

    // Follow one shard: its raw stream, live.
    let mut follow = bin()
        .args([
            "logs",
            &run,
            "tail",
            "--shard",
            "0",
            "-f",
            "--coordinator",
            &coord,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = follow.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("one\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "logs -f ended before the first line: {seen:?}");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        !String::from_utf8_lossy(&seen).contains("two"),
        "not printed yet"
    );
    std::fs::write(&release, "").unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    let status = follow.wait().unwrap();
    let mut err = String::new();
    follow
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{err}");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("one\n") && text.contains("two\n"), "{text}");
    assert!(!text.contains("other"), "only the step asked for: {text}");
    assert!(
        err.contains(&format!("run {run} ended: succeeded")),
        "{err}"
    );
    assert!(submit.wait().unwrap().success());

    // Every shard's whole log, from the cache, each under its name.
    let out = bin()
        .args(["logs", &run, "--coordinator", &coord, "--cache", &cache])
        .output()
        .unwrap();
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("==> tail#0 <==") && all.contains("==> other#0 <=="),
        "{all}"
    );
    assert!(all.contains("two\n") && all.contains("other\n"), "{all}");

    // Listings, as JSON and as columns.
    let runs = json(&["runs", "--coordinator", &coord]);
    assert_eq!(runs[0]["run_id"], run.as_str());
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(
        (runs[0]["shards"].as_u64(), runs[0]["shards_done"].as_u64()),
        (Some(2), Some(2))
    );
    let show = json(&["runs", "show", &run, "--coordinator", &coord]);
    let steps: Vec<&str> = show["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["tail", "other"]);
    assert_eq!(show["shards"][0]["state"], "succeeded");
    let runners = json(&["runners", "--coordinator", &coord]);
    assert_eq!(runners[0]["name"], "r1");
    assert_eq!(runners[0]["slots"], 2);
    assert!(
        runners[0]["disk_free_bytes"].as_u64().unwrap_or(0) > 0,
        "{runners}"
    );
    assert!(
        runners[0]["last_seen_unix_ms"].as_u64().unwrap_or(0) > 0,
        "{runners}"
    );
    let table = bin()
        .args(["runs", "--coordinator", &coord])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.starts_with("RUN "), "{table}");
    assert!(
        table.contains(&run) && table.contains("2/2 shards"),
        "{table}"
    );

    // `logs -f RUN && deploy` stops at a red run: it exits as the run ended.
    let (code, out) = fleet.submit(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: broken, run: 'echo bad; exit 3' }\n",
    );
    assert_eq!(code, 1, "{out}");
    let red = procs::run_id_of(&out);
    let follow = bin()
        .args(["logs", &red, "-f", "--coordinator", &coord])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&follow.stderr);
    assert_eq!(follow.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("run {red} ended: failed")), "{err}");
    assert!(String::from_utf8_lossy(&follow.stdout).contains("broken#0 | bad"));
}
