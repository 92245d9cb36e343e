//! The scheduler's side of persistence: storing what changed after each
//! operation, and rebuilding runs after a restart.

use std::collections::BTreeSet;
use std::time::Instant;

use tracing::{info, warn};

use super::Scheduler;
use crate::error::CoordinatorError;
use crate::events::{EventKind, EventLog, NoticeKind};
use crate::persist::RunStore;
use crate::run::{Listing, Run};
use crate::secrets::Resolved;
use buildfleet_model::state::State;

impl Scheduler {
    /// Forgets the oldest finished runs beyond `keep_runs`, in memory and
    /// in the store, so a long-lived coordinator stays bounded.
    pub(super) fn retire_old_runs(&mut self) {
        let finished: Vec<String> = self
            .order
            .iter()
            .filter(|id| self.runs.get(*id).is_some_and(|r| r.is_finished()))
            .cloned()
            .collect();
        let Some(excess) = finished.len().checked_sub(self.config.keep_runs) else {
            return;
        };
        for id in finished.into_iter().take(excess) {
            info!(run = %id, "finished run beyond the retention forgotten");
            if let Some(run) = self.runs.remove(&id) {
                if let Some(k) = &run.options().idempotency_key {
                    self.idempotency.remove(k);
                }
            }
            self.order.retain(|o| o != &id);
            self.saved.remove(&id);
            self.observed.remove(&id);
            self.unsaved.remove(&id);
            if let Some(store) = &self.store {
                if let Err(e) = store.forget(&id) {
                    warn!(run = %id, error = %e, "old run not deleted from the store");
                }
            }
        }
    }

    /// Stores runs in `store` from now on.
    pub fn persist_to(&mut self, store: RunStore) {
        self.store = Some(store);
    }

    /// Writes every run's new events (and its state, when anything but log
    /// lines changed) since the last call.
    pub fn persist(&mut self) {
        let Some(store) = &self.store else { return };
        let (mut halted, mut resumed) = (Vec::new(), Vec::new());
        for id in &self.order {
            let Some(run) = self.runs.get(id) else {
                continue;
            };
            let saved = self.saved.get(id).copied().unwrap_or(0);
            let last = run.events().last_seq();
            if last <= saved {
                continue;
            }
            let new = run.events().after(saved, usize::MAX);
            let snapshot = saved == 0 || new.iter().any(|e| !matches!(e.kind, EventKind::Log(_)));
            match store.save(run, &new, snapshot) {
                Ok(()) => {
                    self.saved.insert(id.clone(), last);
                    if self.unsaved.remove(id).is_some() {
                        info!(run = %id, "run stored again; leasing resumes");
                        resumed.push(id.clone());
                    }
                }
                Err(e) => {
                    if self.unsaved.insert(id.clone(), e.to_string()).is_none() {
                        warn!(run = %id, error = %e, "run not stored: no new leases for it until it is");
                        halted.push((id.clone(), e.to_string()));
                    }
                }
            }
        }
        // Said in the run itself (watchers read it from memory); stored
        // with the next write that succeeds.
        for (id, error) in halted {
            if let Some(run) = self.runs.get_mut(&id) {
                run.notice(
                    NoticeKind::Warning,
                    format!("the run's state could not be stored ({error}); a coordinator restart would lose it, so no new shards are leased for it until it can be stored again"),
                );
            }
        }
        for id in resumed {
            if let Some(run) = self.runs.get_mut(&id) {
                run.notice(
                    NoticeKind::Info,
                    "the run's state is stored again; leasing resumes".to_owned(),
                );
            }
        }
    }

    /// Why the run's state is not stored, while it is not (no new leases).
    pub fn unsaved(&self, run_id: &str) -> Option<&str> {
        self.unsaved.get(run_id).map(String::as_str)
    }

