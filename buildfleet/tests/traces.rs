//! One run is one trace across the fleet: the coordinator, a runner and
//! the cache, as separate processes exporting over OTLP to a collector in
//! this test, record spans that share the run's trace id — the wait for
//! a runner, the shard attempt, the runner's phases (materialise,
//! dependency restore, execute, upload, save) and the cache calls made
//! during them — and the phases hang under the attempt the coordinator
//! recorded.

mod procs;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use procs::{bin, runner_with, server_with_env, wait_for, wait_for_runners};

#[derive(Clone, Debug)]
struct Seen {
    service: String,
    name: String,
    trace: Vec<u8>,
    span: Vec<u8>,
    parent: Vec<u8>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Seen>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                got.push(Seen {
                    service: service.clone(),
                    name: s.name,
                    trace: s.trace_id,
                    span: s.span_id,
                    parent: s.parent_span_id,
                });
            }
        }
        self.spans.lock().unwrap().extend(got);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

const PIPELINE: &str = r#"version: 1
caches:
  deps:
    key_files: [lock.txt]
    paths: [deps]
stages:
  - name: build
    steps:
      - name: compile
        caches: [deps]
        outputs: [out.txt]
        run: |
          mkdir -p deps && cat lock.txt > deps/installed
          echo built > out.txt
"#;

#[test]
fn one_runs_spans_from_coordinator_runner_and_cache_share_one_trace() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let collector = Collector::default();
    let spans = collector.spans.clone();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let otlp = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let (_cache, cache_url) = server_with_env(&["cache", "--data", d], &otlp);
    let (_coord, coord_url) = server_with_env(&["coordinator", "--data", d], &otlp);
    let _runner = runner_with(
        &coord_url,
        &cache_url,
        "r1",
        &data.path().join("r1"),
        &["--otlp-endpoint", &endpoint],
    );
    wait_for_runners(&coord_url, 1);

    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("buildfleet.yaml"), PIPELINE).unwrap();
    std::fs::write(tree.path().join("lock.txt"), "left-pad==1.3.0\n").unwrap();
    let out = bin()
        .args(["submit", "--coordinator", &coord_url, "--cache", &cache_url])
        .arg(tree.path().join("buildfleet.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let run = procs::run_id_of(&stdout);
    let (trace, root) = buildfleet_trace::run_ids(&run);
    let trace = trace.to_bytes().to_vec();

    let wanted_runner = [
        "step cache lookup",
        "materialise",
        "dependency restore",
        "execute",
        "upload",
        "save",
        "store log",
    ];
    let mut last = Vec::new();
    wait_for(
        "every role's spans of the run",
        Duration::from_secs(30),
        || {
            last = spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace == trace)
                .cloned()
                .collect();
            let names: BTreeSet<(&str, &str)> = last
                .iter()
                .map(|s| (s.service.as_str(), s.name.as_str()))
                .collect();
            let runner_done = wanted_runner
                .iter()
                .all(|n| names.contains(&("buildfleet-runner", n)));
            let cache_seen = last.iter().any(|s| s.service == "buildfleet-cache");
            let coordinator_done = names
                .contains(&("buildfleet-coordinator", &format!("run {run}")))
                && names.contains(&("buildfleet-coordinator", "queue wait"))
                && names.contains(&("buildfleet-coordinator", "shard compile#0"));
            runner_done && cache_seen && coordinator_done
        },
    );

    // The tree: the run's root, the attempt under it, the wait and every
    // phase under the attempt, every cache call under a phase.
    let by_id: HashMap<&[u8], &Seen> = last.iter().map(|s| (s.span.as_slice(), s)).collect();
    let named = |service: &str, name: &str| {
        last.iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("no {name} from {service}: {last:#?}"))
    };
    let run_span = named("buildfleet-coordinator", &format!("run {run}"));
    assert_eq!(
        run_span.span,
        root.to_bytes().to_vec(),
        "the root has the run's id"
    );
    let attempt = named("buildfleet-coordinator", "shard compile#0");
    assert_eq!(
        attempt.parent, run_span.span,
        "the attempt is the run's child"
    );
    assert_eq!(
        named("buildfleet-coordinator", "queue wait").parent,
        attempt.span
    );
    for phase in wanted_runner {
        assert_eq!(
            named("buildfleet-runner", phase).parent,
            attempt.span,
            "{phase} is a phase of the attempt"
        );
    }
    let phases: BTreeSet<&[u8]> = last
        .iter()
        .filter(|s| s.service == "buildfleet-runner")
        .map(|s| s.span.as_slice())
        .collect();
    let cache_calls: Vec<&Seen> = last
        .iter()
        .filter(|s| s.service == "buildfleet-cache")
        .collect();
    for call in &cache_calls {
        assert!(
            phases.contains(call.parent.as_slice()),
            "cache call {} hangs under a runner phase, not {:?}",
            call.name,
            by_id.get(call.parent.as_slice()).map(|p| &p.name)
        );
    }
    let restore_calls = cache_calls
        .iter()
        .filter(|c| {
            by_id
                .get(c.parent.as_slice())
                .is_some_and(|p| p.name == "dependency restore")
        })
        .count();
    assert!(
        restore_calls > 0,
        "the restore asked the cache: {cache_calls:#?}"
    );
}
