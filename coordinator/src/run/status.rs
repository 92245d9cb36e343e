//! The run as one snapshot (`Get`, the summary, the dashboard).

use buildfleet_model::{unix_ms, RunStatus, ShardStatus, SplitStatus, StepStatus};

use super::Run;

impl Run {
    /// Everything about the run now.
    pub fn status(&self) -> RunStatus {
        RunStatus {
            run_id: self.id.clone(),
            state: self.state.clone(),
            steps: self
                .steps
                .iter()
                .map(|s| StepStatus {
                    name: s.name.clone(),
                    stage: s.stage.clone(),
                    state: s.state.clone(),
                    shards: s
                        .shards
                        .iter()
                        .map(|sh| ShardStatus {
                            index: sh.index,
                            state: sh.state.clone(),
                            runner: sh.runner.clone(),
                            duration_ms: sh.duration_ms,
                            attempt: sh.attempt,
                            cache: sh.cache.clone(),
                            tests: sh.tests.clone(),
                            items: sh.attempt_items.len() as u32,
                            predicted_ms: sh.predicted.as_millis() as u64,
                            full_log: sh.full_log,
                            log_dropped_bytes: sh.log_dropped,
                            muted_exit_code: sh.muted_exit,
                            outputs: sh.outputs.clone(),
                        })
                        .collect(),
                    split: s.split.as_ref().map(|i| SplitStatus {
                        source: i.source.clone(),
                        items: i.items as u32,
                        without_history: i.without_history as u32,
                        estimate_ms: i.estimate.as_millis() as u64,
                        predicted_ms: i.predicted.as_millis() as u64,
                        shard_choice: i.shard_choice.clone(),
                        duplicates: i.duplicates.clone(),
                    }),
                })
                .collect(),
            created_unix_ms: unix_ms(self.created_wall),
            duration_ms: self.duration_ms,
            pipeline_path: self.pipeline_path.clone(),
            notices: self.notices().cloned().collect(),
            context: self.options.context.clone(),
        }
    }
}
