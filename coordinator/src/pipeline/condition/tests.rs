use std::collections::{BTreeMap, BTreeSet};

use buildfleet_model::{RunContext, State};
use proptest::prelude::*;

use super::*;

fn context(git_ref: &str) -> RunContext {
    RunContext {
        git_ref: git_ref.into(),
        commit: "0123456789abcdef".into(),
        event: "push".into(),
        actor: "alice".into(),
        dirty: false,
    }
}

fn verdict(text: &str, git_ref: &str, deps: &[(&str, State)], cancelled: bool) -> Verdict {
    let context = context(git_ref);
    let env = BTreeMap::from([("DEPLOY".to_owned(), "yes".to_owned())]);
    let matrix = BTreeMap::from([("python".to_owned(), "3.12".to_owned())]);
    let facts = Facts {
        context: &context,
        env: &env,
        matrix: &matrix,
        deps: deps
            .iter()
            .map(|(name, state)| Dep { name, state })
            .collect(),
        cancelled,
    };
    decide(Some(&Condition::parse(text).unwrap()), &facts)
}

fn holds(text: &str, git_ref: &str) -> bool {
    verdict(text, git_ref, &[("build", State::Succeeded)], false).holds
}

fn error(text: &str) -> ConditionError {
    Condition::parse(text).unwrap_err()
}

fn check_errors(text: &str) -> Vec<ConditionError> {
    let env = BTreeSet::from(["DEPLOY".to_owned()]);
    let matrix = BTreeSet::from(["python".to_owned()]);
    Condition::parse(text).unwrap().check(&Scope {
        env: &env,
        matrix: &matrix,
    })
}

#[test]
fn context_comparisons_and_functions_read_the_run_context() {
    assert!(holds("branch == 'main'", "refs/heads/main"));
    assert!(!holds("branch == 'main'", "refs/heads/feature"));
    assert!(holds("event != 'pull_request'", "refs/heads/x"));
    assert!(holds("startsWith(ref, 'refs/tags/')", "refs/tags/v1"));
    assert!(!holds("startsWith(ref, 'refs/tags/')", "refs/heads/main"));
    assert!(holds(
        "endsWith(ref, '/v1') && contains(ref, 'tags')",
        "refs/tags/v1"
    ));
    assert!(holds("env.DEPLOY == 'yes' && matrix.python == 3.12", "r"));
    assert!(holds("!(branch == 'x') || false", "refs/heads/main"));
    assert!(holds("${{ branch == 'main' }}", "refs/heads/main"));
    assert!(holds(
        "actor == 'alice' && short_sha == '0123456789ab'",
        "r"
    ));
    assert!(holds("'it''s' == 'it''s'", "r"));
}

#[test]
fn a_false_condition_says_which_facts_made_it_false() {
    let v = verdict("branch == 'main'", "refs/heads/feature", &[], false);
    assert_eq!(
        v,
        Verdict {
            holds: false,
            why: "branch is 'feature'".into()
        }
    );
    // `&&` keeps only the operand that decided it.
    let v = verdict(
        "event == 'push' && branch == 'main'",
        "refs/heads/feature",
        &[],
        false,
    );
    assert_eq!(v.why, "branch is 'feature'");
    let v = verdict("false", "r", &[], false);
    assert_eq!(v.why, "`false` is false");
}

#[test]
fn success_is_implied_and_status_functions_see_how_dependencies_ended() {
    let failed = [("build", State::failed("boom"))];
    let skipped = [(
        "deploy",
        State::ConditionFalse {
            why: "branch is 'x'".into(),
        },
    )];
    let fine = [("build", State::Succeeded)];
    // Implied success(): a condition narrows, it never runs after a failure.
    let v = verdict("branch == 'main'", "refs/heads/main", &failed, false);
    assert!(!v.holds);
    assert_eq!(v.why, "needs `build`, which failed");
    let v = verdict("branch == 'main'", "refs/heads/main", &skipped, false);
    assert_eq!(v.why, "needs `deploy`, which was skipped (condition false)");
    assert!(verdict("failure()", "r", &failed, false).holds);
    let v = verdict("failure()", "r", &fine, false);
    assert_eq!((v.holds, v.why.as_str()), (false, "no dependency failed"));
    assert!(!verdict("failure()", "r", &skipped, false).holds);
    assert!(verdict("always()", "r", &failed, true).holds);
    assert!(verdict("cancelled()", "r", &fine, true).holds);
    assert!(!verdict("cancelled()", "r", &fine, false).holds);
    assert!(!verdict("success()", "r", &fine, true).holds);
    assert!(verdict("success() || failure()", "r", &failed, false).holds);
    let c = Condition::parse("failure() && branch == 'main'").unwrap();
    assert!(c.uses_status() && !c.runs_when_cancelled());
    assert!(Condition::parse("always()").unwrap().runs_when_cancelled());
    assert!(!Condition::parse("branch == 'x'").unwrap().uses_status());
}

