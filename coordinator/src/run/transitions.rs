//! Every way a run changes. Each transition appends the event that
//! describes it, so the event log is the run: watchers, stored runs and
//! [`super::Projection`] all read the same history.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use buildfleet_model::state::{combine, State};

use super::{Listing, Planned, Run, ShardRun};
use crate::events::{EventKind, LogEntry, LogStream, StateChange};
use crate::pipeline::condition::{decide, Dep, Facts};

impl Run {
    pub fn set_shard_state(&mut self, step: usize, shard: usize, state: State, now: Instant) {
        self.last_progress = now;
        let s = &mut self.steps[step].shards[shard];
        if s.state == state {
            return;
        }
        if state == State::Running {
            s.started = Some(now);
        }
        s.state = state;
        self.emit_shard_state(step, shard);
        self.refresh_step(step, now);
    }

    pub(super) fn emit_shard_state(&mut self, step: usize, shard: usize) {
        let step_name = self.steps[step].name.clone();
        let s = &self.steps[step].shards[shard];
        let change = StateChange {
            step: Some(step_name),
            shard: Some(s.index),
            state: s.state.clone(),
            runner: s.runner.clone(),
            duration_ms: s.duration_ms,
            cache: s.cache.clone(),
        };
        self.events.push(EventKind::State(change));
    }

    /// A step-level state change that no shard drives (a listing lease
    /// starting), recorded as an event like every other.
    pub fn set_step_state(&mut self, step: usize, state: State, now: Instant) {
        self.last_progress = now;
        let st = &mut self.steps[step];
        if st.state == state {
            return;
        }
        if state == State::Running && st.started.is_none() {
            st.started = Some(now);
        }
        st.state = state;
        self.emit_step_state(step);
    }

    /// Whether any of a step's work has yet to start: a listing not yet
    /// leased, or a shard pending or waiting.
    pub fn has_unstarted(&self, step: usize) -> bool {
        let st = &self.steps[step];
        !st.state.is_terminal()
            && (st.listing == Listing::Needed
                || st.listing == Listing::Files
                || st
                    .shards
                    .iter()
                    .any(|sh| matches!(sh.state, State::Pending | State::Waiting)))
    }

    /// A listing lease that ended without items through no fault of the
    /// step (lost runner, coordinator restart): the step waits for another.
    pub fn list_again(&mut self, step: usize, why: &str, now: Instant) {
        self.system_log(step, 0, why);
        self.steps[step].listing = Listing::Needed;
        self.set_step_state(step, State::Waiting, now);
    }

    /// A step that may not start (a secret it needs expired or vanished):
    /// what has not run fails with `reason`; shards that already ended
    /// keep their state.
    pub fn fail_unstarted(&mut self, step: usize, reason: &str, now: Instant) {
        if !self.has_unstarted(step) {
            return;
        }
        let failed = State::failed(reason);
        self.system_log(step, 0, reason);
        // Not yet listed: no shard exists to fail on its own. (A listing
        // under way is started work: `has_unstarted` left it alone.)
        if self.steps[step].listing == Listing::Needed || self.steps[step].shards.is_empty() {
            self.steps[step].listing = Listing::Done;
            self.end_step_unrun(step, failed);
            return;
        }
        for shard in 0..self.steps[step].shards.len() {
            if matches!(
                self.steps[step].shards[shard].state,
                State::Pending | State::Waiting
            ) {
                self.set_shard_state(step, shard, failed.clone(), now);
            }
        }
    }

    /// Recomputes a step's state from its shards.
    fn refresh_step(&mut self, step: usize, now: Instant) {
        let st = &mut self.steps[step];
        if st.listing != Listing::Done {
            // No shards yet: nothing to combine (an empty set is not green).
            return;
        }
        let next = if let Some(done) = combine(st.shards.iter().map(|s| &s.state)) {
            done
        } else if st
            .shards
            .iter()
            .any(|s| s.state == State::Running || s.state.is_terminal())
        {
            State::Running
        } else {
            st.state.clone()
        };
        if next == State::Running && st.started.is_none() {
            st.started = Some(now);
        }
        if next.is_terminal() {
            st.duration_ms = st
                .started
                .map_or(0, |t| now.duration_since(t).as_millis() as u64);
        }
        if next != st.state {
            st.state = next;
            self.emit_step_state(step);
        }
    }

    /// A notice about the whole run (warnings, notification attempts).
    pub fn notice(&mut self, kind: crate::events::NoticeKind, text: String) {
        self.events.push(EventKind::Notice(crate::events::Notice {
            kind,
            text,
            at: SystemTime::now(),
        }));
    }

