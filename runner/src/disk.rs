//! The runner's free-disk floor: below it the runner takes no new leases
//! and says why (in `ListRunners`), instead of starting shards that would
//! fail half-way with "no space left on device".

use std::path::Path;

/// Free bytes on the work directory's disk, for heartbeats (the runners
/// page and `buildfleet runners` show it); `None` when it cannot be read.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// Why the runner should not take leases, if its disk is below the floor.
pub fn below_floor(dir: &Path, floor: u64) -> Option<String> {
    if floor == 0 {
        return None;
    }
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) => {
            let free = st.blocks_available().saturating_mul(st.fragment_size());
            (free < floor).then(|| {
                format!(
                    "free disk on {} is {} MiB, below the floor of {} MiB",
                    dir.display(),
                    free >> 20,
                    floor >> 20
                )
            })
        }
        Err(e) => Some(format!(
            "cannot read free disk space of {}: {e}",
            dir.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_above_the_disk_size_is_reported_and_zero_disables_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(below_floor(dir.path(), 0), None);
        assert_eq!(below_floor(dir.path(), 1), None, "some byte is free");
        let why = below_floor(dir.path(), u64::MAX).expect("nothing has that much free");
        assert!(why.contains("below the floor"), "{why}");
        let gone = below_floor(&dir.path().join("missing"), 1).unwrap();
        assert!(gone.contains("cannot read free disk space"), "{gone}");
    }
}
