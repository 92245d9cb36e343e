//! What a finished shard taught the duration and flaky history. The
//! scheduler decides it under its lock; the hub writes it once the lock is
//! released (history writes are disk I/O, and the lock serves every runner
//! and watcher), and a write that fails is said in the shard's log.

use std::time::Duration;

use tracing::warn;

use super::Scheduler;
use crate::db::DbError;
use crate::history::History;
use crate::run::Run;

/// One thing to write to history.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesson {
    pub run: String,
    pub step: usize,
    /// The shard's index, for its log.
    pub shard: u32,
    pub project: String,
    pub step_name: String,
    pub learned: Learned,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Learned {
    /// Item durations from a shard that ran all of its items.
    Durations(Vec<(String, Duration)>),
    /// Tests that failed and then passed on a re-run.
    Flaky { tests: Vec<String>, unix_secs: u64 },
}

impl Lesson {
    /// What shard `shard` (its index) of step `step` of `run` taught.
    pub fn of(run: &Run, step: usize, shard: u32, learned: Learned) -> Lesson {
        Lesson {
            run: run.id().to_owned(),
            step,
            shard,
            project: run.options().project.clone(),
            step_name: run.steps()[step].name().to_owned(),
            learned,
        }
    }

    pub fn write(&self, history: &History) -> Result<(), DbError> {
        match &self.learned {
            Learned::Durations(samples) => {
                history.record_durations(&self.project, &self.step_name, samples)
            }
            Learned::Flaky { tests, unix_secs } => {
                history.record_flaky(&self.project, &self.step_name, tests, *unix_secs)
            }
        }
    }
}

impl Scheduler {
    /// Lessons decided since the last call, for the caller to write.
    pub fn take_lessons(&mut self) -> Vec<Lesson> {
        std::mem::take(&mut self.lessons)
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// A lesson that could not be written: said in the shard's log.
    pub fn lesson_lost(&mut self, lesson: &Lesson, error: &DbError) {
        let line = match &lesson.learned {
            Learned::Durations(_) => format!("history: durations not recorded: {error}"),
            Learned::Flaky { .. } => format!("flaky tests not recorded in history: {error}"),
        };
        warn!(run = %lesson.run, step = %lesson.step_name, error = %error, "history not recorded");
        if let Some(run) = self.runs.get_mut(&lesson.run) {
            run.system_log(lesson.step, lesson.shard, &line);
        }
    }

    /// Writes what was learned, now: for callers with no lock to release
    /// first (tests, single-threaded tools).
    pub fn learn(&mut self) {
        for lesson in self.take_lessons() {
            if let Err(e) = lesson.write(&self.history) {
                self.lesson_lost(&lesson, &e);
            }
        }
    }
}
