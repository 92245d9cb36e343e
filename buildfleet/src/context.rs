//! Which commit, ref and event a submission is for. Each field comes from
//! its flag (`--ref`, `--commit`, `--event`, `--actor`), else from the CI
//! job submitting it (GitHub Actions, GitLab CI, Buildkite, Jenkins — their
//! standard variables), else from the git checkout of the input directory;
//! the event defaults to `manual`. Whether the tree has uncommitted changes
//! always comes from git.

use std::path::Path;
use std::process::Command;

use buildfleet_model::RunContext;

/// The context flags of `run` and `submit` (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub git_ref: Option<String>,
    pub commit: Option<String>,
    pub event: Option<String>,
    pub actor: Option<String>,
}

/// The context of a submission of `dir`, reading the environment through
/// `var`.
pub fn detect(given: &Given, dir: &Path, var: &dyn Fn(&str) -> Option<String>) -> RunContext {
    let ci = from_ci(var).unwrap_or_default();
    let git = from_git(dir);
    let pick = |flag: &Option<String>, ci: &str, git: &str| {
        flag.clone()
            .filter(|s| !s.is_empty())
            .or_else(|| Some(ci.to_owned()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| git.to_owned())
    };
    let event = pick(&given.event, &ci.event, "");
    let actor = pick(&given.actor, &ci.actor, "");
    RunContext {
        git_ref: pick(&given.git_ref, &ci.git_ref, &git.git_ref),
        commit: pick(&given.commit, &ci.commit, &git.commit),
        event: if event.is_empty() {
            "manual".to_owned()
        } else {
            event
        },
        actor: if actor.is_empty() {
            var("USER").unwrap_or_default()
        } else {
            actor
        },
        dirty: git.dirty,
    }
}

/// What the CI job submitting this says, if it runs in one we know.
fn from_ci(var: &dyn Fn(&str) -> Option<String>) -> Option<RunContext> {
    let get = |name: &str| var(name).unwrap_or_default();
    let is = |name: &str| var(name).is_some_and(|v| v == "true");
    let branch_ref = |b: String| match b.as_str() {
        "" => String::new(),
        b => format!("refs/heads/{b}"),
    };
    if is("GITHUB_ACTIONS") {
        return Some(RunContext {
            git_ref: get("GITHUB_REF"),
            commit: get("GITHUB_SHA"),
            event: get("GITHUB_EVENT_NAME"),
            actor: get("GITHUB_ACTOR"),
            dirty: false,
        });
    }
    if is("GITLAB_CI") {
        let git_ref = match (get("CI_COMMIT_TAG"), get("CI_MERGE_REQUEST_IID")) {
            (tag, _) if !tag.is_empty() => format!("refs/tags/{tag}"),
            (_, mr) if !mr.is_empty() => format!("refs/merge-requests/{mr}/head"),
            _ => branch_ref(get("CI_COMMIT_REF_NAME")),
        };
        let event = match get("CI_PIPELINE_SOURCE").as_str() {
            "merge_request_event" => "pull_request".to_owned(),
            "web" | "api" | "trigger" => "manual".to_owned(),
            other => other.to_owned(),
        };
        return Some(RunContext {
            git_ref,
            commit: get("CI_COMMIT_SHA"),
            event,
            actor: get("GITLAB_USER_LOGIN"),
            dirty: false,
        });
    }
    if is("BUILDKITE") {
        let pull = !matches!(get("BUILDKITE_PULL_REQUEST").as_str(), "" | "false");
        let git_ref = match get("BUILDKITE_TAG") {
            tag if !tag.is_empty() => format!("refs/tags/{tag}"),
            _ => branch_ref(get("BUILDKITE_BRANCH")),
        };
        let event = match (pull, get("BUILDKITE_SOURCE").as_str()) {
            (true, _) => "pull_request".to_owned(),
            (false, "webhook") => "push".to_owned(),
            (false, "schedule") => "schedule".to_owned(),
            (false, "") => String::new(),
            (false, _) => "manual".to_owned(),
        };
        return Some(RunContext {
            git_ref,
            commit: get("BUILDKITE_COMMIT"),
            event,
            actor: get("BUILDKITE_BUILD_CREATOR"),
            dirty: false,
        });
    }
    if var("JENKINS_URL").is_some() {
        let branch = get("GIT_BRANCH");
        let branch = branch.strip_prefix("origin/").unwrap_or(&branch).to_owned();
        let event = match var("CHANGE_ID") {
            Some(_) => "pull_request",
            None => "push",
        };
        return Some(RunContext {
            git_ref: branch_ref(branch),
            commit: get("GIT_COMMIT"),
            event: event.to_owned(),
            actor: get("BUILD_USER_ID"),
            dirty: false,
        });
    }
    None
}

/// What the git checkout holding `dir` says: HEAD, its branch, and whether
/// the tree has uncommitted changes. Nothing when `dir` is not in one (or
/// git is not installed).
fn from_git(dir: &Path) -> RunContext {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--verify", "-q", "HEAD"]) else {
        return RunContext::default();
    };
    RunContext {
        git_ref: git(&["symbolic-ref", "-q", "HEAD"]).unwrap_or_default(),
        commit,
        dirty: git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()),
        ..RunContext::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn each_ci_is_read_from_its_own_variables() {
        let dir = tempfile::tempdir().unwrap();
        let none = Given::default();
        let gh = detect(
            &none,
            dir.path(),
            &env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_REF", "refs/pull/7/merge"),
                ("GITHUB_SHA", "abc"),
                ("GITHUB_EVENT_NAME", "pull_request"),
                ("GITHUB_ACTOR", "octo"),
            ]),
        );
        assert_eq!(
            (
                gh.git_ref.as_str(),
                gh.commit.as_str(),
                gh.event.as_str(),
                gh.actor.as_str()
            ),
            ("refs/pull/7/merge", "abc", "pull_request", "octo")
        );
        let gl = detect(
            &none,
            dir.path(),
            &env(&[
                ("GITLAB_CI", "true"),
                ("CI_COMMIT_REF_NAME", "main"),
                ("CI_COMMIT_SHA", "def"),
                ("CI_PIPELINE_SOURCE", "schedule"),
            ]),
        );
        assert_eq!(
            (gl.git_ref.as_str(), gl.event.as_str()),
            ("refs/heads/main", "schedule")
        );
        let gl_tag = detect(
            &none,
            dir.path(),
            &env(&[
                ("GITLAB_CI", "true"),
                ("CI_COMMIT_TAG", "v1"),
                ("CI_PIPELINE_SOURCE", "merge_request_event"),
            ]),
        );
        assert_eq!(
            (gl_tag.git_ref.as_str(), gl_tag.event.as_str()),
            ("refs/tags/v1", "pull_request")
        );
        let bk = detect(
            &none,
            dir.path(),
            &env(&[
                ("BUILDKITE", "true"),
                ("BUILDKITE_BRANCH", "feature"),
                ("BUILDKITE_COMMIT", "123"),
                ("BUILDKITE_PULL_REQUEST", "false"),
                ("BUILDKITE_SOURCE", "webhook"),
            ]),
        );
        assert_eq!(
            (bk.git_ref.as_str(), bk.event.as_str()),
            ("refs/heads/feature", "push")
        );
        let jk = detect(
            &none,
            dir.path(),
            &env(&[
                ("JENKINS_URL", "http://j"),
                ("GIT_BRANCH", "origin/main"),
                ("GIT_COMMIT", "456"),
            ]),
        );
        assert_eq!(
            (jk.git_ref.as_str(), jk.commit.as_str(), jk.event.as_str()),
            ("refs/heads/main", "456", "push")
        );
    }

    #[test]
    fn flags_win_then_ci_then_git_and_dirty_trees_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "trunk"]);
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        git(dir.path(), &["add", "a.txt"]);
        git(dir.path(), &["commit", "-q", "-m", "one"]);
        let plain = detect(&Given::default(), dir.path(), &env(&[("USER", "me")]));
        assert_eq!(plain.git_ref, "refs/heads/trunk");
        assert_eq!(plain.commit.len(), 40, "{plain:?}");
        assert_eq!(
            (plain.event.as_str(), plain.actor.as_str(), plain.dirty),
            ("manual", "me", false)
        );
        std::fs::write(dir.path().join("a.txt"), "changed").unwrap();
        let dirty = detect(&Given::default(), dir.path(), &env(&[]));
        assert!(dirty.dirty);
        let ci = env(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/heads/main"),
        ]);
        let given = Given {
            git_ref: Some("refs/tags/v2".into()),
            event: Some("push".into()),
            ..Given::default()
        };
        let flagged = detect(&given, dir.path(), &ci);
        assert_eq!(
            flagged.git_ref, "refs/tags/v2",
            "a flag beats the CI's variable"
        );
        assert_eq!(flagged.commit, plain.commit, "git fills what neither gives");
        let outside = tempfile::tempdir().unwrap();
        let none = detect(&Given::default(), outside.path(), &env(&[]));
        assert_eq!((none.git_ref.as_str(), none.commit.as_str()), ("", ""));
    }
}
