//! What happens to a run, as its event log records it and every watcher
//! (the CLI, a CI system, the dashboard) reads it: state changes, log
//! chunks and notices, numbered from 1.

use std::time::SystemTime;

use crate::cache::CacheReport;
use crate::context::RunContext;
use crate::log::LogStream;
use crate::state::State;

/// One numbered entry of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Strictly increasing per run, from 1, without gaps.
    pub seq: u64,
    /// When the coordinator recorded it, in Unix milliseconds (0 = not
    /// known: stored by a version that kept no times). The dashboard's
    /// time axis and the traces' spans are drawn from these.
    pub at_unix_ms: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What an event says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    /// The run, a step or a shard changed state.
    State(StateChange),
    /// Output of a shard (or buildfleet's own line about it).
    Log(LogEntry),
    /// Something about the run as a whole.
    Notice(Notice),
    /// What the run is for: its first event after its first state, so a
    /// watcher joining at any time reads it from the log.
    Context(RunContext),
}

/// A state change of the run, a step or a shard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateChange {
    /// `None` = the run itself.
    pub step: Option<String>,
    /// `None` = the step as a whole.
    pub shard: Option<u32>,
    /// The new state.
    pub state: State,
    /// The runner a shard is on (or was last on).
    pub runner: Option<String>,
    /// Time spent so far.
    pub duration_ms: u64,
    /// The shard's cache reports, on its terminal state change.
    pub cache: Vec<CacheReport>,
}

/// A chunk of a shard's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// The step's name.
    pub step: String,
    /// The shard's index (0 for a listing).
    pub shard: u32,
    /// Where it was printed.
    pub stream: LogStream,
    /// Whole lines where possible.
    pub data: Vec<u8>,
}

/// About the run as a whole: a warning, a notification attempt, a stall.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notice {
    /// What sort of notice.
    pub kind: NoticeKind,
    /// What to say.
    pub text: String,
    /// When.
    pub at: SystemTime,
}

/// The sorts of notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NoticeKind {
    /// Something that may need action (a secret about to expire).
    Warning,
    /// A webhook delivery attempt.
    Notification,
    /// The run made no progress for too long.
    Stalled,
    /// Something worth knowing that needs no action (a halt that ended).
    Info,
    /// A step waits for approval, or was approved, rejected or timed out.
    Approval,
}

impl NoticeKind {
    /// Every kind.
    pub const ALL: [NoticeKind; 5] = [
        NoticeKind::Warning,
        NoticeKind::Notification,
        NoticeKind::Stalled,
        NoticeKind::Info,
        NoticeKind::Approval,
    ];

    /// The wire and display name.
    pub fn name(self) -> &'static str {
        match self {
            NoticeKind::Warning => "warning",
            NoticeKind::Notification => "notification",
            NoticeKind::Stalled => "stalled",
            NoticeKind::Info => "info",
            NoticeKind::Approval => "approval",
        }
    }

    /// Reads a wire name; `None` for a kind this build does not know.
    pub fn parse(name: &str) -> Option<NoticeKind> {
        NoticeKind::ALL.into_iter().find(|k| k.name() == name)
    }
}
