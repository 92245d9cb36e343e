//! Paths a pipeline names inside a work directory (outputs, reports,
//! dependency-cache paths and key files, artifact destinations), resolved
//! so the runner never reads or writes through a symbolic link that leaves
//! the work directory. The runner runs with more rights than the step (the
//! step's user cannot read the runner's data directory): a step that made
//! `dist -> /var/lib/buildfleet` and declared `dist` as an output would
//! otherwise have the runner upload what the step itself may not read, and
//! an input link `vendor -> /etc` would have a restore write there.
//!
//! A link that stays inside is followed (`dist -> build/dist` is fine).
//! Checking is sound because nothing in the work directory moves while it
//! runs: before the step starts and after its whole process tree is gone.

use std::io;
use std::path::{Component, Path, PathBuf};

/// Why a named path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("`{rel}` is not a relative path inside the work directory")]
    NotRelative { rel: String },
    #[error(
        "`{rel}` leads outside the work directory: `{link}` is a symbolic link to {target}; buildfleet never reads or writes through such a link"
    )]
    Outside {
        rel: String,
        link: String,
        target: String,
    },
    #[error("`{rel}` passes through `{link}`, a symbolic link to nothing ({target})")]
    Dangling {
        rel: String,
        link: String,
        target: String,
    },
    #[error("cannot inspect `{rel}` in the work directory: {source}")]
    Io {
        rel: String,
        #[source]
        source: io::Error,
    },
}

/// What to do with the last component when it is a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Last {
    /// Read what it names: followed, and checked like the rest.
    Follow,
    /// It is about to be removed and replaced: returned as it is.
    Replace,
}

/// The real path of `rel` under `root`, with every link on the way
/// followed and checked to stay inside `root`. Components that do not
/// exist yet are appended as named (nothing can be behind them).
pub fn within(root: &Path, rel: &str, last: Last) -> Result<PathBuf, ConfineError> {
    let io_err = |source| ConfineError::Io {
        rel: rel.to_owned(),
        source,
    };
    let names: Vec<&std::ffi::OsStr> = Path::new(rel)
        .components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(ConfineError::NotRelative {
                rel: rel.to_owned(),
            }),
        })
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(ConfineError::NotRelative {
            rel: rel.to_owned(),
        });
    }
    let root = std::fs::canonicalize(root).map_err(io_err)?;
    let mut at = root.clone();
    for (i, name) in names.iter().enumerate() {
        let next = at.join(name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Nothing exists below a missing directory.
                return Ok(names[i + 1..].iter().fold(next, |p, n| p.join(n)));
            }
            Err(e) => return Err(io_err(e)),
        };
        let is_last = i + 1 == names.len();
        if !meta.file_type().is_symlink() || (is_last && last == Last::Replace) {
            at = next;
            continue;
        }
        let shown = |p: &Path| p.strip_prefix(&root).unwrap_or(p).display().to_string();
        let target = std::fs::read_link(&next)
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        match std::fs::canonicalize(&next) {
            Ok(real) if real.starts_with(&root) => at = real,
            Ok(_) => {
                return Err(ConfineError::Outside {
                    rel: rel.to_owned(),
                    link: shown(&next),
                    target,
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ConfineError::Dangling {
                    rel: rel.to_owned(),
                    link: shown(&next),
                    target,
                })
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_are_followed_only_while_they_stay_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let work = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(work.path()).unwrap();
        let w = work.path();
        std::fs::create_dir_all(w.join("build/dist")).unwrap();
        symlink("build/dist", w.join("dist")).unwrap();
        symlink(outside.path(), w.join("escape")).unwrap();
        symlink(outside.path().join("secret"), w.join("out.txt")).unwrap();
        symlink("../..", w.join("build/up")).unwrap();
        symlink("nowhere", w.join("dangling")).unwrap();

        assert_eq!(
            within(w, "dist", Last::Follow).unwrap(),
            root.join("build/dist")
        );
        assert_eq!(
            within(w, "./dist/new/file", Last::Follow).unwrap(),
            root.join("build/dist/new/file"),
            "missing components are appended"
        );
        for rel in ["escape", "escape/secret", "out.txt", "build/up/x"] {
            let err = within(w, rel, Last::Follow).unwrap_err();
            assert!(matches!(err, ConfineError::Outside { .. }), "{rel}: {err}");
            assert!(err.to_string().contains("leads outside"), "{err}");
        }
        assert_eq!(
            within(w, "escape", Last::Replace).unwrap(),
            root.join("escape"),
            "a link about to be replaced is not followed"
        );
        assert!(matches!(
            within(w, "escape/x", Last::Replace),
            Err(ConfineError::Outside { .. })
        ));
        assert!(matches!(
            within(w, "dangling/x", Last::Follow),
            Err(ConfineError::Dangling { .. })
        ));
        for rel in ["", "/etc", "../x", "a/../../x"] {
            assert!(
                matches!(
                    within(w, rel, Last::Follow),
                    Err(ConfineError::NotRelative { .. })
                ),
                "{rel}"
            );
        }
    }
}
