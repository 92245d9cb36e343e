//! What a shard's end means once its tests are looked at: flaky re-runs,
//! quarantined failures, and exit statuses the reports contradict.
//!
//! The rules never turn a failure green on less evidence than the reports
//! give: a failed exit is accepted only when the reports name failed tests
//! and every one of them is quarantined; a re-run happens only for failures
//! the reports name; a test missing from a re-run stays failed.

use buildfleet_model::MutedCheck;
use std::collections::BTreeSet;

use crate::split::attribute::Attribution;
use buildfleet_model::state::{Failure, State};
use buildfleet_model::test_result::TestResult;

/// How to treat one ended attempt.
pub struct Inputs<'a> {
    pub state: State,
    /// This attempt's tests (already tagged with the attempt number).
    pub tests: Vec<TestResult>,
    /// The merged outcomes of the earlier attempts.
    pub earlier: &'a [TestResult],
    /// The shard's items (all of them, not only this attempt's).
    pub items: &'a [String],
    pub quarantine: &'a BTreeSet<String>,
    pub retries_left: u32,
    pub fail_on_flaky: bool,
    /// The runner's check of the rest of the contract (outputs, verify)
    /// for a non-zero exit whose failed tests are all quarantined.
    pub muted: Option<MutedCheck>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The shard ends in this state.
    Final {
        state: State,
        tests: Vec<TestResult>,
        notes: Vec<String>,
        /// The exit code the quarantine muted, when that made it green.
        muted_exit: Option<i32>,
    },
    /// Run again with these items (empty: the whole shard, unsplit).
    Retry {
        items: Vec<String>,
        tests: Vec<TestResult>,
        notes: Vec<String>,
    },
}

/// Later outcomes replace earlier ones of the same test; a failure followed
/// by a pass is flaky.
fn merge(earlier: &[TestResult], latest: Vec<TestResult>) -> Vec<TestResult> {
    let mut merged = earlier.to_vec();
    for mut t in latest {
        match merged.iter_mut().find(|e| e.id == t.id) {
            Some(e) => {
                t.flaky = (e.outcome.is_failure() || e.flaky) && !t.outcome.is_failure();
                *e = t;
            }
            None => merged.push(t),
        }
    }
    merged
}

fn list(ids: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut s = ids
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > SHOWN {
        s.push_str(&format!(" and {} more", ids.len() - SHOWN));
    }
    s
}

pub fn judge(input: Inputs<'_>) -> Verdict {
    let mut tests = merge(input.earlier, input.tests);
    for t in &mut tests {
        t.quarantined = input.quarantine.contains(&t.id);
    }
    let mut notes = Vec::new();
    let mut muted_exit = None;
    let failing: Vec<&TestResult> = tests.iter().filter(|t| t.outcome.is_failure()).collect();
    let unmuted: Vec<&str> = failing
        .iter()
        .filter(|t| !t.quarantined)
        .map(|t| t.id.as_str())
        .collect();
    let muted: Vec<&str> = failing
        .iter()
        .filter(|t| t.quarantined)
        .map(|t| t.id.as_str())
        .collect();
    if !muted.is_empty() {
        notes.push(format!(
            "quarantined: {} failed test(s) muted: {}",
            muted.len(),
            list(&muted)
        ));
    }
    let state = match input.state {
        State::Failed(Failure {
            exit_code: Some(code),
            signal: None,
            reason,
        }) if code != 0 => {
            if failing.is_empty() {
                if input.retries_left > 0 {
                    notes.push(format!(
                        "not re-run: exit code {code} but the reports name no failed test, so this is not a flaky test"
                    ));
                }
                State::Failed(Failure {
                    exit_code: Some(code),
                    signal: None,
                    reason,
                })
            } else if unmuted.is_empty() {
                // Muting a test failure does not excuse the step's other
                // promises: its outputs and checks must hold as for exit 0.
                match &input.muted {
                    Some(MutedCheck::Met) => {
                        notes.push(format!(
                            "exit code {code} muted: every failed test is quarantined, and the step's outputs and verify passed"
                        ));
                        muted_exit = Some(code);
                        State::Succeeded
                    }
                    Some(MutedCheck::Unmet(why)) => State::Failed(Failure {
                        exit_code: Some(code),
                        signal: None,
                        reason: format!(
                            "exit code {code} is not muted although every failed test is quarantined: {why}"
                        ),
                    }),
                    // The runner did not treat this exit as mutable: it
                    // explained it otherwise (an OOM kill), or this
                    // attempt's own reports name no quarantined failure.
                    None => State::Failed(Failure {
                        exit_code: Some(code),
                        signal: None,
                        reason: if reason.is_empty() {
                            format!(
                                "exit code {code} is not muted: this attempt's reports name no failed test the quarantine excuses, so its outputs and verify were not checked"
                            )
                        } else {
                            format!("{reason} (not muted by the quarantine)")
                        },
                    }),
                }
            } else if input.retries_left > 0 {
                let items = rerun_items(input.items, &unmuted);
                notes.push(match items.is_empty() {
                    true => format!(
                        "{} failed test(s) ({}); re-running the shard",
                        unmuted.len(),
                        list(&unmuted)
                    ),
                    false => format!(
                        "{} failed test(s) ({}); re-running {} of {} item(s)",
                        unmuted.len(),
                        list(&unmuted),
                        items.len(),
                        input.items.len()
                    ),
                });
                let tests = tests.clone();
                return Verdict::Retry {
                    items,
                    tests,
                    notes,
                };
            } else {
                State::Failed(Failure {
                    exit_code: Some(code),
                    signal: None,
                    reason,
                })
            }
        }
        State::Succeeded if !unmuted.is_empty() => State::failed(format!(
            "exit code 0, but the reports show {} failed test(s): {}",
            unmuted.len(),
            list(&unmuted)
        )),
        other => other,
    };
    let flaky: Vec<&str> = tests
        .iter()
        .filter(|t| t.flaky)
        .map(|t| t.id.as_str())
        .collect();
    let state = if state == State::Succeeded && !flaky.is_empty() {
        notes.push(format!(
            "flaky: {} test(s) failed, then passed when re-run: {}",
            flaky.len(),
            list(&flaky)
        ));
        if input.fail_on_flaky {
            State::failed(format!("--fail-on-flaky: flaky test(s) {}", list(&flaky)))
        } else {
            state
        }
    } else {
        state
    };
    Verdict::Final {
        state,
        tests,
        notes,
        muted_exit,
    }
}

