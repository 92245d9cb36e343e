//! `services:`: background processes a step runs against — a database
//! server for integration tests. Each gets a port (`BUILDFLEET_SERVICE_<NAME>_PORT`,
//! in every service's and the step's environment), starts in the shard's
//! directory under the shard supervisor (its own process group, its whole
//! tree stopped with it), and is waited for until its `ready:` command
//! succeeds — or, without one, until its port accepts a connection — so
//! no step runs against a database that is still starting (the seed's
//! "depends_on without a healthcheck"). One that never becomes ready fails
//! the step as `service-not-ready: NAME` with the tail of its output; one
//! that dies during the step is said; all are stopped (SIGTERM, then
//! SIGKILL after the grace) when the command ends, and their output is
//! kept in the shard's log.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buildfleet_model::Service;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::exec::{self, ExecError, ExecOutcome, ExecReport, ExecSpec, OutputChunk};
use crate::shard::log::LogSender;

/// The failure class of a service that never became ready.
pub const SERVICE_NOT_READY: &str = "service-not-ready";

/// Lines of a service's output kept for the shard's log.
const TAIL_LINES: usize = 200;
/// Between readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(200);
/// One `ready:` attempt may not take longer than this.
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Why the step did not run: a service was not ready.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("{SERVICE_NOT_READY}: {name} (not ready after {}; its last check: {last})", humantime::format_duration(*timeout))]
    Timeout {
        name: String,
        timeout: Duration,
        last: String,
    },
    #[error("{SERVICE_NOT_READY}: {name} ({how} before it was ready)")]
    Exited { name: String, how: String },
    #[error("{SERVICE_NOT_READY}: {name} (no free port: {source})")]
    Port {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl NotReady {
    /// The service it concerns.
    pub fn name(&self) -> &str {
        match self {
            NotReady::Timeout { name, .. }
            | NotReady::Exited { name, .. }
            | NotReady::Port { name, .. } => name,
        }
    }
}

/// The last lines a process printed, and how many fell out of the window.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    dropped: u64,
}

struct Running {
    name: String,
    cancel: watch::Sender<Option<String>>,
    task: JoinHandle<Result<ExecReport, ExecError>>,
    /// Ends once the service's output pipes are drained into `tail`.
    reader: JoinHandle<()>,
    tail: Arc<Mutex<Tail>>,
}

/// The step's services while it runs.
#[derive(Default)]
pub struct Services {
    running: Vec<Running>,
}

/// A port for each service, as environment variables. The ports are free
/// when chosen; a process that takes one in between makes the service fail
/// to bind, which its readiness then says.
pub fn ports(services: &[Service]) -> Result<Vec<(String, String)>, NotReady> {
    services
        .iter()
        .map(|s| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|source| NotReady::Port {
                    name: s.name.clone(),
                    source,
                })?
                .port();
            Ok((s.port_var(), port.to_string()))
        })
        .collect()
}

/// Starts every service in order, each waited for until ready. What was
/// started is returned even when one fails, so it is stopped as well.
pub async fn start(
    services: &[Service],
    base: &ExecSpec,
    log: &mut LogSender,
) -> (Services, Result<(), NotReady>) {
    let mut started = Services::default();
    for s in services {
        let running = spawn(s, base);
        started.running.push(running);
        let running = started.running.last().expect("just pushed");
        let began = Instant::now();
        if let Err(e) = until_ready(s, base, running).await {
            log.system(e.to_string()).await;
            return (started, Err(e));
        }
        log.system(format!(
            "service {} is ready ({} = {}) after {:.1}s",
            s.name,
            s.port_var(),
            port_of(s, base),
            began.elapsed().as_secs_f64()
        ))
        .await;
    }
    (started, Ok(()))
}

