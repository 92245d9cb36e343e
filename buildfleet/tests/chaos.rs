//! The chaos suite: the failure classes of the seed story, provoked against
//! separate processes on 127.0.0.1, each bounded in time. A run must end
//! in the state that tells the truth, and each shard's result must count
//! exactly once.

mod procs;

use buildfleet_proto::convert::to_reapi;
use std::path::Path;
use std::time::Duration;

use procs::{bin, runner, server, wait_for_runners, Ran};

/// `buildfleet run` as its own process on a fresh data directory.
fn run_cli(dir: &Path, data: &Path, yaml: &str, extra: &[&str]) -> (i32, String) {
    std::fs::write(dir.join("buildfleet.yaml"), yaml).unwrap();
    let ran = Ran::of(
        bin()
            .args(["run", "--runners", "2", "--data"])
            .arg(data)
            .args(extra)
            .arg(dir.join("buildfleet.yaml")),
    );
    (ran.code.unwrap_or(-1), ran.text())
}

#[test]
fn a_push_that_exits_0_without_its_output_or_failing_its_verify_is_not_green() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let yaml = r#"version: 1
stages:
  - name: release
    steps:
      - name: push
        cache: false
        outputs: [image.digest]
        run: echo "pushed (it says)"
      - name: push-checked
        cache: false
        outputs: [image.digest]
        verify: "grep -q '^sha256:' image.digest"
        run: |
          echo "pushed (it says)"
          : > image.digest
"#;
    let (code, text) = run_cli(dir.path(), data.path(), yaml, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("push shard 0: failed (exit code 0): missing-output: declared output `image.digest` does not exist"),
        "{text}"
    );
    assert!(
        text.contains("push-checked shard 0: failed (exit code 0): verify-failed: `grep -q '^sha256:' image.digest` exited with code 1"),
        "{text}"
    );
}

#[test]
fn an_expired_secret_fails_the_run_before_any_step_and_live_ones_reach_only_their_step() {
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let secrets = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let s = secrets.path();
    std::fs::write(s.join("REGISTRY_TOKEN"), "s3cr3t-value\n").unwrap();
    std::fs::write(s.join("REGISTRY_TOKEN.expires"), "2020-01-01T00:00:00Z").unwrap();
    std::fs::write(s.join("DEPLOY_KEY"), "k3y-value").unwrap();
    let soon = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + Duration::from_secs(2 * 24 * 3600),
    );
    std::fs::write(s.join("DEPLOY_KEY.expires"), soon.to_string()).unwrap();
    let secrets_dir = s.to_str().unwrap();
    let expired = format!(
        r#"version: 1
stages:
  - name: build
    steps:
      - {{ name: compile, cache: false, run: 'touch "{mark}/compiled"' }}
  - name: release
    steps:
      - {{ name: push, cache: false, secrets: [REGISTRY_TOKEN], run: 'echo pushing' }}
"#,
        mark = mark.path().display()
    );
    let (code, text) = run_cli(
        dir.path(),
        data.path(),
        &expired,
        &["--secrets-dir", secrets_dir],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(
            "push shard 0: failed: secret REGISTRY_TOKEN expired at 2020-01-01T00:00:00Z"
        ),
        "{text}"
    );
    assert!(
        !mark.path().join("compiled").exists(),
        "no step started: {text}"
    );

    let live = r#"version: 1
stages:
  - name: release
    steps:
      - { name: deploy, cache: false, secrets: [DEPLOY_KEY], run: 'echo "key=$DEPLOY_KEY"' }
      - { name: other, cache: false, run: 'echo "other sees ${DEPLOY_KEY:-nothing}"' }
"#;
    let (code, text) = run_cli(
        dir.path(),
        data.path(),
        live,
        &["--secrets-dir", secrets_dir],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("deploy#0 | key=***"),
        "masked in the log: {text}"
    );
    assert!(!text.contains("k3y-value"), "{text}");
    assert!(text.contains("other#0 | other sees nothing"), "{text}");
    assert!(
        text.contains("WARNING: secret DEPLOY_KEY expires at"),
        "{text}"
    );
}

#[test]
fn a_10_mb_log_under_a_1_mb_cap_is_marked_and_retrievable_whole() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let (_coord, coord_url) = server(&["coordinator", "--data", d]);
    let _r = runner(&coord_url, &cache_url, "r1", &data.path().join("r1"));
    wait_for_runners(&coord_url, 1);
    let dir = tempfile::tempdir().unwrap();
    // 10,000,000 bytes of `x` in lines of 99: just over 10 MB of log.
    let yaml = r#"version: 1
stages:
  - name: s
    steps:
      - name: loud
        cache: false
        log_cap: 1MiB
        run: "head -c 10000000 /dev/zero | tr '\\0' x | fold -w 99; echo; echo the-last-line"
