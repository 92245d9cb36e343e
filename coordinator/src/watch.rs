//! Following a run: its history from any point, then live events, until
//! it ends — page by page, so a watcher with a long history never holds
//! the scheduler's lock for long.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info_span, Instrument};

use crate::error::CoordinatorError;
use crate::events::Event;
use crate::hub::Hub;

/// Events sent per lock acquisition while streaming history to a watcher.
const WATCH_PAGE: usize = 512;

impl Hub {
    /// Events of `run_id` after `after`, then each new one as it happens,
    /// until the run ends (the channel closes) or the coordinator shuts
    /// down (an error says where to resume).
    pub fn watch(
        self: &Arc<Self>,
        run_id: String,
        after: u64,
    ) -> Result<mpsc::Receiver<Result<Arc<Event>, CoordinatorError>>, CoordinatorError> {
        let newest = self.read(|s| s.run(&run_id).map(|r| r.events().subscribe()))?;
        let (tx, rx) = mpsc::channel(64);
        let span = info_span!("watch", run = %run_id);
        tokio::spawn(follow(self.clone(), run_id, after, newest, tx).instrument(span));
        Ok(rx)
    }
}

async fn follow(
    hub: Arc<Hub>,
    run_id: String,
    mut after: u64,
    mut newest: tokio::sync::watch::Receiver<u64>,
    tx: mpsc::Sender<Result<Arc<Event>, CoordinatorError>>,
) {
    let mut closing = hub.closing();
    loop {
        newest.borrow_and_update();
        let (events, finished) = match hub.read(|s| s.events_after(&run_id, after, WATCH_PAGE)) {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        for e in events.iter() {
            if tx.send(Ok(e.clone())).await.is_err() {
                return; // the watcher went away
            }
            after = e.seq;
        }
        if finished {
            return;
        }
        if !events.is_empty() {
            continue;
        }
        tokio::select! {
            changed = newest.changed() => if changed.is_err() { return },
            _ = shut_down(&mut closing) => {
                let retry = format!("watch again with after_seq {after}");
                let _ = tx.send(Err(CoordinatorError::ShuttingDown { retry })).await;
                return;
            }
        }
    }
}

/// Resolves once the coordinator is shutting down.
async fn shut_down(closing: &mut tokio::sync::watch::Receiver<bool>) {
    while !*closing.borrow() {
        if closing.changed().await.is_err() {
            return; // the hub is gone: as good as shut down
        }
    }
}
