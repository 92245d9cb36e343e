//! Handing a lease's working directory to its step user: the directories
//! become the step user's, so it can create, replace and remove files in
//! them (outputs, restored dependency caches, its own links); the files
//! linked from the local cache stay the runner's and read-only, so a write
//! through one gets EACCES instead of reaching the cache. It gets a home —
//! with its temporary directory — of its own beside the working directory,
//! removed with it, since the runner's own (`/root`) is not for it.

use std::io;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::step_users::Identity;

/// The step user's home beside a lease's working directory `dir`.
pub fn home_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".home");
    dir.with_file_name(name)
}

/// Gives `dir`'s directories (not its files) to `user`, closes `dir` to
/// everyone else (0700: other shards' users cannot look in), and makes the
/// home. Returns the environment that says who the step is.
pub async fn hand_over(dir: &Path, user: &Identity) -> io::Result<Vec<(String, String)>> {
    let (dir, user) = (dir.to_owned(), user.clone());
    tokio::task::spawn_blocking(move || hand_over_now(&dir, &user))
        .await
        .map_err(io::Error::other)?
}

fn hand_over_now(dir: &Path, user: &Identity) -> io::Result<Vec<(String, String)>> {
    let give = |path: &Path| {
        lchown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        give(&d)?;
        for dirent in std::fs::read_dir(&d)? {
            let dirent = dirent?;
            if dirent.file_type()?.is_dir() {
                dirs.push(dirent.path());
            }
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let home = home_of(dir);
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    for d in [&home, &tmp] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))?;
        give(d)?;
    }
    let name = user
        .name
        .clone()
        .unwrap_or_else(|| format!("uid{}", user.uid));
    Ok(vec![
        ("HOME".into(), home.display().to_string()),
        ("TMPDIR".into(), tmp.display().to_string()),
        ("USER".into(), name.clone()),
        ("LOGNAME".into(), name),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn directories_go_to_the_step_user_and_files_stay() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("lease-1");
        std::fs::create_dir_all(dir.join("src/deep")).unwrap();
        std::fs::write(dir.join("src/input.txt"), b"linked").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("link")).unwrap();
        let me = std::fs::metadata(root.path()).unwrap();
        let (uid, gid) = if me.uid() == 0 {
            (65534, 65534)
        } else {
            (me.uid(), me.gid()) // not root: can only give to itself
        };
        let user = Identity {
            uid,
            gid,
            name: None,
        };
        let env = hand_over(&dir, &user).await.unwrap();
        for d in ["", "src", "src/deep"] {
            let m = std::fs::metadata(dir.join(d)).unwrap();
            assert_eq!((m.uid(), m.gid()), (uid, gid), "{d}");
        }
        let file = std::fs::metadata(dir.join("src/input.txt")).unwrap();
        assert_eq!(file.uid(), me.uid(), "files stay the runner's");
        assert_eq!(
            std::fs::metadata("/etc").unwrap().uid(),
            0,
            "links not followed"
        );
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mode() & 0o777,
            0o700,
            "closed to other shards' users"
        );
        let home = root.path().join("lease-1.home");
        assert_eq!(std::fs::metadata(home.join("tmp")).unwrap().uid(), uid);
        assert!(env.contains(&("HOME".to_owned(), home.display().to_string())));
        assert!(env.contains(&("USER".to_owned(), format!("uid{uid}"))));
    }
}