fn port_of(s: &Service, base: &ExecSpec) -> String {
    let var = s.port_var();
    base.env
        .iter()
        .find(|(k, _)| *k == var)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn spawn(s: &Service, base: &ExecSpec) -> Running {
    let spec = ExecSpec {
        command: s.command.clone(),
        timeout: None,
        ..base.clone()
    };
    let (cancel, cancel_rx) = watch::channel(None);
    let (out, mut out_rx) = mpsc::channel::<OutputChunk>(64);
    let tail = Arc::new(Mutex::new(Tail::default()));
    let sink = tail.clone();
    let name = s.name.clone();
    let reader = tokio::spawn(
        async move {
            while let Some(chunk) = out_rx.recv().await {
                let text = String::from_utf8_lossy(&chunk.data).into_owned();
                let mut t = sink.lock().unwrap_or_else(|p| p.into_inner());
                for line in text.lines() {
                    t.lines.push_back(line.to_owned());
                    if t.lines.len() > TAIL_LINES {
                        t.lines.pop_front();
                        t.dropped += 1;
                    }
                }
            }
        }
        .instrument(tracing::info_span!("service-output", service = %name)),
    );
    let task = tokio::spawn(
        exec::execute(spec, out, cancel_rx)
            .instrument(tracing::info_span!("service", service = %s.name)),
    );
    Running {
        name: s.name.clone(),
        cancel,
        task,
        reader,
        tail,
    }
}

async fn until_ready(s: &Service, base: &ExecSpec, running: &Running) -> Result<(), NotReady> {
    let deadline = Instant::now() + s.ready_timeout;
    let port: u16 = port_of(s, base).parse().unwrap_or(0);
    let mut last;
    loop {
        if running.task.is_finished() {
            return Err(NotReady::Exited {
                name: s.name.clone(),
                how: "it exited".into(),
            });
        }
        let ready = match &s.ready {
            Some(command) => {
                let limit = deadline
                    .saturating_duration_since(Instant::now())
                    .min(PROBE_LIMIT)
                    .max(Duration::from_millis(100));
                let (ok, said) = probe(command, base, limit).await;
                last = said;
                ok
            }
            None => {
                let ok = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok();
                last = format!(
                    "port {port} {}",
                    if ok {
                        "accepts connections"
                    } else {
                        "refuses connections"
                    }
                );
                ok
            }
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(NotReady::Timeout {
                name: s.name.clone(),
                timeout: s.ready_timeout,
                last,
            });
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Runs a `ready:` command once: whether it passed, and what it said.
async fn probe(command: &str, base: &ExecSpec, limit: Duration) -> (bool, String) {
    let spec = ExecSpec {
        command: command.to_owned(),
        timeout: Some(limit),
        ..base.clone()
    };
    let (out, mut rx) = mpsc::channel::<OutputChunk>(16);
    let (_keep, cancel) = watch::channel(None);
    let reader = tokio::spawn(
        async move {
            let mut text = String::new();
            while let Some(chunk) = rx.recv().await {
                text.push_str(&String::from_utf8_lossy(&chunk.data));
            }
            text
        }
        .instrument(tracing::info_span!("ready-probe-output")),
    );
    let report = exec::execute(spec, out, cancel).await;
    let printed = reader.await.unwrap_or_default();
    let last_line = printed.lines().last().unwrap_or_default().trim().to_owned();
    match report {
        Ok(r) if r.outcome == (ExecOutcome::Exited { code: 0 }) => (true, String::new()),
        Ok(r) => (
            false,
            format!("`{command}` {}{}", describe(&r.outcome), quote(&last_line)),
        ),
        Err(e) => (false, format!("`{command}` could not run: {e}")),
    }
}

fn quote(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

fn describe(outcome: &ExecOutcome) -> String {
    match outcome {
        ExecOutcome::Exited { code } => format!("exited with code {code}"),
        ExecOutcome::Signalled { signal } => format!("was killed by signal {signal}"),
        ExecOutcome::TimedOut { after } => format!("timed out after {after:?}"),
        ExecOutcome::Cancelled { reason } => format!("was stopped ({reason})"),
    }
}

impl Services {
    /// Stops every service (the last started first), says which had died
    /// during the step, and puts each one's output in the shard's log.
    pub async fn stop(self, log: &mut LogSender) {
        for r in self.running.into_iter().rev() {
            let _ = r.cancel.send(Some("the step ended".into()));
            let ended = r.task.await;
            // Only the cancel just sent ends a service as `Cancelled`: any
            // other outcome is an end of its own, during the step. (Asking
            // whether its task had finished would call a death "stopped"
            // while the runner was still draining the dead service's pipes.)
            let died = matches!(&ended, Ok(Ok(report)) if !matches!(report.outcome, ExecOutcome::Cancelled { .. }));
            match (&ended, died) {
                (Ok(Ok(report)), true) => {
                    log.system(format!(
                        "service {} {} during the step",
                        r.name,
                        describe(&report.outcome)
                    ))
                    .await
                }
                (Ok(Ok(_)), false) => log.system(format!("service {} stopped", r.name)).await,
                (Ok(Err(e)), _) => {
                    log.system(format!("service {} could not run: {e}", r.name))
                        .await
                }
                (Err(e), _) => log.system(format!("service {}: {e}", r.name)).await,
            }
            // The service's output is read to its end before its tail is
            // kept: `execute` has returned, so its sender is gone.
            if tokio::time::timeout(Duration::from_secs(2), r.reader)
                .await
                .is_err()
            {
                log.system(format!(
                    "service {}: its output was still being read 2s after it stopped; what follows may lack its last lines",
                    r.name
                ))
                .await;
            }
            let tail = std::mem::take(&mut *r.tail.lock().unwrap_or_else(|p| p.into_inner()));
            if tail.lines.is_empty() {
                continue;
            }
            let skipped = if tail.dropped > 0 {
                format!(" (its first {} lines left out)", tail.dropped)
            } else {
                String::new()
            };
            log.system(format!("service {} output{skipped}:", r.name))
                .await;
            for line in tail.lines {
                log.system(format!("[{}] {line}", r.name)).await;
            }
        }
    }

    /// The tail of a service's output, for a step that failed because of it.
    pub fn tail_of(&self, name: &str) -> Vec<String> {
        self.running
            .iter()
            .find(|r| r.name == name)
            .map(|r| {
                let t = r.tail.lock().unwrap_or_else(|p| p.into_inner());
                t.lines.iter().cloned().collect()
            })
            .unwrap_or_default()
    }
}
