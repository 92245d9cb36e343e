//! What the caches did for a shard, as the runner reported it. Kept on the
//! shard and sent with its final state so the summary can say, for every
//! miss, why — and so a failed save is never invisible.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CacheOutcome {
    Hit,
    Fallback,
    Miss,
    SaveFailed,
    Saved,
    Disabled,
}

impl CacheOutcome {
    pub fn name(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Fallback => "fallback",
            CacheOutcome::Miss => "miss",
            CacheOutcome::SaveFailed => "cache-save-failed",
            CacheOutcome::Saved => "saved",
            CacheOutcome::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheReport {
    /// `step` for the step-result cache, else the dependency cache's name.
    pub cache: String,
    pub outcome: CacheOutcome,
    pub key: String,
    pub detail: String,
}
