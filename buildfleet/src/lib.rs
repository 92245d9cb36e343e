//! The buildfleet binary's library half: the embedded fleet, submission and
//! progress output, shared by `main` and the integration tests.

pub mod artifacts;
pub mod bars;
pub mod cli;
pub mod context;
pub mod decide;
pub mod explain;
pub mod fleet;
pub mod junit_out;
pub mod listing;
pub mod logging;
pub mod logs;
pub mod progress;
pub mod quarantine;
pub mod roles;
pub mod split_items;
pub mod submit;
pub mod test_sections;
pub mod token;
pub mod wire;

/// Exit statuses are part of the interface: 0 only when every step succeeded.
pub mod exit {
    pub const GREEN: i32 = 0;
    pub const FAILED: i32 = 1;
    pub const USAGE: i32 = 2;
}
