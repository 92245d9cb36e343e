//! The coordinator's shared state: the scheduler behind one lock, plus an
//! outbox per connected runner. Every event that can free a slot or make work
//! ready ends in `dispatch`, so leases go out as soon as they can.
//!
//! What happens under the lock, and what does not: a change ([`Hub::with`])
//! is stored before the lock is released — the stored run is the run, so a
//! coordinator killed at any moment restores what watchers saw — and that
//! write is the only I/O under it. Reading a split step's duration history
//! (point lookups, when a step is planned) is the only other disk access.
//! Queries ([`Hub::read`]) store nothing. What a shard taught history is
//! written after the lock is released.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use buildfleet_model::Lease;

use crate::config::CoordinatorConfig;
use crate::scheduler::{CancelOrder, Loss, RunnerView, Scheduler};

/// A message for one runner, converted to the wire by the gRPC adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    Lease(Box<Lease>),
    Cancel(CancelOrder),
}

struct Connection {
    outbox: mpsc::UnboundedSender<Outbound>,
    last_seen: Instant,
}

pub struct Hub {
    pub config: CoordinatorConfig,
    sched: Mutex<Scheduler>,
    /// The scheduler's history, written outside its lock.
    history: crate::history::History,
    connections: Mutex<HashMap<String, Connection>>,
    /// The delivery task's inbox, once it runs.
    notifications: Mutex<Option<mpsc::UnboundedSender<crate::notify::Notification>>>,
    /// True once shutdown began: no submissions, watchers told to resume
    /// elsewhere, runner streams closed (at no cost to their shards).
    closing: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    /// The hub, with the runs a durable database holds restored.
    pub fn new(config: CoordinatorConfig, db: crate::db::Db) -> Hub {
        let history = db.history();
        let store = db.run_store().filter(|_| config.persist_runs);
        let mut sched = Scheduler::with_history(config.scheduler.clone(), history.clone());
        if let Some(store) = store {
            let secrets = config.secrets.clone();
            let resolve = move |names: &std::collections::BTreeSet<String>| {
                secrets.resolve(names, std::time::SystemTime::now())
            };
            if let Err(e) = sched.restore(&store, &resolve, Instant::now()) {
                warn!(error = %e, "stored runs could not be read; starting without them");
            }
            sched.persist_to(store);
        }
        Hub {
            sched: Mutex::new(sched),
            history,
            config,
            connections: Mutex::new(HashMap::new()),
            notifications: Mutex::new(None),
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// SIGTERM: stop taking submissions, end watch streams (watchers resume
    /// from their last event on the next coordinator) and runner streams.
    /// Runs are already stored after every change, so nothing is lost.
    pub fn begin_shutdown(&self) {
        tracing::info!("shutting down: no new submissions; closing watch and runner streams");
        self.closing.send_replace(true);
        let runners: Vec<String> = self.connections.lock().keys().cloned().collect();
        for id in runners {
            self.disconnect_runner(&id);
        }
    }

    /// Where notifications go; until set (and after `close_notifications`)
    /// they are logged and dropped.
    pub fn set_notifications(&self, tx: mpsc::UnboundedSender<crate::notify::Notification>) {
        *self.notifications.lock() = Some(tx);
    }

    pub fn close_notifications(&self) {
        self.flush_notifications();
        self.notifications.lock().take();
    }

    fn flush_notifications(&self) {
        let pending = self.with(|s| s.take_notifications());
        let tx = self.notifications.lock();
        for n in pending {
            let event = n.event.name();
            match tx.as_ref() {
                Some(tx) if tx.send(n.clone()).is_ok() => {}
                _ if self.config.notify.webhooks.is_empty() => {
                    debug!(event, text = %n.text, "no webhook configured for this notification");
                }
                _ => warn!(event, text = %n.text, "notification dropped: delivery has stopped"),
            }
        }
    }

    /// Runs `f` with the scheduler locked and stores what it changed
    /// (when runs are persisted) before the lock is released; then writes
    /// what finished shards taught history. Keep `f` short: no awaits.
    pub fn with<R>(&self, f: impl FnOnce(&mut Scheduler) -> R) -> R {
        let (r, lessons) = {
            let mut s = self.sched.lock();
            let r = f(&mut s);
            s.persist();
            s.observe();
            (r, s.take_lessons())
        };
        self.learn(lessons);
        r
    }

    /// Writes lessons to history, outside the lock; a failed write is said
    /// in the shard's log (and that is stored like any change).
    fn learn(&self, lessons: Vec<crate::scheduler::Lesson>) {
        for lesson in lessons {
            if let Err(e) = lesson.write(&self.history) {
                let mut s = self.sched.lock();
                s.lesson_lost(&lesson, &e);
                s.persist();
            }
        }
    }

    /// Runs a query with the scheduler locked: nothing changes, nothing is
    /// stored.
    pub fn read<R>(&self, f: impl FnOnce(&Scheduler) -> R) -> R {
        f(&self.sched.lock())
    }

    pub fn connect_runner(&self, view: RunnerView, outbox: mpsc::UnboundedSender<Outbound>) {
        let id = view.id.clone();
        self.connections.lock().insert(
            id,
            Connection {
                outbox,
                last_seen: Instant::now(),
            },
        );
        self.with(|s| s.register_runner(view));
        self.dispatch();
    }

    pub fn seen(&self, runner_id: &str) {
        if let Some(c) = self.connections.lock().get_mut(runner_id) {
            c.last_seen = Instant::now();
        }
    }

    pub fn disconnect_runner(&self, runner_id: &str) {
        self.connections.lock().remove(runner_id);
        let loss = match self.is_closing() {
            true => Loss::NoFault,
            false => Loss::RunnerLost,
        };
        self.with(|s| s.runner_gone(runner_id, loss, Instant::now()));
        self.dispatch();
    }

    pub fn send(&self, runner_id: &str, msg: Outbound) -> bool {
        let conns = self.connections.lock();
        conns
            .get(runner_id)
            .is_some_and(|c| c.outbox.send(msg).is_ok())
    }

    /// Leases every shard that can start now.
    pub fn dispatch(&self) {
        let assignments = self.with(|s| s.assign(Instant::now()));
        let mut lost = Vec::new();
        for a in assignments {
            debug!(runner = %a.runner_id, run = %a.lease.run_id, step = %a.lease.step, shard = a.lease.shard_index, "lease granted");
            if !self.send(&a.runner_id, Outbound::Lease(Box::new(a.lease))) {
                lost.push(a.runner_id);
            }
        }
        for runner in lost {
            warn!(runner = %runner, "lease could not be delivered: runner stream closed");
            self.disconnect_runner(&runner);
        }
        self.flush_notifications();
    }

    pub fn cancel_leases(&self, orders: Vec<CancelOrder>) {
        for o in orders {
            let runner = o.runner_id.clone();
            if !self.send(&runner, Outbound::Cancel(o)) {
                self.disconnect_runner(&runner);
            }
        }
    }

    /// Periodic housekeeping: label-wait deadlines and silent runners.
    pub fn tick(&self) {
        let now = Instant::now();
        let deadline = self.config.runner_deadline();
        let silent: Vec<String> = self
            .connections
            .lock()
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_seen) > deadline)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            warn!(runner = %id, ?deadline, "runner missed its heartbeats; treating it as lost");
            self.disconnect_runner(&id);
        }
        self.with(|s| s.tick(now));
        self.dispatch();
    }
}