"#;
    std::fs::write(dir.path().join("buildfleet.yaml"), yaml).unwrap();
    let text = Ran::of(
        bin()
            .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
            .arg(dir.path().join("buildfleet.yaml")),
    )
    .expect(0)
    .stdout;
    let run = procs::run_id_of(&text);
    // The exact bytes the step printed: 101,010 lines of 99 `x`, a line of
    // 10 (ended by the lone `echo`), then the last line.
    let mut expected = "x".repeat(99).add_line().repeat(101_010);
    expected.push_str(&"x".repeat(10).add_line());
    expected.push_str("the-last-line\n");
    assert_eq!(expected.len(), 10_101_025);
    let half = 512 * 1024;
    // What watchers were sent, read back raw over gRPC.
    let (head, marker, tail) = streamed_around_marker(&coord_url, &run, "loud");
    assert_eq!(head.len(), half, "the head is half the cap");
    assert!(
        head == expected.as_bytes()[..half],
        "the head survived intact"
    );
    assert_eq!(tail.len(), half, "the tail is the other half");
    assert!(
        tail == expected.as_bytes()[expected.len() - half..],
        "the tail survived intact"
    );
    let dropped = expected.len() - 2 * half;
    assert!(
        marker.contains(&format!(
            "[log cap reached: {dropped} bytes dropped between the first and last part"
        )),
        "the marker counts exactly what was left out: {marker}"
    );
    assert!(
        text.contains("[log cap reached: "),
        "the CLI shows the marker"
    );
    assert!(text.contains("loud#0 | the-last-line"), "the tail is kept");
    assert!(
        text.len() < 1_500_000,
        "the streamed log respects the cap: {} bytes",
        text.len()
    );
    let whole = Ran::of(bin().args([
        "logs",
        &run,
        "loud",
        "--shard",
        "0",
        "--coordinator",
        &coord_url,
        "--cache",
        &cache_url,
    ]))
    .expect(0)
    .stdout;
    let xs = whole.bytes().filter(|b| *b == b'x').count();
    assert_eq!(xs, 10_000_000, "every byte of output is in the stored log");
    assert!(whole.ends_with("the-last-line\n"));
}

trait AddLine {
    fn add_line(self) -> String;
}

impl AddLine for String {
    fn add_line(mut self) -> String {
        self.push('\n');
        self
    }
}

/// A shard's stdout as watchers received it, before and after the log-cap
/// marker, and the marker itself.
fn streamed_around_marker(coordinator: &str, run: &str, step: &str) -> (Vec<u8>, String, Vec<u8>) {
    use buildfleet_proto::v1 as pb;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut client =
            buildfleet::wire::pipelines(coordinator, &buildfleet_trust::ClientTrust::none())
                .await
                .unwrap();
        let mut stream = client
            .watch(pb::WatchRequest {
                run_id: run.to_owned(),
                after_seq: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let (mut head, mut marker, mut tail) = (Vec::new(), String::new(), Vec::new());
        while let Some(ev) = stream.message().await.unwrap() {
            let Some(pb::run_event::Event::Log(l)) = ev.event else {
                continue;
            };
            if l.step != step {
                continue;
            }
            let text = String::from_utf8_lossy(&l.data);
            if l.stream == pb::LogStream::System as i32 && text.contains("[log cap reached") {
                marker = text.into_owned();
            } else if l.stream == pb::LogStream::Stdout as i32 {
                if marker.is_empty() {
                    &mut head
                } else {
                    &mut tail
                }
                .extend_from_slice(&l.data);
            }
        }
        (head, marker, tail)
    })
}

