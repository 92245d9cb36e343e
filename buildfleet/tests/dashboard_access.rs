//! The dashboard honours the roles of the access table, as raw HTTP off a
//! real coordinator's port: no token is sent to log in, a runner token
//! sees no runs, a client sees only its own runs and may approve only
//! those, and a form posted from another site is refused — the step
//! still waits.

mod procs;

use std::collections::HashMap;
use std::sync::Arc;

use buildfleet_cache::{BlobStore, CasClient, RocksStore};
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_model::{RunContext, State, Submission};
use buildfleet_trust::{new_token, ClientTrust, Grant, Guard, Reloading, Role, TokenSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const NAMES: &[(&str, Role)] = &[
    ("ci", Role::Client),
    ("other", Role::Client),
    ("pool", Role::Runner),
    ("root", Role::Admin),
];

const GATED: &str = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: gate, approval: true, run: 'true' }\n";

struct Fleet {
    coordinator: String,
    cache: String,
    http: String,
    tokens: HashMap<&'static str, String>,
    stop: CancellationToken,
    _data: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> Fleet {
        let data = tempfile::tempdir().unwrap();
        let mut set = TokenSet::default();
        let mut tokens = HashMap::new();
        for &(name, role) in NAMES {
            let token = new_token().unwrap();
            let grant = Grant {
                name: name.into(),
                role,
                cache_write: false,
            };
            set.insert(&token, grant);
            tokens.insert(name, token);
        }
        let guard = Guard::tokens(Reloading::fixed(set));
        let stop = CancellationToken::new();
        let store: Arc<dyn BlobStore> = Arc::new(RocksStore::open(data.path()).unwrap());
        let cache_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cache = format!("http://{}", cache_l.local_addr().unwrap());
        let stopped = stop.clone().cancelled_owned();
        tokio::spawn(buildfleet_cache::serve(
            cache_l,
            store,
            guard.clone(),
            stopped,
        ));
        let coord_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let coordinator = format!("http://{}", coord_l.local_addr().unwrap());
        let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_l.local_addr().unwrap().to_string();
        tokio::spawn(buildfleet_coordinator::grpc::serve_with_metrics(
            coord_l,
            Some(http_l),
            CoordinatorConfig::default(),
            buildfleet_coordinator::db::Db::in_memory(),
            guard,
            stop.clone().cancelled_owned(),
        ));
        Fleet {
            coordinator,
            cache,
            http,
            tokens,
            stop,
            _data: data,
        }
    }

    fn trust(&self, name: &str) -> ClientTrust {
        ClientTrust::with_token(&self.tokens[name]).unwrap()
    }

    async fn submit_as(&self, name: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let snap = buildfleet_cache::snapshot(dir.path()).unwrap();
        let cas = CasClient::connect_with(&self.cache, &self.trust(name))
            .await
            .unwrap();
        cas.upload_snapshot(&snap).await.unwrap();
        let sub = Submission {
            pipeline_path: "buildfleet.yaml".into(),
            pipeline_yaml: GATED.into(),
            input_root: snap.root,
            idempotency_key: None,
            split_items: Default::default(),
            no_cache: false,
            project: "p".into(),
            quarantine: Vec::new(),
            fail_on_flaky: false,
            context: RunContext::default(),
            vars: Default::default(),
        };
        let mut c = buildfleet::wire::Coordinator::connect(&self.coordinator, &self.trust(name))
            .await
            .unwrap();
        match c.submit(sub).await.unwrap() {
            buildfleet::wire::Submitted::Run(id) => id,
            buildfleet::wire::Submitted::Invalid(e) => panic!("{e}"),
        }
    }

    async fn gate_state(&self, run: &str) -> State {
        let mut c = buildfleet::wire::Coordinator::connect(&self.coordinator, &self.trust("root"))
            .await
            .unwrap();
        let status = c.get(run).await.unwrap();
        status.steps[0].state.clone()
    }

