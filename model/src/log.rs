//! Where a log chunk came from.

/// The stream a chunk of a shard's log was printed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LogStream {
    /// The command's standard output.
    Stdout,
    /// The command's standard error.
    Stderr,
    /// buildfleet's own lines about the shard (cache decisions, kills, …).
    System,
}
