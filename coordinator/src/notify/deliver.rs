//! Delivering notifications: one named task, one HTTP POST per webhook and
//! notification, retried with backoff; every attempt and the final outcome
//! go into the runs' notices, so an alert that never arrived is itself seen.

use crate::metrics::Delivery;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, info_span, warn, Instrument};

use super::{backoff, Notification, NotifyConfig, Webhook};
use crate::events::NoticeKind;
use crate::hub::Hub;

/// The delivery task and its inbox.
pub struct Deliveries {
    pub task: JoinHandle<()>,
}

pub fn spawn(
    hub: Arc<Hub>,
    config: NotifyConfig,
    mut inbox: mpsc::UnboundedReceiver<Notification>,
) -> Deliveries {
    let task = tokio::spawn(
        async move {
            let client = match reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
            {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "no HTTP client: webhooks cannot be delivered");
                    return;
                }
            };
            while let Some(n) = inbox.recv().await {
                for hook in config
                    .webhooks
                    .iter()
                    .filter(|w| w.events.contains(&n.event))
                {
                    deliver(&hub, &client, &config, hook, &n).await;
                }
            }
        }
        .instrument(info_span!("webhook_delivery")),
    );
    Deliveries { task }
}

fn record(hub: &Hub, runs: &[String], text: &str) {
    hub.with(|s| {
        for run in runs {
            s.record_notice(run, NoticeKind::Notification, text.to_owned());
        }
    });
}

async fn deliver(
    hub: &Hub,
    client: &reqwest::Client,
    config: &NotifyConfig,
    hook: &Webhook,
    n: &Notification,
) {
    let context = n.context.as_ref().map(|c| {
        serde_json::json!({
            "ref": c.git_ref,
            "branch": c.branch(),
            "commit": c.commit,
            "short_sha": c.short_sha(),
            "event": c.event,
            "actor": c.actor,
            "dirty": c.dirty,
        })
    });
    let body = serde_json::json!({
        "event": n.event.name(),
        "runs": n.runs,
        "text": n.text,
        "context": context,
    });
    // Notices are stored with the run and shown to every watcher: the
    // URL's path and query (often the credential) never go there, nor in
    // the coordinator's own log.
    let shown = hook.redacted();
    let what = format!("webhook {} → {shown}", n.event.name());
    let metrics = hub.read(|s| s.metrics());
    for attempt in 1..=config.attempts {
        let outcome = client
            .post(&hook.url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let failure = match outcome {
            Ok(r) if r.status().is_success() => {
                info!(event = n.event.name(), url = %shown, attempt, "webhook delivered");
                metrics.webhook(Delivery::Delivered);
                let line = format!(
                    "{what}: attempt {attempt} of {}: delivered (HTTP {})",
                    config.attempts,
                    r.status().as_u16()
                );
                record(hub, &n.runs, &line);
                return;
            }
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            // reqwest's errors name the URL: without it.
            Err(e) => format!("{}", e.without_url()),
        };
        warn!(event = n.event.name(), url = %shown, attempt, %failure, "webhook attempt failed");
        metrics.webhook(Delivery::AttemptFailed);
        record(
            hub,
            &n.runs,
            &format!(
                "{what}: attempt {attempt} of {} failed: {failure}",
                config.attempts
            ),
        );
        if attempt < config.attempts {
            tokio::time::sleep(backoff(config.backoff, attempt)).await;
        }
    }
    warn!(event = n.event.name(), url = %shown, "webhook not delivered; every attempt failed");
    metrics.webhook(Delivery::NotDelivered);
    record(
        hub,
        &n.runs,
        &format!("{what}: NOT DELIVERED after {} attempts", config.attempts),
    );
}