    pub fn notices(&self) -> impl Iterator<Item = &crate::events::Notice> {
        self.events.all().filter_map(|e| match &e.kind {
            EventKind::Notice(n) => Some(n),
            _ => None,
        })
    }

    /// Ends a run before any step starts (an expired or missing secret):
    /// the steps that needed it fail with the reason, the others are
    /// skipped because of it, and nothing is leased.
    pub fn fail_before_start(&mut self, needs: &BTreeMap<String, String>, now: Instant) {
        for step in 0..self.steps.len() {
            let state = match needs.get(&self.steps[step].name) {
                Some(reason) => State::failed(reason.clone()),
                None => State::Skipped {
                    reason: "the run failed before any step started".into(),
                },
            };
            self.steps[step].listing = Listing::Done;
            self.end_step_unrun(step, state);
        }
        self.refresh_run(now);
    }

    /// A line from buildfleet itself in a shard's log.
    pub fn system_log(&mut self, step: usize, shard: u32, text: &str) {
        self.events.push(EventKind::Log(LogEntry {
            step: self.steps[step].name.clone(),
            shard,
            stream: LogStream::System,
            data: format!("buildfleet: {text}\n").into_bytes(),
        }));
    }

    /// Makes a split step's shards from its plan; they can start at once if
    /// the step is ready.
    pub fn set_split(&mut self, step: usize, planned: Planned, now: Instant) {
        let st = &mut self.steps[step];
        let state = match st.state {
            State::Waiting | State::Running => State::Waiting,
            _ => State::Pending,
        };
        st.shards = planned
            .shards
            .into_iter()
            .zip(0..)
            .map(|((items, predicted), i)| ShardRun::new(i, items, predicted, state.clone()))
            .collect();
        st.listing = Listing::Done;
        let line = planned.info.describe(st.shards.len());
        st.split = Some(planned.info);
        self.system_log(step, 0, &line);
        // The new shards are state changes of the run like any other.
        for shard in 0..self.steps[step].shards.len() {
            self.emit_shard_state(step, shard);
        }
        self.refresh_step(step, now);
    }

    /// Sets a whole step (and all its shards) to a state, for steps that end
    /// before any shard ran: skipped, cancelled, unschedulable.
    pub fn end_step_unrun(&mut self, step: usize, state: State) {
        for shard in 0..self.steps[step].shards.len() {
            if !self.steps[step].shards[shard].state.is_terminal() {
                self.steps[step].shards[shard].state = state.clone();
                self.emit_shard_state(step, shard);
            }
        }
        self.steps[step].state = state;
        self.steps[step].duration_ms = 0;
        self.emit_step_state(step);
    }

    /// Decides pending steps until nothing changes: waiting (its condition
    /// holds), skipped by its condition, or skipped because a dependency
    /// failed. Returns true if anything moved.
    pub fn advance(&mut self, now: Instant) -> bool {
        let mut moved_any = false;
        loop {
            let mut moved = false;
            for i in 0..self.steps.len() {
                if self.steps[i].state != State::Pending {
                    continue;
                }
                let Some(next) = self.decide(i) else { continue };
                match next {
                    State::Waiting => match self.approval_timeout(i) {
                        Some(timeout) if self.steps[i].approval.is_none() => {
                            self.ask_approval(i, timeout, now)
                        }
                        _ => self.make_ready(i, now),
                    },
                    ended => {
                        if let State::ConditionFalse { why } = &ended {
                            let line = format!("skipped: its condition is false ({why})");
                            self.system_log(i, 0, &line);
                        }
                        self.steps[i].listing = Listing::Done;
                        self.end_step_unrun(i, ended);
                    }
                }
                moved = true;
            }
            if !moved {
                break;
            }
            moved_any = true;
        }
        self.refresh_run(now);
        moved_any
    }

    /// A step whose turn came (and, if it needs one, whose approval was
    /// given) waits for a runner.
    pub(super) fn make_ready(&mut self, step: usize, now: Instant) {
        let st = &mut self.steps[step];
        st.state = State::Waiting;
        st.ready_at = Some(now);
        for sh in &mut st.shards {
            sh.state = State::Waiting;
        }
        for shard in 0..self.steps[step].shards.len() {
            self.emit_shard_state(step, shard);
        }
        self.emit_step_state(step);
    }

    fn approval_timeout(&self, step: usize) -> Option<std::time::Duration> {
        self.pipeline
            .step(&self.steps[step].name)
            .and_then(|s| s.approval)
    }

