//! Runs as lists: what `ListRuns`, `buildfleet runs` and the dashboard's
//! runs page show.

use buildfleet_model::RunStatus;

use super::Scheduler;

impl Scheduler {
    /// Up to `limit` runs, newest first, of those whose owner `visible`
    /// accepts (`Caller::may_act_on`: a client's own, an admin's all).
    pub fn newest_runs(
        &self,
        limit: usize,
        visible: impl Fn(Option<&str>) -> bool,
    ) -> Vec<RunStatus> {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.runs.get(id))
            .filter(|r| visible(r.owner()))
            .take(limit)
            .map(|r| r.status())
            .collect()
    }
}
