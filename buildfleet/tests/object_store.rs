//! Two `buildfleet cache` processes on one S3-compatible bucket (moto, a
//! real server on 127.0.0.1): a blob uploaded through one is served by the
//! other, whose own disk never had it.

mod procs;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use procs::{server_with_env, Proc};

/// moto, from the venv `scripts/setup` makes, with a bucket: its URL.
fn moto() -> (Proc, String) {
    let tools = std::env::var("BUILDFLEET_TOOLS_DIR")
        .unwrap_or_else(|_| "/var/tmp/buildfleet-tools".into());
    let bin = std::path::Path::new(&tools).join("moto-venv/bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup",
        bin.display()
    );
    let mut child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let marker = "Running on http://127.0.0.1:";
    let port: u16 = loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "moto printed no address"
        );
        if let Some(at) = line.find(marker) {
            break line[at + marker.len()..].trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /fleet HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    (Proc(child), format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_uploaded_to_one_cache_node_is_served_by_another() {
    let (_moto, endpoint) = moto();
    let data = tempfile::tempdir().unwrap();
    let node = |name: &str| {
        let dir = data.path().join(name);
        server_with_env(
            &[
                "cache",
                "--data",
                dir.to_str().unwrap(),
                "--object-store-url",
                &endpoint,
                "--object-store-bucket",
                "fleet",
            ],
            &[
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
            ],
        )
    };
    let (_a, a_url) = node("a");
    let (mut b_node, b_url) = node("b");
    let a = buildfleet_cache::CasClient::connect(&a_url).await.unwrap();
    let b = buildfleet_cache::CasClient::connect(&b_url).await.unwrap();
    let small = bytes::Bytes::from(vec![5u8; 4000]);
    let large = bytes::Bytes::from(
        (0..3_000_000u32)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let (digests, _) = a
        .upload_blobs(vec![small.clone(), large.clone()])
        .await
        .unwrap();
    assert_eq!(
        b.find_missing(&digests).await.unwrap(),
        vec![],
        "b finds both"
    );
    assert_eq!(b.read_blob(&digests[0]).await.unwrap(), small);
    assert_eq!(b.read_blob(&digests[1]).await.unwrap(), large);
    // b's own store never received an upload: what it served came from
    // the bucket, and reading filled b's disk (kept once b stops cleanly;
    // blob entries skip the WAL, so only a clean stop flushes them).
    b_node.terminate();
    b_node.wait_exit(std::time::Duration::from_secs(20), "cache b");
    let b_alone = buildfleet_cache::RocksStore::open(data.path().join("b").join("cache")).unwrap();
    use buildfleet_cache::BlobStore;
    assert_eq!(
        b_alone.contains_many(&digests).unwrap(),
        vec![true, true],
        "b kept what it fetched"
    );
}