    /// What a pending step becomes now, if it can be told: `Waiting` when
    /// it runs, else the state it ends in. Without a status function in
    /// its condition a failed dependency skips it at once (it could never
    /// run); otherwise it waits for every dependency to end.
    fn decide(&self, step: usize) -> Option<State> {
        let st = &self.steps[step];
        let def = self.pipeline.step(&st.name);
        let condition = def.and_then(|d| d.condition.as_ref());
        let deps: Vec<&super::StepRun> = st.deps.iter().map(|&d| &self.steps[d]).collect();
        if !condition.is_some_and(|c| c.uses_status()) {
            if let Some(d) = deps
                .iter()
                .find(|d| d.state.is_terminal() && !d.state.passes())
            {
                return Some(State::Skipped {
                    reason: format!("needs `{}`, which {}", d.name, d.state.name()),
                });
            }
        }
        if !deps.iter().all(|d| d.state.is_terminal()) {
            return None;
        }
        let context = &self.options.context;
        let mut env = def.map(|d| self.pipeline.step_env(d)).unwrap_or_default();
        env.extend(context.env().map(|(k, v)| (k.to_owned(), v)));
        let no_matrix = BTreeMap::new();
        let facts = Facts {
            context,
            env: &env,
            matrix: def.map_or(&no_matrix, |d| &d.matrix),
            deps: deps
                .iter()
                .map(|d| Dep {
                    name: &d.name,
                    state: &d.state,
                })
                .collect(),
            cancelled: self.cancel_reason.is_some(),
        };
        let verdict = decide(condition, &facts);
        Some(if verdict.holds {
            State::Waiting
        } else {
            State::ConditionFalse { why: verdict.why }
        })
    }

    /// Ends the run once every step is terminal.
    pub fn refresh_run(&mut self, now: Instant) {
        if self.state.is_terminal() {
            return;
        }
        let Some(all) = combine(self.steps.iter().map(|s| &s.state)) else {
            if self.state == State::Pending && self.steps.iter().any(|s| s.state == State::Running)
            {
                self.state = State::Running;
                self.emit_run_state();
            }
            return;
        };
        self.duration_ms = now.duration_since(self.created).as_millis() as u64;
        self.state = if let Some(reason) = &self.cancel_reason {
            State::Cancelled {
                reason: reason.clone(),
            }
        } else if all.is_green() {
            State::Succeeded
        } else {
            let bad: Vec<String> = self
                .steps
                .iter()
                .filter(|s| !s.state.passes())
                .map(|s| format!("{} {}", s.name, s.state))
                .collect();
            State::failed(bad.join("; "))
        };
        self.emit_run_state();
        self.events.poke();
    }

    /// Progress that is not a state change (a log chunk): the run is not
    /// stalled.
    pub fn touch(&mut self, now: Instant) {
        self.last_progress = now;
    }

    /// A log chunk from a shard (or listing, index 0) of `step`.
    pub fn append_log(
        &mut self,
        step: usize,
        shard_index: u32,
        stream: LogStream,
        data: Vec<u8>,
        now: Instant,
    ) {
        self.last_progress = now;
        self.events.push(EventKind::Log(LogEntry {
            step: self.steps[step].name.clone(),
            shard: shard_index,
            stream,
            data,
        }));
    }

    /// A listing lease handed to `runner`: the step runs its list command.
    pub fn lease_listing(&mut self, step: usize, lease_id: &str, runner: &str, now: Instant) {
        self.steps[step].listing = Listing::Leased(lease_id.to_owned());
        self.set_step_state(step, State::Running, now);
        let line = format!("listing the step's items on runner {runner}");
        self.system_log(step, 0, &line);
    }

    /// A listing that will not give the step shards after all (its run was
    /// cancelled meanwhile): the step ends in `state`.
    pub fn end_listing_unrun(&mut self, step: usize, state: State) {
        self.steps[step].listing = Listing::Done;
        self.end_step_unrun(step, state);
    }

    /// Shard `shard` leased to `runner` as its next attempt.
    pub fn lease_shard(
        &mut self,
        step: usize,
        shard: usize,
        runner: &str,
        lease_id: &str,
        now: Instant,
    ) {
        let sh = &mut self.steps[step].shards[shard];
        sh.runner = Some(runner.to_owned());
        sh.lease = Some(lease_id.to_owned());
        sh.attempt += 1;
        self.set_shard_state(step, shard, State::Running, now);
    }

    #[allow(clippy::too_many_arguments)]
    /// What an attempt's runner reported besides its state and tests:
    /// time spent, cache activity, where its whole log is. The state comes
    /// after the verdict ([`Run::end_shard`], [`Run::rerun_flaky`]).
    pub fn record_attempt(
        &mut self,
        step: usize,
        shard: usize,
        duration_ms: u64,
        cache: Vec<buildfleet_model::CacheReport>,
        full_log: Option<buildfleet_model::Digest>,
        log_dropped: u64,
        outputs: Vec<buildfleet_model::Artifact>,
    ) {
        let sh = &mut self.steps[step].shards[shard];
        sh.outputs = outputs;
        sh.duration_ms += duration_ms;
        sh.cache = cache;
        sh.full_log = full_log;
        sh.log_dropped = log_dropped;
    }

