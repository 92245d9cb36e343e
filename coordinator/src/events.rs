//! A run's event log: every state change and log chunk, numbered from 1.
//!
//! Watchers read history and live events from the same log, so a late watcher
//! sees exactly what an early one saw — in order, nothing twice, nothing lost.
//! A `watch` channel carries the newest sequence number to wake them.

use std::sync::Arc;

use tokio::sync::watch;

pub use buildfleet_model::{
    Event, EventKind, LogEntry, LogStream, Notice, NoticeKind, StateChange,
};

#[derive(Debug)]
pub struct EventLog {
    events: Vec<Arc<Event>>,
    newest: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            events: Vec::new(),
            newest: watch::channel(0).0,
        }
    }
}

impl EventLog {
    pub fn push(&mut self, kind: EventKind) -> u64 {
        let seq = self.events.len() as u64 + 1;
        let at_unix_ms = buildfleet_model::unix_ms(std::time::SystemTime::now());
        self.events.push(Arc::new(Event {
            seq,
            at_unix_ms,
            kind,
        }));
        self.newest.send_replace(seq);
        seq
    }

    /// Events with `seq > after`, at most `max` of them.
    pub fn after(&self, after: u64, max: usize) -> Vec<Arc<Event>> {
        let start = (after as usize).min(self.events.len());
        self.events[start..].iter().take(max).cloned().collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().map(|e| e.as_ref())
    }

    pub fn last_seq(&self) -> u64 {
        self.events.len() as u64
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// A log restored from storage, numbered as it was.
    pub fn restore(events: Vec<Event>) -> EventLog {
        let log = EventLog::default();
        let last = events.len() as u64;
        let mut log = log;
        log.events = events.into_iter().map(Arc::new).collect();
        log.newest.send_replace(last);
        log
    }

    /// Wakes watchers without a new event (the run became terminal).
    pub fn poke(&self) {
        self.newest.send_modify(|_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: u8) -> EventKind {
        EventKind::Log(LogEntry {
            step: "s".into(),
            shard: 0,
            stream: LogStream::Stdout,
            data: vec![n],
        })
    }

    #[test]
    fn numbers_from_one_and_pages_after_a_seq() {
        let mut l = EventLog::default();
        for n in 0..5 {
            l.push(log(n));
        }
        let seqs: Vec<u64> = l.after(2, 10).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(l.after(0, 2).len(), 2);
        assert!(l.after(5, 10).is_empty());
        assert!(l.after(99, 10).is_empty());
    }

    #[tokio::test]
    async fn subscribers_are_woken_by_push() {
        let mut l = EventLog::default();
        let mut rx = l.subscribe();
        l.push(log(1));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), 1);
    }
}
