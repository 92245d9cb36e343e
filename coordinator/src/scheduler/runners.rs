//! Runners as the scheduler sees them: registration, availability (drain,
//! disk floor), loss and hand-back, and which runner gets the next lease.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{info, warn};

use super::{RunnerView, Scheduler};
use crate::error::CoordinatorError;
use crate::run::{Loss, Run};
use buildfleet_model::state::State;

impl Scheduler {
    pub fn register_runner(&mut self, view: RunnerView) {
        info!(runner = %view.id, name = %view.name, slots = view.slots, labels = ?view.labels, "runner registered");
        self.runners.insert(view.id.clone(), view);
    }

    /// A runner's stream ended: every shard it held is lost with it. Each
    /// is leased again elsewhere while its step's `retries: { infra }`
    /// lasts — unless the loss is no fault of the runner (`Loss::NoFault`),
    /// which costs the shard nothing — and ends `runner lost` after that. Its
    /// lease is gone, so a late result from it is refused by lease id.
    pub fn runner_gone(&mut self, runner_id: &str, loss: Loss, now: Instant) {
        let Some(view) = self.runners.remove(runner_id) else {
            return;
        };
        let lost: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, l)| l.runner_id == runner_id)
            .map(|(id, _)| id.clone())
            .collect();
        if lost.is_empty() {
            info!(runner = %runner_id, name = %view.name, "runner disconnected");
        } else {
            warn!(runner = %runner_id, name = %view.name, leases = lost.len(), "runner disconnected holding leases");
        }
        let mut affected: Vec<String> = lost
            .iter()
            .filter_map(|id| self.leases.get(id).map(|l| l.run_id.clone()))
            .collect();
        affected.dedup();
        if !affected.is_empty() && loss == Loss::RunnerLost {
            self.outbox.push(crate::notify::Notification {
                event: crate::notify::Event::RunnerLost,
                runs: affected,
                text: format!(
                    "runner {} was lost holding {} lease(s)",
                    view.name,
                    lost.len()
                ),
                context: None,
            });
        }
        for lease_id in lost {
            let l = self.leases.remove(&lease_id).expect("lease listed above");
            if let Some(run) = self.runs.get_mut(&l.run_id) {
                lose_lease(run, l.step, l.shard, &view.name, loss, now);
                run.advance(now);
            }
        }
    }

    /// A runner is stopping on purpose (a deploy, a scale-down): no new
    /// leases, and nothing to warn about.
    pub fn drain(&mut self, runner_id: &str, why: String) {
        if let Some(r) = self.runners.get_mut(runner_id) {
            info!(runner = %r.name, reason = %why, "runner draining: no new leases");
            r.draining = Some(why);
        }
    }

    /// A runner's heartbeat: whether it can take leases (and why not),
    /// and its free disk.
    pub fn heartbeat(&mut self, runner_id: &str, why: Option<String>, disk_free: Option<u64>) {
        if let Some(r) = self.runners.get_mut(runner_id) {
            r.disk_free = disk_free;
            r.last_seen = std::time::SystemTime::now();
        }
        self.set_unavailable(runner_id, why);
    }

    /// A runner says whether it can take leases (and why not).
    pub fn set_unavailable(&mut self, runner_id: &str, why: Option<String>) {
        if let Some(r) = self.runners.get_mut(runner_id) {
            if r.unavailable != why {
                match &why {
                    Some(w) => warn!(runner = %r.name, reason = %w, "runner takes no new leases"),
                    None => info!(runner = %r.name, "runner takes leases again"),
                }
                r.unavailable = why;
            }
        }
    }

    /// A runner gives a lease back unfinished (draining, low disk): the
    /// shard is leased again elsewhere, at no cost to its retries.
    pub fn hand_back(
        &mut self,
        runner_id: &str,
        lease_id: &str,
        reason: &str,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let l = match self.leases.get(lease_id) {
            Some(l) if l.runner_id == runner_id => self.leases.remove(lease_id).expect("just seen"),
            _ => return Err(CoordinatorError::UnknownLease(lease_id.to_string())),
        };
        let name = self.runners.get_mut(runner_id).map(|r| {
            r.busy = r.busy.saturating_sub(1);
            r.name.clone()
        });
        if let Some(run) = self.runs.get_mut(&l.run_id) {
            let who = name.unwrap_or_else(|| runner_id.to_owned());
            let index = l
                .shard
                .map_or(0, |s| run.steps()[l.step].shards()[s].index());
            run.system_log(
                l.step,
                index,
                &format!("runner {who} handed the lease back ({reason})"),
            );
            lose_lease(run, l.step, l.shard, &who, Loss::NoFault, now);
            run.advance(now);
        }
        Ok(())
    }

    /// The runners, each with the shards it runs now.
    pub fn runners(&self) -> Vec<RunnerView> {
        let mut out: Vec<RunnerView> = self.runners.values().cloned().collect();
        for l in self.leases.values() {
            let Some(r) = out.iter_mut().find(|r| r.id == l.runner_id) else {
                continue;
            };
            let run = self.runs.get(&l.run_id);
            let step = run
                .and_then(|run| run.steps().get(l.step))
                .map_or("?", |s| s.name());
            let shard = match l.shard {
                Some(i) => format!("{}/{step}#{i}", l.run_id),
                None => format!("{}/{step} (listing)", l.run_id),
            };
            let owner = run.and_then(|run| run.owner()).map(str::to_owned);
            r.leases.push(super::RunnerLease { owner, shard });
        }
        for r in &mut out {
            r.leases.sort_by(|a, b| a.shard.cmp(&b.shard));
        }
        out
    }
}

