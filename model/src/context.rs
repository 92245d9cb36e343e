//! Which commit, branch and event a run is for, and who asked: the run
//! context. It is on the run (Get, Watch, the summary, webhooks) and in
//! every step's environment.

/// What a run is for.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RunContext {
    /// The full ref (`refs/heads/main`, `refs/tags/v1.2`, `refs/pull/7/merge`);
    /// empty when unknown (not a git checkout, a detached HEAD).
    pub git_ref: String,
    /// The commit's full hash; empty when unknown.
    pub commit: String,
    /// What started the run: `push`, `pull_request`, `schedule`, `manual`, …
    pub event: String,
    /// Who started it.
    pub actor: String,
    /// The submitted tree differs from `commit` (uncommitted changes).
    pub dirty: bool,
}

/// The variables every step sees, and what they hold.
pub const CONTEXT_VARS: [&str; 5] = [
    "BUILDFLEET_REF",
    "BUILDFLEET_BRANCH",
    "BUILDFLEET_COMMIT",
    "BUILDFLEET_SHORT_SHA",
    "BUILDFLEET_EVENT",
];

impl RunContext {
    /// The branch name of a `refs/heads/…` ref; empty for tags and others.
    pub fn branch(&self) -> &str {
        self.git_ref.strip_prefix("refs/heads/").unwrap_or_default()
    }

    /// The first 12 characters of the commit (all of it when shorter). A
    /// commit given by hand may be anything, so this counts characters.
    pub fn short_sha(&self) -> &str {
        let end = self
            .commit
            .char_indices()
            .nth(12)
            .map_or(self.commit.len(), |(i, _)| i);
        &self.commit[..end]
    }

    /// The step environment's context variables, in [`CONTEXT_VARS`] order.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            (CONTEXT_VARS[0], self.git_ref.clone()),
            (CONTEXT_VARS[1], self.branch().to_owned()),
            (CONTEXT_VARS[2], self.commit.clone()),
            (CONTEXT_VARS[3], self.short_sha().to_owned()),
            (CONTEXT_VARS[4], self.event.clone()),
        ]
    }

    /// One line for a summary header or a notification: `refs/heads/main
    /// @ 0123456789ab (push by alice, uncommitted changes)`.
    pub fn describe(&self) -> String {
        let mut line = match (self.git_ref.as_str(), self.short_sha()) {
            ("", "") => "no git context".to_owned(),
            ("", sha) => format!("@ {sha}"),
            (r, "") => r.to_owned(),
            (r, sha) => format!("{r} @ {sha}"),
        };
        let mut notes = Vec::new();
        match (self.event.as_str(), self.actor.as_str()) {
            ("", "") => {}
            (e, "") => notes.push(e.to_owned()),
            ("", a) => notes.push(format!("by {a}")),
            (e, a) => notes.push(format!("{e} by {a}")),
        }
        if self.dirty {
            notes.push("uncommitted changes".to_owned());
        }
        if !notes.is_empty() {
            line.push_str(&format!(" ({})", notes.join(", ")));
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_short_sha_and_env_follow_the_ref_and_commit() {
        let c = RunContext {
            git_ref: "refs/heads/main".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            event: "push".into(),
            actor: "alice".into(),
            dirty: true,
        };
        assert_eq!(c.branch(), "main");
        assert_eq!(c.short_sha(), "0123456789ab");
        let env = c.env();
        assert_eq!(env[1], ("BUILDFLEET_BRANCH", "main".to_owned()));
        assert_eq!(env[3], ("BUILDFLEET_SHORT_SHA", "0123456789ab".to_owned()));
        assert_eq!(
            c.describe(),
            "refs/heads/main @ 0123456789ab (push by alice, uncommitted changes)"
        );
        let tag = RunContext {
            git_ref: "refs/tags/v1".into(),
            ..RunContext::default()
        };
        assert_eq!(tag.branch(), "");
        assert_eq!(RunContext::default().describe(), "no git context");
        let odd = RunContext {
            commit: "ééééééééééééé".into(),
            ..RunContext::default()
        };
        assert_eq!(odd.short_sha(), "éééééééééééé");
    }
}
