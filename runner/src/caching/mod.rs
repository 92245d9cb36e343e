//! Caching on the runner: step results (the action cache) and dependency
//! caches, and the explanations given for every miss.
//!
//! Everything here is also used by `buildfleet cache explain`, which must
//! compute exactly the keys a runner would, so there is one implementation.

pub mod action;
pub mod dependency;
pub mod explain;
mod records;

/// The platform part of every key: results and dependency trees built on
/// one OS or architecture are not reused on another.
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// What one cache did, as reported to the coordinator and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `step` for the step result, else the dependency cache's name.
    pub cache: String,
    pub outcome: Outcome,
    pub key: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Fallback,
    Miss,
    SaveFailed,
    Saved,
    Disabled,
}

impl Report {
    /// One line for the shard's log.
    pub fn log_line(&self) -> String {
        let what = match self.outcome {
            Outcome::Hit => "hit",
            Outcome::Fallback => "restored from a fallback",
            Outcome::Miss => "miss",
            Outcome::SaveFailed => "cache-save-failed",
            Outcome::Saved => "saved",
            Outcome::Disabled => "off",
        };
        let subject = if self.cache == action::STEP_CACHE {
            "step result".to_owned()
        } else {
            format!("cache `{}`", self.cache)
        };
        let mut line = format!("{subject}: {what}");
        if !self.key.is_empty() {
            line.push_str(&format!(" [{}]", self.key));
        }
        if !self.detail.is_empty() {
            line.push_str(&format!(" — {}", self.detail));
        }
        line
    }
}