    /// The verdict ended the shard.
    pub fn end_shard(
        &mut self,
        step: usize,
        shard: usize,
        state: State,
        tests: Vec<buildfleet_model::TestResult>,
        muted_exit: Option<i32>,
        now: Instant,
    ) {
        let sh = &mut self.steps[step].shards[shard];
        sh.tests = tests;
        sh.muted_exit = muted_exit;
        self.set_shard_state(step, shard, state, now);
    }

    /// The verdict re-runs the shard's failed items (all of them when
    /// `items` is empty); the line says so in its log.
    pub fn rerun_flaky(
        &mut self,
        step: usize,
        shard: usize,
        tests: Vec<buildfleet_model::TestResult>,
        items: Vec<String>,
        flaky_retries: u32,
        now: Instant,
    ) {
        let sh = &mut self.steps[step].shards[shard];
        sh.tests = tests;
        sh.flaky_reruns += 1;
        if !items.is_empty() {
            sh.attempt_items = items;
        }
        let line = format!(
            "attempt {} (flaky re-run {} of {flaky_retries}) is queued",
            sh.attempt + 1,
            sh.flaky_reruns
        );
        let index = sh.index;
        self.system_log(step, index, &line);
        self.set_shard_state(step, shard, State::Waiting, now);
    }

    /// A shard whose attempt ended without a result is queued again; a
    /// lost runner (`Loss::RunnerLost`) counts against `retries: { infra }`,
    /// a loss that is nobody's fault does not. Returns the retries used.
    pub fn requeue(
        &mut self,
        step: usize,
        shard: usize,
        loss: super::Loss,
        line: &str,
        now: Instant,
    ) -> u32 {
        let sh = &mut self.steps[step].shards[shard];
        if loss == super::Loss::RunnerLost {
            sh.infra_retries += 1;
        }
        let (index, used) = (sh.index, sh.infra_retries);
        self.system_log(step, index, line);
        self.set_shard_state(step, shard, State::Waiting, now);
        used
    }

    /// Cancels the run: unstarted work ends now, except steps whose
    /// condition asks to run on cancellation (`always()`, `cancelled()`:
    /// cleanup); running shards end when their runner reports back.
    pub fn cancel(&mut self, reason: &str, now: Instant) {
        let first = self.cancel_reason.is_none();
        self.cancel_reason = Some(reason.to_owned());
        // The cancel is an event even when no step changes state (every
        // step left runs when cancelled): what is stored is the run, and
        // a restart must not forget that it was cancelled and end it green.
        if first {
            self.notice(
                crate::events::NoticeKind::Info,
                format!("run cancelled: {reason}"),
            );
        }
        let cancelled = State::Cancelled {
            reason: reason.to_owned(),
        };
        for step in 0..self.steps.len() {
            if self.runs_when_cancelled(step) {
                continue;
            }
            if matches!(
                self.steps[step].state,
                State::Pending | State::Waiting | State::AwaitingApproval
            ) {
                self.end_step_unrun(step, cancelled.clone());
            }
            for shard in 0..self.steps[step].shards.len() {
                if self.steps[step].shards[shard].state == State::Waiting {
                    self.set_shard_state(step, shard, cancelled.clone(), now);
                }
            }
        }
        // Spared steps whose dependencies just ended are decided now.
        self.advance(now);
    }

    /// Marks the run's end as notified; false if it already was.
    pub fn mark_end_notified(&mut self) -> bool {
        !std::mem::replace(&mut self.end_notified, true)
    }

    /// Marks the run as reported stalled; false if it already was.
    pub fn mark_stall_notified(&mut self) -> bool {
        !std::mem::replace(&mut self.stall_notified, true)
    }

    /// A stored run read back after a restart: its pipeline rebuilt from
    /// the stored file, its events as stored.
    pub fn restored(
        &mut self,
        pipeline: crate::pipeline::Pipeline,
        events: crate::events::EventLog,
    ) {
        self.pipeline = pipeline;
        self.events = events;
    }

    /// A restored run's secrets, read again from the store: values and
    /// expiries as they are now.
    pub fn resecret(
        &mut self,
        values: BTreeMap<String, String>,
        expiry: BTreeMap<String, super::Expiry>,
    ) {
        self.options.secrets = values;
        self.options.secret_expiry = expiry;
    }
}
