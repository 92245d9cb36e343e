//! The dashboard honours the roles of the access table, as raw HTTP off a
//! real coordinator's port: no token is sent to log in, a runner token
//! sees no runs, a client sees only its own runs and may approve only
//! those, and a form posted from another site is refused — the step
//! still waits.

mod procs;
mod secured;

use buildfleet_model::State;
use buildfleet_trust::Role;
use secured::Secured;

const NAMES: &[(&str, Role, bool)] = &[
    ("ci", Role::Client, false),
    ("other", Role::Client, false),
    ("pool", Role::Runner, false),
    ("root", Role::Admin, false),
];

const GATED: &str = "version: 1\nstages:\n  - name: s\n    steps:\n      - { name: gate, approval: true, run: 'true' }\n";

struct Fleet(Secured);

impl std::ops::Deref for Fleet {
    type Target = Secured;
    fn deref(&self) -> &Secured {
        &self.0
    }
}

impl Fleet {
    async fn start() -> Fleet {
        Fleet(Secured::start(NAMES).await)
    }

    async fn submit_as(&self, name: &str) -> String {
        self.0.submit_yaml_as(name, GATED, None).await
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
