//! Finding, at start, what this runner may do with cgroups: a directory of
//! its own in each hierarchy it can write, proven by moving a process in
//! (writing `mkdir` is not the same permission as moving a process), the
//! memory and cpu controllers enabled down to it where they are delegated,
//! and what earlier runners that died left behind cleaned away.

use std::io;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{detect, dir_name, read, Isolation};

impl Isolation {
    /// Looks at this process's cgroups and makes a directory for this
    /// runner's shards in each usable hierarchy.
    pub fn detect(runner: &str) -> Isolation {
        let own = read(Path::new("/proc/self/cgroup"));
        let mounts = detect::mounts(&read(Path::new("/proc/self/mountinfo")));
        let leaf = format!("buildfleet-{}-{}", dir_name(runner), std::process::id());
        let mut iso = Isolation::default();
        // One short-lived process proves, for every hierarchy, that a
        // process can be moved in.
        let guinea = match Guinea::spawn() {
            Ok(g) => g,
            Err(e) => {
                iso.gaps.push(format!(
                    "no per-shard cgroups: a process to try them with could not be started ({e})"
                ));
                return iso;
            }
        };
        let mut probes = Vec::new();
        let v2_own = detect::own_v2_dir(&own, &mounts);
        match v2_own.map(|own_dir| (own_dir.clone(), make_base(&own_dir, &leaf, &guinea, &mut probes))) {
            None => iso.gaps.push(
                "no cgroup v2 hierarchy holds this runner, so shards are not killed as a unit by cgroup (process group and ancestry only)"
                    .into(),
            ),
            Some((own_dir, Err(e))) => iso.gaps.push(format!(
                "cgroup v2 {} is not usable ({e}), so shards are not killed as a unit by cgroup (process group and ancestry only)",
                own_dir.display()
            )),
            Some((own_dir, Ok(base))) => {
                iso.v2_kill = base.join("cgroup.kill").exists();
                for controller in ["memory", "cpu"] {
                    match delegate(&own_dir, &base, controller, runner) {
                        Ok(true) if controller == "memory" => iso.v2_memory = true,
                        Ok(true) => iso.v2_cpu = true,
                        Ok(false) => {}
                        Err(e) => iso.gaps.push(format!(
                            "cgroup v2 {controller} controller not enabled for shards under {} ({e})",
                            own_dir.display()
                        )),
                    }
                }
                iso.v2 = Some(base);
            }
        }
        for (controller, have_v2) in [("memory", iso.v2_memory), ("cpu", iso.v2_cpu)] {
            if have_v2 {
                continue;
            }
            let dir = detect::own_v1_dir(&own, &mounts, controller);
            match dir.map(|d| make_base(&d, &leaf, &guinea, &mut probes)) {
                Some(Ok(d)) if controller == "memory" => iso.v1_memory = Some(d),
                Some(Ok(d)) => iso.v1_cpu = Some(d),
                Some(Err(e)) => iso.gaps.push(format!(
                    "no {controller} limits or counts per shard: the cgroup v1 {controller} hierarchy is not usable ({e})"
                )),
                None => iso.gaps.push(format!(
                    "no {controller} limits or counts per shard: no {controller} controller (cgroup v2 or v1) is available to this runner"
                )),
            }
        }
        // Gone, then its probe cgroups are empty and can go too.
        drop(guinea);
        for probe in probes {
            // The kernel empties a cgroup as its last task is released:
            // a moment after the reap, at most.
            let removed = (0..50).any(|_| {
                std::fs::remove_dir(&probe).is_ok() || {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    false
                }
            });
            if !removed {
                warn!(dir = %probe.display(), "probe cgroup not removed");
            }
        }
        // At info, not warn: on a laptop (`buildfleet run`) nothing can be
        // done about it; a runner's log and ListRunners show it.
        info!(isolation = %iso.describe(), "shard isolation");
        iso
    }
}

/// A process to move into cgroups at start, killed when dropped.
struct Guinea(std::process::Child);

impl Guinea {
    fn spawn() -> io::Result<Guinea> {
        std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(Guinea)
    }
}

impl Drop for Guinea {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The runner's own directory below `parent`, once `guinea` was moved
/// into a cgroup there (`mkdir` is not the same permission as moving a
/// process, and the shards' shells will have to do exactly that). The probe
/// cgroup is left to remove once the guinea is gone.
fn make_base(
    parent: &Path,
    leaf: &str,
    guinea: &Guinea,
    probes: &mut Vec<PathBuf>,
) -> io::Result<PathBuf> {
    sweep_stale(parent)?;
    let base = parent.join(leaf);
    std::fs::create_dir_all(&base)?;
    let probe = base.join("probe");
    std::fs::create_dir_all(&probe)?;
    probes.push(probe.clone());
    if let Err(e) = std::fs::write(probe.join("cgroup.procs"), guinea.0.id().to_string()) {
        probes.pop();
        let _ = std::fs::remove_dir(&probe);
        let _ = std::fs::remove_dir(&base);
        return Err(io::Error::new(
            e.kind(),
            format!("cannot move a process into it: {e}"),
        ));
    }
    Ok(base)
}

/// Enables `controller` for the shards' cgroups: in our own cgroup's
/// `subtree_control`, then in our directory's. A cgroup that holds
/// processes cannot pass controllers down (cgroup v2's "no internal
/// processes"), so a runner alone in its cgroup — a container's main
/// process — first moves itself into a leaf of its own. `Ok(false)`: the
/// controller is not available here at all.
fn delegate(own_dir: &Path, base: &Path, controller: &str, runner: &str) -> io::Result<bool> {
    let available = read(&own_dir.join("cgroup.controllers"));
    if !available.split_whitespace().any(|c| c == controller) {
        return Ok(false);
    }
    let on = format!("+{controller}");
    let enable = || std::fs::write(own_dir.join("cgroup.subtree_control"), &on);
    if let Err(e) = enable() {
        if e.raw_os_error() != Some(nix::libc::EBUSY) {
            return Err(e);
        }
        let me = std::process::id().to_string();
        let procs = read(&own_dir.join("cgroup.procs"));
        if procs.lines().any(|p| p.trim() != me) {
            return Err(io::Error::new(
                e.kind(),
                "the runner's cgroup holds other processes; give the runner a cgroup of its own (e.g. systemd Delegate=yes)",
            ));
        }
        let home = own_dir.join(format!(
            "buildfleet-runner-{}-{}",
            dir_name(runner),
            std::process::id()
        ));
        std::fs::create_dir_all(&home)?;
        std::fs::write(home.join("cgroup.procs"), &me)?;
        info!(cgroup = %home.display(), "runner moved into a leaf cgroup of its own, so its shards can have controllers");
        enable()?;
    }
    std::fs::write(base.join("cgroup.subtree_control"), &on)?;
    Ok(true)
}

/// Removes what runners that died without cleaning up left here: their
/// directories (named with their pid) once that pid is gone and the
/// cgroups are empty. Only a directory that cannot be listed is an error.
fn sweep_stale(parent: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(parent)?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("buildfleet-"))
            .and_then(|n| n.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        for shard in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if shard.path().is_dir() {
                let _ = std::fs::remove_dir(shard.path());
            }
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => info!(dir = %dir.display(), "removed the cgroup of a runner that is gone"),
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "a gone runner's cgroup could not be removed")
            }
        }
    }
    Ok(())
}
