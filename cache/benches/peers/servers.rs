//! The servers under test, each in a process of its own: buildfleet's
//! cache (this bench binary re-executed in server mode, so it is built
//! with the same profile) and BuildGrid from PyPI.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use buildfleet_cache::{DigestFunction, RocksStore};

/// Why a server could not be run; the row is skipped and says this.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the server announced {0:?}, not its address")]
    Announce(String),
    #[error("BuildGrid did not listen within 60 s")]
    NotListening,
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
}

/// Wraps an I/O error with what was being done.
pub fn io(doing: &'static str) -> impl FnOnce(std::io::Error) -> PeerError {
    move |source| PeerError::Io { doing, source }
}

/// Set to `rocks:DIR` to make this binary a cache server instead.
pub const SERVE_ENV: &str = "BUILDFLEET_PEERS_SERVE";

/// Server mode: a RocksDB-backed cache on an OS-assigned loopback port,
/// announced on stdout, until killed.
pub fn serve_here(spec: &str) {
    let dir = spec.strip_prefix("rocks:").expect("rocks:DIR");
    let store = Arc::new(RocksStore::open(dir).expect("open the store"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        println!("listening on {}", listener.local_addr().expect("addr"));
        buildfleet_cache::serve(
            listener,
            store,
            buildfleet_trust::Guard::open(),
            std::future::pending(),
        )
        .await
        .expect("serve");
    });
}

#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Buildfleet(DigestFunction),
    BuildGrid { disk: bool },
}

impl Peer {
    pub fn all() -> Vec<Peer> {
        vec![
            Peer::Buildfleet(DigestFunction::Sha256),
            Peer::Buildfleet(DigestFunction::Blake3),
            Peer::BuildGrid { disk: false },
            Peer::BuildGrid { disk: true },
        ]
    }

    pub fn label(&self) -> String {
        match self {
            Peer::Buildfleet(DigestFunction::Sha256) => "buildfleet (SHA-256, disk)".into(),
            Peer::Buildfleet(DigestFunction::Blake3) => "buildfleet (BLAKE3, disk)".into(),
            Peer::BuildGrid { disk } => format!(
                "BuildGrid {}, {}",
                buildgrid_version().unwrap_or_default(),
                if *disk { "disk" } else { "in-memory" }
            ),
        }
    }

    pub fn function(&self) -> DigestFunction {
        match self {
            Peer::Buildfleet(f) => *f,
            Peer::BuildGrid { .. } => DigestFunction::Sha256,
        }
    }

    /// A fresh server: empty store, its own data directory.
    pub fn start(&self, scratch: &Path) -> Result<Running, PeerError> {
        let data = scratch.join(format!("server-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).map_err(io("make the server's directory"))?;
        match self {
            Peer::Buildfleet(_) => {
                let exe = std::env::current_exe().map_err(io("find this binary"))?;
                let mut child = Command::new(exe)
                    .env(SERVE_ENV, format!("rocks:{}", data.display()))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(io("start the cache server"))?;
                let mut line = String::new();
                BufReader::new(child.stdout.take().expect("stdout"))
                    .read_line(&mut line)
                    .map_err(io("read the server's address"))?;
                let addr = line
                    .trim()
                    .strip_prefix("listening on ")
                    .ok_or_else(|| PeerError::Announce(line.clone()))?
                    .to_owned();
                Ok(Running::new(child, addr, data))
            }
            Peer::BuildGrid { disk } => {
                let bgd = buildgrid()?;
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_err(io("find a free port"))?
                    .port();
                let storage = if *disk {
                    format!("!disk-storage &main\n    path: {}/cas", data.display())
                } else {
                    "!lru-storage &main\n    size: 8G".to_owned()
                };
                let config = data.join("buildgrid.yml");
                std::fs::write(&config, buildgrid_config(port, &storage))
                    .map_err(io("write BuildGrid's config"))?;
                let child = Command::new(bgd)
                    .args(["server", "start"])
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(io("start BuildGrid"))?;
                let addr = format!("127.0.0.1:{port}");
                let running = Running::new(child, addr.clone(), data);
                let started = Instant::now();
                while std::net::TcpStream::connect(&addr).is_err() {
                    if started.elapsed() > Duration::from_secs(60) {
                        return Err(PeerError::NotListening);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(running)
            }
        }
    }
}

fn buildgrid_config(port: u16, storage: &str) -> String {
    format!(
        r#"server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
grpc-server-options:
  grpc.max_receive_message_length: 16777216
  grpc.max_send_message_length: 16777216
storages:
  - {storage}
instances:
  - name: ""
    services:
      - !cas
        storage: *main
      - !bytestream
        storage: *main
thread-pool-size: 30
"#
    )
}

fn bench_dir() -> PathBuf {
    std::env::var_os("BUILDFLEET_BENCH_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/buildfleet-bench"), PathBuf::from)
}

/// `bgd` from a venv made on first use with the newest BuildGrid this
/// machine's Python can run (0.9.x needs Python ≥ 3.13; Debian 12 has
/// 3.11, which gets 0.4.x).
fn buildgrid() -> Result<PathBuf, PeerError> {
    let venv = bench_dir().join("buildgrid-venv");
    let bgd = venv.join("bin/bgd");
    if bgd.is_file() {
        return Ok(bgd);
    }
    let run = |cmd: &mut Command| -> Result<(), PeerError> {
        let out = cmd.output().map_err(io("run a set-up command"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(PeerError::Command {
                command: format!("{cmd:?}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "buildgrid"]))?;
    Ok(bgd)
}

fn buildgrid_version() -> Option<String> {
    let pip = bench_dir().join("buildgrid-venv/bin/pip");
    let out = Command::new(pip)
        .args(["show", "buildgrid"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: ").map(str::to_owned))
}

/// A server process, killed (and its data removed) when dropped.
pub struct Running {
    child: Child,
    pub url: String,
    data: PathBuf,
}

impl Running {
    fn new(child: Child, addr: String, data: PathBuf) -> Running {
        Running {
            child,
            url: format!("http://{addr}"),
            data,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far, in bytes; `None` when
    /// `/proc` does not say (the table then shows it as unknown, not 0).
    pub fn peak_memory(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
