//! Who may do what, against real servers on loopback with a token file:
//! every RPC of the documented access table called with no token, a wrong
//! token and each role; a client acting only on its own runs; a forged
//! runner (a client token) getting no lease; a client unable to write the
//! action cache.

mod secured;

use std::time::Duration;

use buildfleet_model::State;
use buildfleet_proto::reapi;
use buildfleet_trust::{new_token, Role};
use secured::Secured;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// The tokens of the fleet under test, by name.
const NAMES: &[(&str, Role, bool)] = &[
    ("ci", Role::Client, false),
    ("other", Role::Client, false),
    ("bazel", Role::Client, true),
    ("pool", Role::Runner, false),
    ("root", Role::Admin, false),
];

/// What a call came to: refused by the guard, or let through to the
/// handler (whatever the handler then said about the empty request).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Answer {
    Unauthenticated,
    Denied,
    Admitted,
}

/// Calls `path` with one empty message, as a stream (gRPC frames every
/// method kind the same way), presenting `token` if any.
async fn call(url: &str, path: &'static str, token: Option<&str>) -> Answer {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(futures::stream::iter(vec![()]));
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let status = match grpc
            .streaming(request, http::uri::PathAndQuery::from_static(path), codec)
            .await
        {
            Ok(response) => match response.into_inner().message().await {
                Ok(_) => return Answer::Admitted,
                Err(status) => status,
            },
            Err(status) => status,
        };
        match status.code() {
            Code::Unauthenticated => Answer::Unauthenticated,
            // The guard's refusals say "may not call"; a handler's own
            // PERMISSION_DENIED (a run that is not the caller's) differs.
            Code::PermissionDenied if status.message().contains("may not call") => Answer::Denied,
            _ => Answer::Admitted,
        }
    })
    .await;
    // A handler still waiting for more of the stream got past the guard.
    answer.unwrap_or(Answer::Admitted)
}

/// The access table as the docs state it: path and who may call it.
fn documented_table() -> Vec<(&'static str, String)> {
    let docs = include_str!("../../docs/security.md");
    let start = docs
        .find("<!-- access-table:start -->")
        .expect("table start");
    let end = docs.find("<!-- access-table:end -->").expect("table end");
    docs[start..end]
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let path = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((path, cells[2].to_owned()))
        })
        .collect()
}