#[test]
fn syntax_errors_point_at_the_character() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "branch = 'main'",
            7,
            "`=` is not an operator here; did you mean `==`?",
        ),
        (
            "branch == \"main\"",
            10,
            "strings are written in single quotes",
        ),
        ("branch == 'main", 10, "this string is never closed"),
        ("branch ==", 9, "the condition ends too soon"),
        (
            "(branch == 'x'",
            14,
            "expected `)` to close the `(`, found the end of the condition",
        ),
        (
            "branch == 'x' 'y'",
            14,
            "expected `&&`, `||` or the end of the condition, found the string 'y'",
        ),
        ("a == b == c", 7, "comparisons cannot be chained"),
        (
            "startsWith(ref 'x')",
            15,
            "expected `,` or `)` in the call, found the string 'x'",
        ),
        (
            "env.",
            4,
            "expected a name after `.`, found the end of the condition",
        ),
        ("", 0, "the condition is empty"),
        (
            "branch & x",
            7,
            "`&` is not an operator here; did you mean `&&`?",
        ),
        ("branch == #", 10, "unexpected character `#`"),
        (
            "${{ branch = 'x' }}",
            11,
            "`=` is not an operator here; did you mean `==`?",
        ),
    ];
    for (text, offset, message) in cases {
        let e = error(text);
        assert_eq!(
            (e.offset, e.message.as_str()),
            (*offset, *message),
            "{text}"
        );
    }
    let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    assert!(error(&deep).message.contains("nests deeper than 64"));
}

#[test]
fn unknown_names_and_functions_are_errors_with_suggestions() {
    let e = check_errors("brnach == 'main'");
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].offset, e[0].message.as_str()),
        (0, "unknown name `brnach`")
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `branch`?"));
    let e = check_errors("startswith(ref, 'x') && succes()");
    assert_eq!(e[0].message, "unknown function `startswith()`");
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `startsWith()`?"));
    assert_eq!(
        (e[1].offset, e[1].hint.as_deref()),
        (24, Some("did you mean `success()`?"))
    );
    let e = check_errors("env.DEPLOI == 'x' || matrix.pyton == '3' || github.ref == 'x'");
    let got: Vec<_> = e.iter().map(|e| (e.offset, e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (0, "unknown name `env.DEPLOI`"),
            (21, "unknown name `matrix.pyton`"),
            (44, "unknown name `github.ref`"),
        ]
    );
    assert_eq!(e[0].hint.as_deref(), Some("did you mean `env.DEPLOY`?"));
    let e = check_errors("startsWith(ref) && success(1)");
    assert_eq!(e[0].message, "`startsWith()` takes 2 arguments, found 1");
    assert_eq!(e[1].message, "`success()` takes 0 arguments, found 1");
    assert!(check_errors("env.DEPLOY == 'x' && matrix.python == '3' && ref != ''").is_empty());
}

proptest! {
    #[test]
    fn evaluation_never_panics_on_any_context_or_text(
        text in "[a-zA-Z_().,'=!&| 0-9-]{0,60}",
        git_ref in ".{0,30}",
        commit in ".{0,50}",
        event in ".{0,10}",
        env_value in ".{0,10}",
        cancelled in any::<bool>(),
    ) {
        let context = RunContext { git_ref, commit, event, actor: String::new(), dirty: false };
        let env = BTreeMap::from([("DEPLOY".to_owned(), env_value)]);
        let matrix = BTreeMap::new();
        let state = State::failed("x");
        let facts = Facts {
            context: &context,
            env: &env,
            matrix: &matrix,
            deps: vec![Dep { name: "a", state: &state }],
            cancelled,
        };
        if let Ok(c) = Condition::parse(&text) {
            let _ = c.check(&Scope { env: &BTreeSet::new(), matrix: &BTreeSet::new() });
            let v = c.evaluate(&facts);
            prop_assert!(v.holds || !v.why.is_empty());
        }
    }
}
