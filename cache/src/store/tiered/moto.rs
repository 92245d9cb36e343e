//! A real S3-compatible server for tests: moto, installed by
//! `scripts/setup` into its own venv, started on an OS-assigned port and
//! killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

use super::BucketConfig;

pub(crate) struct Moto {
    child: Child,
    endpoint: String,
}

const BUCKET: &str = "buildfleet-test";

impl Moto {
    pub(crate) fn start() -> Moto {
        let tools = std::env::var("BUILDFLEET_TOOLS_DIR")
            .unwrap_or_else(|_| "/var/tmp/buildfleet-tools".into());
        let bin = std::path::Path::new(&tools).join("moto-venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/setup, which installs moto (an S3-compatible test server)",
            bin.display()
        );
        let mut child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto starts");
        // It says where it listens on stderr: ` * Running on http://127.0.0.1:PORT`.
        let mut err = BufReader::new(child.stderr.take().expect("stderr"));
        let mut port = None;
        let mut seen = String::new();
        for _ in 0..50 {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(at) = line.find("Running on http://127.0.0.1:") {
                port = line[at + "Running on http://127.0.0.1:".len()..]
                    .trim()
                    .parse::<u16>()
                    .ok();
                break;
            }
        }
        let port = port.unwrap_or_else(|| panic!("moto printed no address:\n{seen}"));
        // Keep reading its log so it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let moto = Moto { child, endpoint };
        moto.create_bucket(port);
        moto
    }

    fn create_bucket(&self, port: u16) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("moto accepts");
        write!(
            s,
            "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// The bucket, under `prefix`, with dummy credentials (moto checks
    /// that requests are signed, not by whom).
    pub(crate) fn bucket(&self, prefix: &str) -> BucketConfig {
        BucketConfig {
            endpoint: self.endpoint.clone(),
            bucket: BUCKET.into(),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            prefix: prefix.into(),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
