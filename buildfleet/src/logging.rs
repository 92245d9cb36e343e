//! Tracing set-up: logs to stderr, filtered by `BUILDFLEET_LOG` (default: warnings
//! for `run`, info for the long-running roles).

use tracing_subscriber::EnvFilter;

pub fn init(default: &str) {
    let filter =
        EnvFilter::try_from_env("BUILDFLEET_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