    /// Reads stored runs back. Unfinished ones go on: shards and listings
    /// that were in flight are leased again (the coordinator's restart
    /// costs them no retry), and `resolve` supplies secrets again.
    /// Finished runs beyond the newest `keep_runs` are deleted from the
    /// store rather than restored, so start-up and memory stay bounded.
    pub fn restore(
        &mut self,
        store: &RunStore,
        resolve: &dyn Fn(&BTreeSet<String>) -> Resolved,
        now: Instant,
    ) -> Result<usize, crate::db::DbError> {
        let mut stored = store.load_runs()?;
        stored.sort_by_key(|r| std::cmp::Reverse(r.created_wall()));
        let mut finished_kept = 0;
        let mut chosen = Vec::new();
        for run in stored {
            if run.is_finished() {
                if finished_kept >= self.config.keep_runs {
                    info!(run = %run.id(), "finished run beyond the retention; deleted");
                    if let Err(e) = store.forget(run.id()) {
                        warn!(run = %run.id(), error = %e, "old run not deleted");
                    }
                    continue;
                }
                finished_kept += 1;
            }
            chosen.push(run);
        }
        chosen.reverse();
        let mut count = 0;
        for mut run in chosen {
            let events = store.load_events(run.id())?;
            let pipeline = match pipeline_of(&run) {
                Ok(p) => p,
                Err(e) => {
                    warn!(run = %run.id(), error = %e, "stored run's pipeline no longer parses; not restored");
                    continue;
                }
            };
            run.restored(pipeline, EventLog::restore(events));
            self.saved
                .insert(run.id().to_owned(), run.events().last_seq());
            // What happened before the restart was counted by the process
            // that saw it.
            self.observed
                .insert(run.id().to_owned(), run.events().last_seq());
            if !run.is_finished() {
                let needed: BTreeSet<String> = run
                    .pipeline()
                    .steps()
                    .flat_map(|st| st.secrets.iter().cloned())
                    .collect();
                let resolved = resolve(&needed);
                let mut requeued = 0;
                for step in 0..run.steps().len() {
                    if let Listing::Leased(_) = run.steps()[step].listing() {
                        run.list_again(
                            step,
                            "the coordinator restarted while listing; listing again",
                            now,
                        );
                        requeued += 1;
                    }
                    for shard in 0..run.steps()[step].shards().len() {
                        if run.steps()[step].shards()[shard].state() != &State::Running {
                            continue;
                        }
                        let sh = &run.steps()[step].shards()[shard];
                        let line = format!(
                            "the coordinator restarted during attempt {} on {}; leasing again (no retry used)",
                            sh.attempt(),
                            sh.runner().unwrap_or_default()
                        );
                        run.requeue(step, shard, crate::run::Loss::NoFault, &line, now);
                        requeued += 1;
                    }
                }
                run.notice(
                    NoticeKind::Warning,
                    format!("the coordinator restarted; {requeued} shard(s) or listing(s) in flight were leased again"),
                );
                resecret(&mut run, resolved, now);
                run.touch(now);
            } else {
                let key = (
                    run.options().project.clone(),
                    run.pipeline_path().to_owned(),
                );
                self.last_green.insert(key, run.state().is_green());
            }
            if let Some(k) = &run.options().idempotency_key {
                self.idempotency.insert(k.clone(), run.id().to_owned());
            }
            self.order.push(run.id().to_owned());
            self.runs.insert(run.id().to_owned(), run);
            count += 1;
        }
        info!(runs = count, "runs restored");
        self.persist();
        Ok(count)
    }
}

/// A restored run's secrets, read again from the store: values and
/// expiries as they are now. A step still to run that needs a secret that
/// has since expired or been removed fails before it starts, naming it,
/// exactly as at submission — it never runs without it.
fn resecret(run: &mut Run, resolved: Resolved, now: Instant) {
    for w in &resolved.expiring {
        run.notice(NoticeKind::Warning, w.clone());
    }
    let expiry = resolved
        .expires
        .iter()
        .map(|(name, at)| (name.clone(), crate::run::Expiry::of(*at, now)))
        .collect();
    run.resecret(resolved.values, expiry);
    for step in 0..run.steps().len() {
        if run.steps()[step].state().is_terminal() {
            continue;
        }
        let Some(def) = run.pipeline().step(run.steps()[step].name()) else {
            continue;
        };
        let why: Vec<&str> = def
            .secrets
            .iter()
            .filter_map(|n| resolved.unusable.get(n).map(String::as_str))
            .collect();
        if why.is_empty() {
            continue;
        }
        let reason = format!(
            "{} (read again after the coordinator restarted)",
            why.join("; ")
        );
        warn!(run = %run.id(), step = %def.name, %reason, "step cannot start after the restart");
        run.fail_unstarted(step, &reason, now);
    }
    run.advance(now);
}

/// A stored run's pipeline as it ran: the stored file parsed again, with
/// the run's `--var` values, reduced to its one step for a re-run.
fn pipeline_of(run: &Run) -> Result<crate::pipeline::Pipeline, CoordinatorError> {
    let options = run.options();
    let pipeline = crate::pipeline::parse(run.pipeline_path(), &options.pipeline_yaml)?
        .with_vars(&options.vars)?;
    match &options.rerun {
        None => Ok(pipeline),
        Some(r) => pipeline
            .only(&r.step)
            .ok_or_else(|| CoordinatorError::UnknownStep {
                run: r.of_run.clone(),
                step: r.step.clone(),
            }),
    }
}