/// The items holding the failed tests, or none (meaning the whole shard)
/// when the shard is unsplit or some failure belongs to no item: a re-run
/// that could miss a failed test would be a false green.
fn rerun_items(items: &[String], failing: &[&str]) -> Vec<String> {
    if items.is_empty() {
        return Vec::new();
    }
    let attribution = Attribution::new(items);
    let mut chosen = BTreeSet::new();
    for id in failing {
        match attribution.item_of(id) {
            Some(item) => chosen.insert(item.to_owned()),
            None => return items.to_vec(),
        };
    }
    chosen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildfleet_model::test_result::TestOutcome;

    fn t(id: &str, outcome: TestOutcome, attempt: u32) -> TestResult {
        TestResult {
            id: id.into(),
            outcome,
            duration_ms: 1,
            message: String::new(),
            report: "r.xml".into(),
            flaky: false,
            quarantined: false,
            attempt,
        }
    }

    fn exit(code: i32) -> State {
        State::Failed(Failure {
            exit_code: Some(code),
            signal: None,
            reason: String::new(),
        })
    }

    fn items() -> Vec<String> {
        vec!["t/a.py".into(), "t/b.py".into(), "t/c.py".into()]
    }

    fn inputs<'a>(
        state: State,
        tests: Vec<TestResult>,
        earlier: &'a [TestResult],
        items: &'a [String],
        quarantine: &'a BTreeSet<String>,
        retries_left: u32,
    ) -> Inputs<'a> {
        Inputs {
            state,
            tests,
            earlier,
            items,
            quarantine,
            retries_left,
            fail_on_flaky: false,
            muted: Some(MutedCheck::Met),
        }
    }

    use TestOutcome::*;

    #[test]
    fn a_failed_test_reruns_only_its_item_then_passes_as_flaky() {
        let (items, q) = (items(), BTreeSet::new());
        let first = vec![t("t.a::x", Passed, 1), t("t.b::y", Failed, 1)];
        let Verdict::Retry {
            items: again,
            tests,
            ..
        } = judge(inputs(exit(1), first, &[], &items, &q, 1))
        else {
            panic!("expected a re-run")
        };
        assert_eq!(again, vec!["t/b.py".to_string()]);
        let Verdict::Final {
            state,
            tests,
            notes,
            ..
        } = judge(inputs(
            State::Succeeded,
            vec![t("t.b::y", Passed, 2)],
            &tests,
            &items,
            &q,
            0,
        ))
        else {
            panic!("expected an end")
        };
        assert_eq!(state, State::Succeeded);
        let y = tests.iter().find(|t| t.id == "t.b::y").unwrap();
        assert!(y.flaky && y.attempt == 2);
        assert!(!tests.iter().find(|t| t.id == "t.a::x").unwrap().flaky);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("flaky") && n.contains("t.b::y")),
            "{notes:?}"
        );
    }

    #[test]
    fn fail_on_flaky_turns_a_flaky_pass_into_a_failure() {
        let (items, q) = (items(), BTreeSet::new());
        let earlier = vec![t("t.b::y", Failed, 1)];
        let mut i = inputs(
            State::Succeeded,
            vec![t("t.b::y", Passed, 2)],
            &earlier,
            &items,
            &q,
            0,
        );
        i.fail_on_flaky = true;
        let Verdict::Final { state, .. } = judge(i) else {
            panic!()
        };
        assert!(
            matches!(&state, State::Failed(f) if f.reason.contains("t.b::y")),
            "{state}"
        );
    }

    #[test]
    fn failing_again_uses_the_budget_then_fails() {
        let (items, q) = (items(), BTreeSet::new());
        let earlier = vec![t("t.b::y", Failed, 1)];
        let v = judge(inputs(
            exit(1),
            vec![t("t.b::y", Failed, 2)],
            &earlier,
            &items,
            &q,
            0,
        ));
        assert!(matches!(v, Verdict::Final { state, .. } if state == exit(1)));
    }

    #[test]
    fn a_test_missing_from_the_rerun_stays_failed() {
        let (items, q) = (items(), BTreeSet::new());
        let earlier = vec![t("t.b::y", Failed, 1), t("t.b::z", Failed, 1)];
        let v = judge(inputs(
            State::Succeeded,
            vec![t("t.b::y", Passed, 2)],
            &earlier,
            &items,
            &q,
            0,
        ));
        let Verdict::Final { state, .. } = v else {
            panic!()
        };
        assert!(
            matches!(&state, State::Failed(f) if f.reason.contains("t.b::z")),
            "{state}"
        );
    }

    #[test]
    fn no_named_failure_means_no_rerun_and_no_green() {
        let (items, q) = (items(), BTreeSet::new());
        let v = judge(inputs(
            exit(2),
            vec![t("t.a::x", Passed, 1)],
            &[],
            &items,
            &q,
            2,
        ));
        let Verdict::Final { state, notes, .. } = v else {
            panic!("must not re-run")
        };
        assert_eq!(state, exit(2));
        assert!(notes[0].contains("not re-run"));
        let signalled = State::Failed(Failure {
            exit_code: None,
            signal: Some(9),
            reason: String::new(),
        });
        let v = judge(inputs(
            signalled.clone(),
            vec![t("t.a::x", Failed, 1)],
            &[],
            &items,
            &q,
            2,
        ));
        assert!(matches!(v, Verdict::Final { state, .. } if state == signalled));
    }

    #[test]
    fn quarantine_mutes_only_when_every_failure_is_listed() {
        let items = items();
        let q: BTreeSet<String> = ["t.a::x".to_string()].into();
        let v = judge(inputs(
            exit(1),
            vec![t("t.a::x", Failed, 1), t("t.b::y", Passed, 1)],
            &[],
            &items,
            &q,
            0,
        ));
        let Verdict::Final {
            state,
            tests,
            notes,
            muted_exit,
        } = v
        else {
            panic!()
        };
        assert_eq!(state, State::Succeeded);
        assert_eq!(muted_exit, Some(1));
        assert!(tests[0].quarantined);
        assert!(notes.iter().any(|n| n.contains("muted")));

        let v = judge(inputs(
            exit(1),
            vec![t("t.a::x", Failed, 1), t("t.b::y", Failed, 1)],
            &[],
            &items,
            &q,
            0,
        ));
        assert!(matches!(v, Verdict::Final { state, .. } if state == exit(1)));
    }

    #[test]
    fn a_muted_exit_still_owes_its_outputs_and_verify() {
        let items = items();
        let q: BTreeSet<String> = ["t.a::x".to_string()].into();
        let failed = || vec![t("t.a::x", Failed, 1)];
        let mut missing = inputs(exit(1), failed(), &[], &items, &q, 0);
        missing.muted = Some(MutedCheck::Unmet(
            "missing-output: declared output `dist/app` does not exist".into(),
        ));
        let Verdict::Final {
            state, muted_exit, ..
        } = judge(missing)
        else {
            panic!()
        };
        assert_eq!(muted_exit, None);
        assert!(
            matches!(&state, State::Failed(f) if f.exit_code == Some(1) && f.reason.contains("missing-output") && f.reason.contains("dist/app")),
            "{state}"
        );
        let mut unchecked = inputs(exit(1), failed(), &[], &items, &q, 0);
        unchecked.muted = None;
        let Verdict::Final { state, .. } = judge(unchecked) else {
            panic!()
        };
        assert!(
            matches!(&state, State::Failed(f) if f.reason.contains("were not checked")),
            "an unchecked contract is not met: {state}"
        );
    }

    #[test]
    fn exit_zero_with_failed_tests_in_the_reports_is_not_green() {
        let (items, q) = (items(), BTreeSet::new());
        let v = judge(inputs(
            State::Succeeded,
            vec![t("t.a::x", Failed, 1)],
            &[],
            &items,
            &q,
            0,
        ));
        let Verdict::Final { state, .. } = v else {
            panic!()
        };
        assert!(
            matches!(&state, State::Failed(f) if f.reason.contains("exit code 0")),
            "{state}"
        );
    }

    #[test]
    fn an_unattributable_failure_reruns_every_item() {
        let (items, q) = (items(), BTreeSet::new());
        let v = judge(inputs(
            exit(1),
            vec![t("elsewhere::x", Failed, 1)],
            &[],
            &items,
            &q,
            1,
        ));
        let Verdict::Retry { items: again, .. } = v else {
            panic!()
        };
        assert_eq!(again, items);
    }
}
