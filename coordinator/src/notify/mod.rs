//! Notifications: what must reach people when a pipeline goes wrong (a
//! failed run, a recovery, an expiring secret, a stall, a lost runner) and
//! the webhooks configured to receive them. A failing pipeline that alerts
//! nobody is one of the seed's failures; so is an alert that silently
//! failed to send, so every delivery attempt is recorded in the run.

mod deliver;

use std::time::Duration;

pub use deliver::{spawn, Deliveries};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    RunFailed,
    RunRecovered,
    SecretExpiring,
    RunStalled,
    RunnerLost,
    /// A step waits for someone to approve it.
    ApprovalNeeded,
}

impl Event {
    pub const ALL: [Event; 6] = [
        Event::RunFailed,
        Event::RunRecovered,
        Event::SecretExpiring,
        Event::RunStalled,
        Event::RunnerLost,
        Event::ApprovalNeeded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::RunFailed => "run-failed",
            Event::RunRecovered => "run-recovered",
            Event::SecretExpiring => "secret-expiring",
            Event::RunStalled => "run-stalled",
            Event::RunnerLost => "runner-lost",
            Event::ApprovalNeeded => "approval-needed",
        }
    }

    fn parse(text: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == text)
    }
}

/// A `--webhook` that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookSpecError {
    #[error("webhook `{spec}`: the URL must start with http:// or https://")]
    Scheme { spec: String },
    #[error(
        "webhook `{spec}`: unknown event `{event}` (known: {})",
        known_events()
    )]
    UnknownEvent { spec: String, event: String },
}

fn known_events() -> String {
    let known: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
    known.join(", ")
}

#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<Event>,
}

/// A webhook URL's path and query are often its credential (Slack's,
/// Discord's): never printed.
impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.redacted())
            .field("events", &self.events)
            .finish()
    }
}

impl Webhook {
    /// The URL as it may be shown and stored: scheme, host and port only
    /// (user info, path and query — where tokens live — replaced by `…`).
    pub fn redacted(&self) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("", &self.url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        let hidden = authority.contains('@') || rest.len() > authority.len();
        format!("{scheme}://{host}{}", if hidden { "/…" } else { "" })
    }

    /// `[EVENT,EVENT=]URL`; without events, every event.
    pub fn parse(spec: &str) -> Result<Webhook, WebhookSpecError> {
        let (events, url) = match spec.split_once('=') {
            Some((events, url)) if !events.contains("://") => (Some(events), url),
            _ => (None, spec),
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(WebhookSpecError::Scheme {
                spec: spec.to_owned(),
            });
        }
        let events = match events {
            None => Event::ALL.to_vec(),
            Some(list) => list
                .split(',')
                .map(|e| {
                    Event::parse(e.trim()).ok_or_else(|| WebhookSpecError::UnknownEvent {
                        spec: spec.to_owned(),
                        event: e.to_owned(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Webhook {
            url: url.to_owned(),
            events,
        })
    }
}

/// Webhooks and how hard to try.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhooks: Vec<Webhook>,
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time, at most a minute.
    pub backoff: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhooks: Vec::new(),
            attempts: 5,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Wait after failed attempt `n` (1-based).
pub fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1 << n.saturating_sub(1).min(16))
        .min(Duration::from_secs(60))
}

/// Something to tell the webhooks about, and the runs whose record keeps
/// the delivery attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: Event,
    pub runs: Vec<String>,
    pub text: String,
    /// The run's context, when the notification is about one run: a
    /// receiver can tell a failure on `main` from one on a branch.
    pub context: Option<buildfleet_model::RunContext>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_specs_name_events_or_take_all() {
        let all = Webhook::parse("https://hooks.example/x?a=b").unwrap();
        assert_eq!(all.events.len(), Event::ALL.len());
        assert_eq!(all.url, "https://hooks.example/x?a=b");
        assert_eq!(all.redacted(), "https://hooks.example/…");
        assert!(
            !format!("{all:?}").contains("x?a=b"),
            "Debug hides the token"
        );
        let with_user = Webhook::parse("https://bot:t0k3n@hooks.example:8443").unwrap();
        assert_eq!(with_user.redacted(), "https://hooks.example:8443/…");
        let some = Webhook::parse("run-failed,runner-lost=http://127.0.0.1:9/h").unwrap();
        assert_eq!(some.events, [Event::RunFailed, Event::RunnerLost]);
        assert!(Webhook::parse("run-faild=http://x")
            .unwrap_err()
            .to_string()
            .contains("unknown event `run-faild`"));
        assert!(Webhook::parse("ftp://x")
            .unwrap_err()
            .to_string()
            .contains("http://"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 3), Duration::from_millis(400));
        assert_eq!(backoff(b, 30), Duration::from_secs(60));
    }
}
