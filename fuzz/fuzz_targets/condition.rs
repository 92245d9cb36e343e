//! `if:` conditions (`coordinator/src/pipeline/condition/`): any text is
//! lexed and parsed without panicking, every error points inside the text,
//! and a condition that parses is checked and evaluated (which is total)
//! against a context, environment, matrix and dependencies taken from the
//! input's first bytes.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use buildfleet_coordinator::pipeline::condition::{decide, Condition, Dep, Facts, Scope};
use buildfleet_model::{RunContext, State};
use libfuzzer_sys::fuzz_target;

const REFS: [&str; 4] = ["refs/heads/main", "refs/tags/v1.2", "refs/pull/7/merge", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let chars = text.chars().count();
    let condition = match Condition::parse(text) {
        Ok(c) => c,
        Err(e) => {
            assert!(
                e.offset <= chars,
                "error at {} past the end ({chars}): {e:?}",
                e.offset
            );
            return;
        }
    };
    let env_names = BTreeSet::from(["DEPLOY".to_owned(), "PYTHON".to_owned()]);
    let matrix_names = BTreeSet::from(["python".to_owned(), "os".to_owned()]);
    for e in condition.check(&Scope {
        env: &env_names,
        matrix: &matrix_names,
    }) {
        assert!(
            e.offset <= chars,
            "error at {} past the end ({chars}): {e:?}",
            e.offset
        );
    }
    let context = RunContext {
        git_ref: REFS[usize::from(selector) % REFS.len()].to_owned(),
        commit: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        event: if selector & 4 == 0 {
            "push"
        } else {
            "pull_request"
        }
        .to_owned(),
        actor: "alice".to_owned(),
        dirty: selector & 8 != 0,
    };
    let env = BTreeMap::from([
        ("DEPLOY".to_owned(), "yes".to_owned()),
        ("PYTHON".to_owned(), "3.10".to_owned()),
    ]);
    let matrix = BTreeMap::from([
        ("python".to_owned(), "3.12".to_owned()),
        ("os".to_owned(), "linux".to_owned()),
    ]);
    let states = [
        State::Succeeded,
        State::failed("exit 1"),
        State::Cached,
        State::Skipped {
            reason: "condition false".to_owned(),
        },
    ];
    let dep_state = &states[usize::from(selector >> 4) % states.len()];
    let facts = Facts {
        context: &context,
        env: &env,
        matrix: &matrix,
        deps: vec![Dep {
            name: "build",
            state: dep_state,
        }],
        cancelled: selector & 64 != 0,
    };
    let verdict = decide(Some(&condition), &facts);
    assert!(
        verdict.holds || !verdict.why.is_empty(),
        "a false verdict says why"
    );
    let _ = condition.uses_status();
    let _ = condition.runs_when_cancelled();
});
