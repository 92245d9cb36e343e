//! How durations read in summaries and logs.

/// `850ms`, `2.5s`, `3m07s`: short, and precise where it matters.
pub fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Milliseconds since the Unix epoch (0 for a time before it): how every
/// role writes a wall-clock time on the wire and in storage.
pub fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_at_their_scale() {
        assert_eq!(super::fmt_ms(850), "850ms");
        assert_eq!(super::fmt_ms(2500), "2.5s");
        assert_eq!(super::fmt_ms(187_000), "3m07s");
    }
}
