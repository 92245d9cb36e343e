//! Finding the cgroup hierarchies this runner may write to: where its own
//! cgroups are (`/proc/self/cgroup`) and where they are mounted
//! (`/proc/self/mountinfo`). Pure parsing here; the caller touches the
//! filesystem.

use std::path::{Path, PathBuf};

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    /// The part of the hierarchy the mount shows (not `/` under some
    /// container set-ups).
    pub root: String,
    /// `None` for cgroup v2; the v1 controllers (`memory`, `cpu`, …) else.
    pub controllers: Option<Vec<String>>,
}

/// Cgroup mounts from `/proc/self/mountinfo` text.
pub fn mounts(mountinfo: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split_whitespace().collect();
        let right: Vec<&str> = right.split_whitespace().collect();
        let (Some(root), Some(point), Some(fstype)) = (fields.get(3), fields.get(4), right.first())
        else {
            continue;
        };
        let controllers = match *fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                right
                    .get(2)
                    .map(|opts| {
                        opts.split(',')
                            .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => continue,
        };
        out.push(Mount {
            point: PathBuf::from(unescape(point)),
            root: unescape(root),
            controllers,
        });
    }
    out
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let octal = |b: &[u8]| -> Option<u8> {
        b.iter().try_fold(0u8, |acc, &d| {
            (b'0'..=b'7')
                .contains(&d)
                .then(|| acc.checked_mul(8)?.checked_add(d - b'0'))
                .flatten()
        })
    };
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = octal(&bytes[i + 1..i + 4]) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup path in the v2 hierarchy (`0::PATH`), if any.
fn own_v2(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// This process's cgroup path in the v1 hierarchy holding `controller`.
fn own_v1(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })
}

/// The directory of cgroup `path` under `mount`, if the mount shows it.
fn dir_of(mount: &Mount, path: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rel = path.strip_prefix(root)?;
    if !(rel.is_empty() || rel.starts_with('/')) {
        return None;
    }
    Some(join(&mount.point, rel))
}

/// This process's own directory in the v2 hierarchy, if one is mounted.
pub fn own_v2_dir(proc_cgroup: &str, mounts: &[Mount]) -> Option<PathBuf> {
    let path = own_v2(proc_cgroup)?;
    mounts
        .iter()
        .filter(|m| m.controllers.is_none())
        .find_map(|m| dir_of(m, &path))
}

/// This process's own directory in the v1 hierarchy of `controller`.
pub fn own_v1_dir(proc_cgroup: &str, mounts: &[Mount], controller: &str) -> Option<PathBuf> {
    let path = own_v1(proc_cgroup, controller)?;
    mounts
        .iter()
        .filter(|m| {
            m.controllers
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c == controller))
        })
        .find_map(|m| dir_of(m, &path))
}

fn join(base: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 31 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 24 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
34 24 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 24 0:39 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";

    #[test]
    fn hybrid_hosts_show_both_hierarchies() {
        let m = mounts(HYBRID);
        assert_eq!(m.len(), 4);
        let v2 = m.iter().find(|m| m.controllers.is_none()).unwrap();
        assert_eq!(v2.point, PathBuf::from("/sys/fs/cgroup/unified"));
        let mem = m
            .iter()
            .find(|m| m.controllers.as_ref().is_some_and(|c| c == &["memory"]))
            .unwrap();
        assert_eq!(mem.point, PathBuf::from("/sys/fs/cgroup/memory"));
        let named = m.iter().find(|m| m.point.ends_with("systemd")).unwrap();
        assert_eq!(
            named.controllers.as_deref(),
            Some(&["xattr".to_string()][..])
        );
    }

    #[test]
    fn own_paths_and_directories() {
        let cg = "9:name=systemd:/\n4:memory:/pod/abc\n1:cpu,cpuacct:/\n0::/runner.slice\n";
        assert_eq!(own_v2(cg).as_deref(), Some("/runner.slice"));
        assert_eq!(own_v1(cg, "memory").as_deref(), Some("/pod/abc"));
        assert_eq!(own_v1(cg, "cpu").as_deref(), Some("/"));
        assert_eq!(own_v1(cg, "pids"), None);
        let mount = Mount {
            point: "/sys/fs/cgroup".into(),
            root: "/".into(),
            controllers: None,
        };
        assert_eq!(
            dir_of(&mount, "/runner.slice"),
            Some(PathBuf::from("/sys/fs/cgroup/runner.slice"))
        );
        assert_eq!(dir_of(&mount, "/"), Some(PathBuf::from("/sys/fs/cgroup")));
        let nested = Mount {
            point: "/sys/fs/cgroup".into(),
            root: "/kubepods/pod1".into(),
            controllers: None,
        };
        assert_eq!(
            dir_of(&nested, "/kubepods/pod1/c1"),
            Some(PathBuf::from("/sys/fs/cgroup/c1"))
        );
        assert_eq!(dir_of(&nested, "/elsewhere"), None);
        assert_eq!(dir_of(&nested, "/kubepods/pod10"), None);
    }

    #[test]
    fn escaped_mount_points_are_read_back() {
        assert_eq!(unescape(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