    /// A request as `who` (its token in the dashboard's cookie), off the
    /// async runtime: (status, head, body).
    async fn request(
        &self,
        who: Option<&str>,
        method: &'static str,
        path: String,
        extra: Vec<(&'static str, String)>,
        body: &'static str,
    ) -> (u16, String, String) {
        let addr = self.http.clone();
        let mut headers: Vec<(&'static str, String)> = extra;
        if let Some(who) = who {
            headers.push(("Cookie", format!("buildfleet_token={}", self.tokens[who])));
        }
        tokio::task::spawn_blocking(move || {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            procs::http(&addr, method, &path, &h, body)
        })
        .await
        .unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_and_allow_what_the_access_table_allows() {
    let fleet = Fleet::start().await;
    let mine = fleet.submit_as("ci").await;
    let theirs = fleet.submit_as("other").await;
    let page = format!("/runs/{mine}");

    // No token: to the login page, nothing shown.
    let (code, head, body) = fleet.request(None, "GET", page.clone(), vec![], "").await;
    assert_eq!(code, 303, "{head}");
    assert!(
        head.to_lowercase().contains("location: /login?next="),
        "{head}"
    );
    assert!(!body.contains(&mine));

    // A runner token lists no runs.
    let (code, _, body) = fleet
        .request(Some("pool"), "GET", "/".into(), vec![], "")
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("may not call"), "{body}");

    // A client lists its own runs only; an admin all.
    let (code, _, body) = fleet
        .request(Some("ci"), "GET", "/".into(), vec![], "")
        .await;
    assert_eq!(code, 200);
    assert!(body.contains(&format!(r#"data-run="{mine}""#)), "{body}");
    assert!(
        !body.contains(&theirs),
        "another client's run is not listed"
    );
    let (_, _, body) = fleet
        .request(Some("root"), "GET", "/".into(), vec![], "")
        .await;
    assert!(body.contains(&mine) && body.contains(&theirs));
    // And `ListRuns` itself (what `buildfleet runs` calls) the same.
    for (who, sees) in [
        ("ci", vec![mine.clone()]),
        ("root", vec![theirs.clone(), mine.clone()]),
    ] {
        let mut c = buildfleet::wire::Coordinator::connect(&fleet.coordinator, &fleet.trust(who))
            .await
            .unwrap();
        let ids: Vec<String> = c
            .runs(50)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(ids, sees, "{who} lists");
    }

    // Another client may not open the run, nor see its buttons.
    let (code, _, body) = fleet
        .request(Some("other"), "GET", page.clone(), vec![], "")
        .await;
    assert_eq!(code, 403, "{body}");
    let (code, _, body) = fleet
        .request(Some("ci"), "GET", page.clone(), vec![], "")
        .await;
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"<form class="approval inline" data-step="gate""#),
        "{body}"
    );

    let decide = format!("/runs/{mine}/steps/gate/decide");
    let form = vec![(
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned(),
    )];
    // Pressed by another client: refused, the step still waits.
    let (code, _, body) = fleet
        .request(
            Some("other"),
            "POST",
            decide.clone(),
            form.clone(),
            "decision=approve",
        )
        .await;
    assert_eq!(code, 403, "{body}");
    // Posted from another site with the owner's cookie: refused.
    let mut evil = form.clone();
    evil.push(("Origin", "http://evil.example".into()));
    let (code, _, body) = fleet
        .request(Some("ci"), "POST", decide.clone(), evil, "decision=approve")
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("another site"), "{body}");
    // A rejection without a reason is refused, not recorded.
    let (code, _, body) = fleet
        .request(
            Some("ci"),
            "POST",
            decide.clone(),
            form.clone(),
            "decision=reject&reason=",
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(fleet.gate_state(&mine).await, State::AwaitingApproval);

    // The owner's own page: approved, recorded as the token's name.
    let mut same = form.clone();
    same.push(("Origin", format!("http://{}", fleet.http)));
    let (code, head, _) = fleet
        .request(Some("ci"), "POST", decide, same, "decision=approve")
        .await;
    assert_eq!(code, 303, "{head}");
    assert_ne!(fleet.gate_state(&mine).await, State::AwaitingApproval);
    let mut c = buildfleet::wire::Coordinator::connect(&fleet.coordinator, &fleet.trust("root"))
        .await
        .unwrap();
    let status = c.get(&mine).await.unwrap();
    assert!(
        status
            .notices
            .iter()
            .any(|n| n.text.contains("approved by ci")),
        "{:?}",
        status.notices
    );
    assert_eq!(fleet.gate_state(&theirs).await, State::AwaitingApproval);
}