#[test]
fn the_access_table_in_the_docs_is_the_one_enforced() {
    let docs = include_str!("../../docs/security.md");
    let start = docs.find("<!-- access-table:start -->\n").unwrap() + 28;
    let end = docs.find("<!-- access-table:end -->").unwrap();
    assert_eq!(
        &docs[start..end],
        buildfleet_trust::policy::markdown(),
        "docs/security.md's table differs from trust/src/policy.rs: paste the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_no_token_a_wrong_token_and_each_role_as_documented() {
    let fleet = Secured::start(NAMES).await;
    let table = documented_table();
    assert_eq!(table.len(), buildfleet_trust::policy::RPCS.len());
    let wrong = new_token().unwrap();
    let mut checked = 0;
    for (path, who) in table {
        let path: &'static str = buildfleet_trust::policy::find(path).unwrap().path;
        let urls: &[&str] = if path.starts_with("/buildfleet.v1.Pipelines/")
            || path.starts_with("/buildfleet.v1.RunnerService/")
        {
            &[&fleet.coordinator]
        } else if path.starts_with("/grpc.health") {
            &[&fleet.coordinator, &fleet.cache]
        } else {
            &[&fleet.cache]
        };
        let anyone = who == "anyone, no token";
        for url in urls {
            let outsider = if anyone {
                Answer::Admitted
            } else {
                Answer::Unauthenticated
            };
            assert_eq!(
                call(url, path, None).await,
                outsider,
                "{path} without a token"
            );
            assert_eq!(
                call(url, path, Some(&wrong)).await,
                outsider,
                "{path} with a wrong token"
            );
            for &(name, role, cache_write) in NAMES {
                let allowed = anyone
                    || who.split(", ").any(|w| w == role.as_str())
                    || (cache_write && who.contains("client with `cache_write: true`"));
                let want = if allowed {
                    Answer::Admitted
                } else {
                    Answer::Denied
                };
                let got = call(url, path, Some(&fleet.tokens[name])).await;
                assert_eq!(got, want, "{path} as {name} ({role}); the docs say: {who}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 23, "{checked} calls checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_acts_on_its_own_runs_only_and_an_admin_on_any() {
    let fleet = Secured::start(NAMES).await;
    let run = fleet.submit_as("ci", Some("k1")).await;
    let mut other = fleet.coordinator("other").await;
    let e = other.get(&run).await.unwrap_err();
    let status = e.downcast_ref::<tonic::Status>().expect("a gRPC status");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("submitted by another token"),
        "{}",
        status.message()
    );
    assert!(
        other.watch(&run, 0).await.is_err(),
        "another client cannot watch"
    );
    let e = other.rerun(&run, "wait", "mallory").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = other
        .decide(&run, "wait", true, "mallory", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // Cancel is the side effect that matters: it must not have happened.
    let mut raw = buildfleet::wire::pipelines(&fleet.coordinator, &fleet.trust("other"))
        .await
        .unwrap();
    let e = raw
        .cancel(buildfleet_proto::v1::CancelRequest {
            run_id: run.clone(),
            reason: "mallory".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mine = fleet.coordinator("ci").await.get(&run).await.unwrap();
    assert!(
        !mine.state.is_terminal(),
        "still under way: {:?}",
        mine.state
    );

    // The same idempotency key from another token is another run.
    let theirs = fleet.submit_as("other", Some("k1")).await;
    assert_ne!(theirs, run, "a key is its token's own");
    assert_eq!(fleet.submit_as("ci", Some("k1")).await, run);

    // The owner and an admin may.
    let mut root = buildfleet::wire::pipelines(&fleet.coordinator, &fleet.trust("root"))
        .await
        .unwrap();
    root.cancel(buildfleet_proto::v1::CancelRequest {
        run_id: theirs.clone(),
        reason: "admin".into(),
    })
    .await
    .unwrap();
    let mut ci = buildfleet::wire::pipelines(&fleet.coordinator, &fleet.trust("ci"))
        .await
        .unwrap();
    ci.cancel(buildfleet_proto::v1::CancelRequest {
        run_id: run.clone(),
        reason: "mine".into(),
    })
    .await
    .unwrap();
    let ended = fleet.coordinator("ci").await.get(&run).await.unwrap();
    assert!(
        matches!(ended.state, State::Cancelled { .. }),
        "{:?}",
        ended.state
    );
}

fn runner_config(
    fleet: &Secured,
    token: &str,
    name: &str,
    work: &std::path::Path,
) -> buildfleet_runner::RunnerConfig {
    buildfleet_runner::RunnerConfig {
        coordinator_url: fleet.coordinator.clone(),
        cache_url: fleet.cache.clone(),
        name: name.into(),
        labels: Vec::new(),
        slots: 1,
        work_root: work.to_path_buf(),
        kill_grace: Duration::from_millis(500),
        local_cas: None,
        min_free_disk: 0,
        drain_grace: Duration::from_secs(1),
        supervisor: env!("CARGO_BIN_EXE_buildfleet").into(),
        isolation: None,
        trust: fleet.trust(token),
        step_users: std::sync::Arc::new(
            buildfleet_runner::step_users::StepUserPool::new(
                buildfleet_runner::step_users::StepUsers::Runner,
                buildfleet_runner::step_users::RootSteps::Allow,
            )
            .unwrap(),
        ),
        metrics: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_with_a_client_token_gets_no_lease_and_a_real_one_is_named_by_its_token() {
    let fleet = Secured::start(NAMES).await;
    let run = fleet.submit_as("ci", None).await;
    let work = tempfile::tempdir().unwrap();
    // The forger claims the name of a real runner; it is stopped, not retried.
    let forged = runner_config(&fleet, "ci", "pool", work.path());
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        buildfleet_runner::run(forged, std::future::pending()),
    )
    .await
    .expect("a refused runner stops by itself");
    let e = ended.unwrap_err().to_string();
    assert!(
        e.contains("refused this runner") && e.contains("may not call"),
        "{e}"
    );
    let mut root = fleet.coordinator("root").await;
    assert_eq!(
        root.runner_count().await.unwrap(),
        0,
        "the forger never registered"
    );
    let status = root.get(&run).await.unwrap();
    assert_eq!(
        status.steps[0].state,
        State::Waiting,
        "no shard was leased: {status:?}"
    );

    // A runner of token `pool` calling itself `host-3` is `pool/host-3`,
    // and it does take the lease.
    let real = runner_config(&fleet, "pool", "host-3", work.path());
    let stop = CancellationToken::new();
    let task = tokio::spawn(buildfleet_runner::run(real, stop.clone().cancelled_owned()));
    let mut raw = buildfleet::wire::pipelines(&fleet.coordinator, &fleet.trust("root"))
        .await
        .unwrap();
    let mut names = Vec::new();
    for _ in 0..200 {
        names = raw
            .list_runners(buildfleet_proto::v1::ListRunnersRequest {})
            .await
            .unwrap()
            .into_inner()
            .runners
            .into_iter()
            .map(|r| r.name)
            .collect();
        if !names.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(names, vec!["pool/host-3".to_owned()]);
    let mut done = None;
    for _ in 0..400 {
        let s = root.get(&run).await.unwrap();
        if s.state.is_terminal() {
            done = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = done.expect("the real runner ran the step");
    assert_eq!(done.state, State::Succeeded, "{done:?}");
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_write_the_action_cache_but_a_cache_write_token_can() {
    let fleet = Secured::start(NAMES).await;
    let digest = buildfleet_model::digest::Digest::of(b"a victim's action");
    let request = reapi::UpdateActionResultRequest {
        action_digest: Some(buildfleet_proto::convert::to_reapi(digest)),
        action_result: Some(reapi::ActionResult {
            exit_code: 0,
            ..Default::default()
        }),
        digest_function: reapi::digest_function::Value::Blake3 as i32,
        ..Default::default()
    };
    let ac = |name: &str| {
        let trust = fleet.trust(name);
        let url = fleet.cache.clone();
        async move {
            let channel = buildfleet_trust::connect(&url, &trust).await.unwrap();
            reapi::action_cache_client::ActionCacheClient::new(channel)
        }
    };
    let e = ac("ci")
        .await
        .update_action_result(request.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The evidence is the cache itself: nothing was stored.
    let get = reapi::GetActionResultRequest {
        action_digest: Some(buildfleet_proto::convert::to_reapi(digest)),
        digest_function: reapi::digest_function::Value::Blake3 as i32,
        ..Default::default()
    };
    let e = ac("root")
        .await
        .get_action_result(get.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "the forged result was not stored");
    ac("bazel")
        .await
        .update_action_result(request)
        .await
        .expect("a token with cache_write may write");
    ac("ci")
        .await
        .get_action_result(get)
        .await
        .expect("stored now");
}
