//! Tokens end to end with the fleet as separate processes: `buildfleet
//! token new` makes them, the servers read the token file (and read it
//! again when it changes), a runner and a client present theirs, and
//! whoever has none — or the wrong kind — is told so and stopped.

mod procs;

use std::time::Duration;

use procs::{bin, runner_with, server, wait_for, Ran};

const PIPELINE: &str = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: hello, run: 'echo hello-from-a-real-runner' }\n";

/// `buildfleet token new`, appending its entry to `tokens.yaml`.
fn make_token(dir: &std::path::Path, name: &str, role: &str) -> std::path::PathBuf {
    let out = dir.join(format!("{name}.token"));
    let ran = Ran::of(
        bin()
            .args([
                "token",
                "new",
                "--name",
                name,
                "--role",
                role,
                "--token-out",
            ])
            .arg(&out),
    )
    .expect(0);
    let token = std::fs::read_to_string(&out).unwrap();
    assert!(token.starts_with("bft_"), "{token}");
    assert!(
        !ran.stdout.contains(token.trim()) && !ran.stderr.contains(token.trim()),
        "the token is never printed"
    );
    let file = dir.join("tokens.yaml");
    let mut text = std::fs::read_to_string(&file).unwrap_or_else(|_| "tokens:\n".into());
    text += &ran.stdout;
    // Written whole and renamed, as a Secret update is: never half a file.
    std::fs::write(dir.join("tokens.tmp"), text).unwrap();
    std::fs::rename(dir.join("tokens.tmp"), &file).unwrap();
    out
}

fn submit(coord: &str, cache: &str, token: Option<&std::path::Path>) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("buildfleet.yaml"), PIPELINE).unwrap();
    let mut cmd = bin();
    cmd.args(["submit", "--coordinator", coord, "--cache", cache])
        .arg(dir.path().join("buildfleet.yaml"))
        .env_remove("BUILDFLEET_TOKEN");
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    Ran::of(&mut cmd)
}

#[test]
fn a_fleet_with_a_token_file_serves_token_holders_only_and_sees_new_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ci = make_token(dir.path(), "ci", "client");
    let pool = make_token(dir.path(), "pool", "runner");
    let tokens = dir.path().join("tokens.yaml");
    let t = tokens.to_str().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let (_cache, cache) = server(&["cache", "--data", d, "--tokens", t]);
    let (_coord, coord) = server(&["coordinator", "--data", d, "--tokens", t]);

    // A runner holding a client token is refused and stops, saying why.
    let work = dir.path().join("work");
    let mut forged = runner_with(
        &coord,
        &cache,
        "pool",
        &work,
        &["--token-file", ci.to_str().unwrap()],
    );
    forged.wait_exit(Duration::from_secs(20), "a runner with a client token");
    let code = forged.0.wait().unwrap().code();
    assert_ne!(code, Some(0), "a refused runner exits non-zero");

    let _runner = runner_with(
        &coord,
        &cache,
        "host-1",
        &work,
        &["--token-file", pool.to_str().unwrap()],
    );

    // No token: refused before anything is uploaded, with what to do.
    let refused = submit(&coord, &cache, None);
    assert_ne!(refused.code, Some(0));
    assert!(refused.text().contains("no token"), "{}", refused.text());

    let ok = submit(&coord, &cache, Some(&ci)).expect(0);
    assert!(
        ok.stdout.contains("hello-from-a-real-runner"),
        "{}",
        ok.stdout
    );

    // A token added to the file while the servers run is taken up.
    let late = make_token(dir.path(), "late", "client");
    wait_for(
        "the new token to be accepted",
        Duration::from_secs(20),
        || submit(&coord, &cache, Some(&late)).code == Some(0),
    );
}

#[test]
fn a_server_without_a_token_file_must_be_told_it_is_open() {
    let ran = Ran::of(bin().args(["coordinator", "--listen", "127.0.0.1:0"]));
    assert_eq!(ran.code, Some(2), "{}", ran.text());
    assert!(ran.stderr.contains("--tokens"), "{}", ran.stderr);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "tokens:\n  - name: a\n    role: client\n    hash: nope\n",
    )
    .unwrap();
    let ran = Ran::of(
        bin()
            .args(["cache", "--listen", "127.0.0.1:0", "--tokens"])
            .arg(dir.path().join("t.yaml")),
    );
    assert_ne!(ran.code, Some(0));
    assert!(
        ran.stderr.contains("t.yaml") && ran.stderr.contains("line 4"),
        "a bad token file stops start-up saying where: {}",
        ran.stderr
    );
}