/// One lease of a lost runner: its shard (or listing) is queued again if
/// the infra budget allows, else it ends `runner lost`. Either way the log
/// says what happened, so the retry's output is told apart from the loss.
pub(super) fn lose_lease(
    run: &mut Run,
    step: usize,
    shard: Option<usize>,
    runner: &str,
    loss: Loss,
    now: Instant,
) {
    let no_fault = loss == Loss::NoFault;
    let budget = run
        .pipeline()
        .step(run.steps()[step].name())
        .map_or(0, |d| d.infra_retries);
    let lost = State::RunnerLost {
        runner: runner.to_owned(),
    };
    let Some(shard) = shard else {
        if no_fault || budget > 0 {
            let line = format!("runner {runner} lost while listing; listing again");
            run.list_again(step, &line, now);
        } else {
            run.end_step_unrun(step, lost);
        }
        return;
    };
    let sh = &run.steps()[step].shards()[shard];
    let (index, attempt, used) = (sh.index(), sh.attempt(), sh.infra_retries());
    let retry = no_fault || used < budget;
    if !retry {
        warn!(run = %run.id(), step = %run.steps()[step].name(), shard = index, runner, "runner lost; infra retries used up");
        let line = format!(
            "runner {runner} lost during attempt {attempt}; no infra retry left ({budget} used)"
        );
        run.system_log(step, index, &line);
        run.set_shard_state(step, shard, lost, now);
        return;
    }
    let line = if no_fault {
        format!("attempt {attempt} on runner {runner} ended without a result, through no fault of the step; leasing again (no retry used)")
    } else {
        format!(
            "runner {runner} lost during attempt {attempt}; leasing again elsewhere (infra retry {} of {budget})",
            used + 1
        )
    };
    warn!(run = %run.id(), step = %run.steps()[step].name(), shard = index, runner, "runner lost; shard queued again");
    run.requeue(step, shard, loss, &line, now);
}

/// The runner with the most free slots among those whose labels match.
pub(super) fn pick_runner<'a>(
    runners: &'a mut BTreeMap<String, RunnerView>,
    labels: &[String],
) -> Option<&'a mut RunnerView> {
    runners
        .values_mut()
        .filter(|r| {
            r.availability().is_none()
                && r.busy < r.slots
                && labels.iter().all(|l| r.labels.contains(l))
        })
        .max_by_key(|r| (r.slots - r.busy, std::cmp::Reverse(r.id.clone())))
}