#[test]
fn a_corrupted_stored_blob_is_detected_and_never_served_whole() {
    use buildfleet_proto::bytestream::byte_stream_client::ByteStreamClient;
    use buildfleet_proto::bytestream::ReadRequest;
    use buildfleet_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
    use buildfleet_proto::reapi::{digest_function, BatchReadBlobsRequest};

    let data = tempfile::tempdir().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", data.path().to_str().unwrap()]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let cas = rt
        .block_on(buildfleet_cache::CasClient::connect(&cache_url))
        .unwrap();
    let big_digest = rt.block_on(cas.upload_blob(big.clone().into())).unwrap();
    // Rot one byte of the stored file, as a failing disk would.
    let stored = walk(&data.path().join("cache/large-blobs"))
        .into_iter()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == big.len() as u64))
        .expect("the blob's file");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1_000_000] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();
    // Read it as any REAPI client would, with nothing verifying on our side:
    // the server verifies while it streams and never completes the read —
    // the last piece stays behind and the stream ends in DATA_LOSS.
    let (chunks, status) = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(cache_url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let name = buildfleet_cache::read_resource_name("", &big_digest);
        let mut bs = ByteStreamClient::new(channel.clone());
        let mut received = Vec::new();
        let status = match bs
            .read(ReadRequest {
                resource_name: name,
                read_offset: 0,
                read_limit: 0,
            })
            .await
        {
            Err(status) => status,
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(m)) => received.push(m.data),
                        Ok(None) => break tonic::Status::ok("stream ended"),
                        Err(status) => break status,
                    }
                }
            }
        };
        // And through the batch API.
        let mut raw_cas = ContentAddressableStorageClient::new(channel);
        let batch = raw_cas
            .batch_read_blobs(BatchReadBlobsRequest {
                instance_name: String::new(),
                digests: vec![to_reapi(big_digest)],
                digest_function: digest_function::Value::Blake3 as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let per_blob = &batch.responses[0];
        assert!(
            per_blob.data.is_empty() && per_blob.status.as_ref().is_some_and(|s| s.code != 0),
            "BatchReadBlobs returned the blob: {} bytes, status {:?}",
            per_blob.data.len(),
            per_blob.status
        );
        (received, status)
    });
    let received: usize = chunks.iter().map(|c| c.len()).sum();
    assert!(
        received < big.len(),
        "the corrupt blob's read never completes ({received} of {} bytes left the server)",
        big.len()
    );
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    let missing = rt.block_on(cas.find_missing(&[big_digest])).unwrap();
    assert_eq!(
        missing,
        [big_digest],
        "and it is gone, so clients upload it again"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn an_output_the_cache_lost_after_its_upload_fails_the_step_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    // Room for one of the two outputs only: storing the second evicts the
    // first, which the runner's confirmation must notice.
    let (_cache, cache_url) = server(&["cache", "--data", d, "--max-size", "1MiB"]);
    let (_coord, coord_url) = server(&["coordinator", "--data", d]);
    let _r = procs::runner(&coord_url, &cache_url, "r1", &data.path().join("r1"));
    wait_for_runners(&coord_url, 1);
    let (code, stdout) = procs::submit_yaml(
        &coord_url,
        &cache_url,
        "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: build, cache: false, outputs: [a.bin, b.bin], run: 'head -c 700000 /dev/urandom > a.bin; head -c 700000 /dev/urandom > b.bin' }\n",
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(
            "build shard 0: failed (exit code 0): output `a.bin`: the cache does not hold"
        ),
        "{stdout}"
    );
}

/// A TCP proxy to `upstream` that rewrites every `from` in what clients
/// send to `to` (same length, so HTTP/2 framing holds; gRPC messages
/// travel uncompressed), counting the rewrites: a network or middlebox
/// that corrupts uploads.
fn tampering_proxy(
    upstream: &str,
    from: &'static [u8],
    to: &'static [u8],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    assert_eq!(from.len(), to.len());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let rewrites = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = rewrites.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(&upstream) else {
                return;
            };
            let (mut client_read, mut server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = client_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = &mut buf[..n];
                    let mut i = 0;
                    while i + from.len() <= chunk.len() {
                        if &chunk[i..i + from.len()] == from {
                            chunk[i..i + from.len()].copy_from_slice(to);
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        i += 1;
                    }
                    if server_write.write_all(chunk).is_err() {
                        break;
                    }
                }
                let _ = server_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (url, rewrites)
}

#[test]
fn an_output_changed_on_its_way_to_the_cache_fails_the_step_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let (_cache, cache_url) = server(&["cache", "--data", d]);
    let (_coord, coord_url) = server(&["coordinator", "--data", d]);
    // The runner reaches the cache through a proxy that alters the
    // output's bytes in flight; the submitter reaches it directly.
    let (proxy_url, rewrites) = tampering_proxy(&cache_url, b"PRISTINE-OUTPUT", b"ALTERED!-OUTPUT");
    let _r = procs::runner(&coord_url, &proxy_url, "r1", &data.path().join("r1"));
    wait_for_runners(&coord_url, 1);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let yaml = format!(
        "version: 1\nstages:\n  - name: s\n    steps:\n      - {{ name: build, cache: false, outputs: [app.bin], run: 'for i in $(seq 64); do echo PRISTINE-OUTPUT-{unique}; done > app.bin' }}\n"
    );
    let (code, stdout) = procs::submit_yaml(&coord_url, &cache_url, &yaml);
    assert!(
        rewrites.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the proxy saw the output's bytes on the wire: {stdout}"
    );
    assert_eq!(code, 1, "a corrupted upload is not green: {stdout}");
    assert!(
        stdout.contains("build shard 0: failed (exit code 0): output `app.bin` could not be uploaded: server rejected blob")
            && stdout.contains("digest mismatch"),
        "the step fails naming the output: {stdout}"
    );
    // What the step made is not in the cache under its digest, and the
    // altered bytes were not kept under it either.
    let made: String = (0..64)
        .map(|_| format!("PRISTINE-OUTPUT-{unique}\n"))
        .collect();
    let digest = buildfleet_cache::Digest::of(made.as_bytes());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let missing = rt.block_on(async {
        let cas = buildfleet_cache::CasClient::connect(&cache_url)
            .await
            .unwrap();
        cas.find_missing(&[digest]).await.unwrap()
    });
    assert_eq!(missing, [digest], "{stdout}");
}
