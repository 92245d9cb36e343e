//! Secrets never leak: a step that prints its secrets in every form tools
//! produce — base64 (alone and inside a longer text, as a basic-auth header
//! is), base64url, URL-encoded, hex, JSON-escaped (also ASCII-only), a
//! JSON secret's leaves, and one cut in two by the 64 KiB line split —
//! leaves none of them in what watchers saw or in the stored whole log.

mod harness;
mod procs;

use base64::Engine as _;
use buildfleet_cache::CasClient;
use buildfleet_proto::v1 as pb;
use harness::{kind, step};
use pb::StateKind as K;

const TOKEN: &str = "p@ss/w0rd+t0k3n?é\"";
const SA: &str = r#"{"type":"service_account","private_key":"-----BEGIN KEY-----\nMIIEvQIBADANBgkq\n-----END KEY-----\n","client_id":"1234567890123"}"#;

const PRINTS: &str = r#"version: 1
stages:
  - name: s
    steps:
      - name: leak
        secrets: [TOKEN, SA]
        run: |
          python3 - <<'PY'
          import base64, json, os, sys, urllib.parse
          t = os.environ["TOKEN"]; b = t.encode()
          forms = [
              t,
              base64.b64encode(b).decode(),
              base64.urlsafe_b64encode(b).decode().rstrip("="),
              base64.b64encode(b"user:" + b).decode(),
              base64.b64encode(b"ab:" + b + b"!").decode(),
              urllib.parse.quote(t, safe=""),
              b.hex(),
              b.hex().upper(),
              json.dumps(t),
              json.dumps(t, ensure_ascii=False),
          ]
          for f in forms:
              print("out", f)
              print("err", f, file=sys.stderr)
          sa = json.loads(os.environ["SA"])
          print("key line", sa["private_key"].split("\n")[1])
          print("client", sa["client_id"])
          # A line longer than a chunk: the token straddles the 64 KiB cut.
          sys.stdout.write("x" * (65536 - 7) + t + "\n")
          PY
"#;

/// Every form the step printed.
fn printed() -> Vec<String> {
    let b = TOKEN.as_bytes();
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        TOKEN.to_owned(),
        b64.encode(b),
        url.encode(b),
        // The part of the basic-auth header that is the token's alone.
        b64.encode([b"user:".as_slice(), b].concat())[8..28].to_owned(),
        hex::encode(b),
        hex::encode_upper(b),
        "p%40ss%2Fw0rd%2Bt0k3n%3F%C3%A9%22".to_owned(),
        r#"p@ss/w0rd+t0k3n?\u00e9\""#.to_owned(),
        "MIIEvQIBADANBgkq".to_owned(),
        "1234567890123".to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_printing_its_secrets_in_every_form_leaks_none_of_them() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("TOKEN"), TOKEN).unwrap();
    std::fs::write(secrets.path().join("SA"), SA).unwrap();
    let dir = secrets.path().to_path_buf();
    let fleet = harness::start_with_dashboard(1, move |c| c.secrets.dir = Some(dir)).await;
    let (status, events) = fleet.run_with(PRINTS, &[("x", "y")], false).await;
    assert_eq!(kind(&status.state), K::Succeeded, "{status:?}");
    let mut streamed = Vec::new();
    for e in &events {
        if let Some(pb::run_event::Event::Log(l)) = &e.event {
            streamed.extend_from_slice(&l.data);
        }
    }
    let streamed = String::from_utf8_lossy(&streamed).into_owned();
    let digest = step(&status, "leak").shards[0]
        .full_log
        .clone()
        .expect("the whole log is stored");
    let cas = CasClient::connect_with(&fleet.fleet.cache_url, &fleet.fleet.client)
        .await
        .unwrap();
    let stored = cas
        .read_blob(&buildfleet_cache::Digest::try_from(&digest).unwrap())
        .await
        .unwrap();
    let stored = String::from_utf8_lossy(&stored).into_owned();
    let dashboard = dashboard_log(&fleet, &status.run_id).await;
    assert!(
        dashboard.contains("err ***"),
        "the dashboard's stream is the log: {dashboard:.300}"
    );
    for (what, text) in [
        ("streamed", &streamed),
        ("stored", &stored),
        ("dashboard", &dashboard),
    ] {
        assert!(text.contains("out ***"), "{what} log shows the masks");
        for form in printed() {
            assert!(!text.contains(&form), "{what} log leaks {form:?}");
        }
    }
    assert!(
        streamed.contains(&format!("{}***", "x".repeat(20))),
        "the token cut by the line split is masked whole"
    );
    fleet.stop().await;
}

/// The leak step's log as the dashboard's live stream sends it (raw SSE
/// off the socket), each line's HTML turned back into its text.
async fn dashboard_log(fleet: &harness::TestFleet, run: &str) -> String {
    let addr = fleet.dashboard.clone().expect("the dashboard serves");
    let token = std::fs::read_to_string(&fleet.fleet.token_file).unwrap();
    let path = format!("/runs/{run}/logs/leak/0/stream");
    let (code, _, body) = tokio::task::spawn_blocking(move || {
        let bearer = format!("Bearer {}", token.trim());
        procs::http(&addr, "GET", &path, &[("Authorization", &bearer)], "")
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("event: end"),
        "the stream ends with the shard: {body:.300}"
    );
    let mut text = String::new();
    for data in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(line) = serde_json::from_str::<serde_json::Value>(data) else {
            continue;
        };
        let Some(html) = line["html"].as_str() else {
            continue;
        };
        text.push_str(&unhtml(html));
        text.push('\n');
    }
    text
}

/// Text of a line's HTML: tags dropped, entities read.
fn unhtml(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}
