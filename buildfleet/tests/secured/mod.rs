//! A coordinator and a cache in this process with a token file: one token
//! per name and role, for the tests of who may do what (the gRPC API and
//! the dashboard, whose HTTP port is bound too).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use buildfleet_cache::{BlobStore, CasClient, RocksStore};
use buildfleet_coordinator::CoordinatorConfig;
use buildfleet_model::{RunContext, Submission};
use buildfleet_trust::{new_token, ClientTrust, Grant, Guard, Reloading, Role, TokenSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A step that finishes at once.
pub const QUICK: &str =
    "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: wait, run: 'true' }\n";

pub struct Secured {
    pub coordinator: String,
    pub cache: String,
    /// The coordinator's dashboard and `/metrics`.
    pub http: String,
    pub tokens: HashMap<&'static str, String>,
    stop: CancellationToken,
    _data: tempfile::TempDir,
}

impl Secured {
    /// Servers admitting a token for each (name, role, may write the cache).
    pub async fn start(names: &[(&'static str, Role, bool)]) -> Secured {
        let data = tempfile::tempdir().unwrap();
        let mut set = TokenSet::default();
        let mut tokens = HashMap::new();
        for &(name, role, cache_write) in names {
            let token = new_token().unwrap();
            let grant = Grant {
                name: name.into(),
                role,
                cache_write,
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
        Secured {
            coordinator,
            cache,
            http,
            tokens,
            stop,
            _data: data,
        }
    }

    pub fn trust(&self, name: &str) -> ClientTrust {
        ClientTrust::with_token(&self.tokens[name]).unwrap()
    }

    pub async fn coordinator(&self, name: &str) -> buildfleet::wire::Coordinator {
        buildfleet::wire::Coordinator::connect(&self.coordinator, &self.trust(name))
            .await
            .unwrap()
    }

    /// [`QUICK`] submitted as `name`.
    pub async fn submit_as(&self, name: &str, key: Option<&str>) -> String {
        self.submit_yaml_as(name, QUICK, key).await
    }

    /// `yaml` submitted as `name` over a one-file tree it uploads.
    pub async fn submit_yaml_as(&self, name: &str, yaml: &str, key: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        let snap = buildfleet_cache::snapshot(dir.path()).unwrap();
        let cas = CasClient::connect_with(&self.cache, &self.trust(name))
            .await
            .unwrap();
        cas.upload_snapshot(&snap).await.unwrap();
        let sub = Submission {
            pipeline_path: "buildfleet.yaml".into(),
            pipeline_yaml: yaml.into(),
            input_root: snap.root,
            idempotency_key: key.map(str::to_owned),
            split_items: Default::default(),
            no_cache: false,
            project: "p".into(),
            quarantine: Vec::new(),
            fail_on_flaky: false,
            context: RunContext::default(),
            vars: Default::default(),
        };
        match self.coordinator(name).await.submit(sub).await.unwrap() {
            buildfleet::wire::Submitted::Run(id) => id,
            buildfleet::wire::Submitted::Invalid(e) => panic!("{e}"),
        }
    }
}

impl Drop for Secured {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
