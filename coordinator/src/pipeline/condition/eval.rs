//! Evaluates a condition against what is known when a step becomes
//! decidable, and says which facts made it false — the summary shows
//! `skipped (condition false: branch is 'feature')`, not just "false".
//!
//! Evaluation is total: every value compares and converts, so no
//! condition and no context can make it panic (a property test holds it
//! to that).

use std::collections::BTreeMap;

use buildfleet_model::{RunContext, State};

use super::{Condition, Expr};

/// What a condition is evaluated against.
pub struct Facts<'a> {
    pub context: &'a RunContext,
    /// The step's environment (pipeline's, step's, context variables).
    pub env: &'a BTreeMap<String, String>,
    pub matrix: &'a BTreeMap<String, String>,
    /// The step's direct dependencies, every one terminal.
    pub deps: Vec<Dep<'a>>,
    /// The run has been cancelled.
    pub cancelled: bool,
}

/// A dependency and how it ended.
pub struct Dep<'a> {
    pub name: &'a str,
    pub state: &'a State,
}

/// A condition's outcome and, when false, the facts that made it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub holds: bool,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Str(s) => !s.is_empty(),
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Bool(b) => *b,
            Val::Null => false,
        }
    }

    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(n) => n.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Null => String::new(),
        }
    }

    /// Exact for strings (refs are case-sensitive); a number and a string
    /// compare as numbers, so `matrix.python == 3.12` means what it says.
    fn equals(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Null, Val::Null) => true,
            (Val::Str(s), Val::Num(n)) | (Val::Num(n), Val::Str(s)) => {
                s.trim().parse::<f64>().is_ok_and(|v| v == *n)
            }
            _ => false,
        }
    }
}

/// A value and the facts it was read from.
struct Seen {
    val: Val,
    facts: Vec<String>,
}

impl Seen {
    fn plain(val: Val) -> Self {
        Seen {
            val,
            facts: Vec::new(),
        }
    }
}

impl Condition {
    /// Evaluates the condition as written. With no status function in it,
    /// `success()` is implied: a condition narrows when a step runs, it
    /// does not make it run after a failure.
    pub fn evaluate(&self, facts: &Facts) -> Verdict {
        let implied = (!self.uses_status()).then(|| success(facts));
        if let Some((false, why)) = implied {
            return Verdict { holds: false, why };
        }
        let seen = eval(&self.expr, facts);
        let holds = seen.val.truthy();
        let mut why = seen.facts;
        why.dedup();
        let why = if why.is_empty() {
            format!("`{}` is false", self.text.trim())
        } else {
            why.join(", ")
        };
        Verdict { holds, why }
    }
}

/// Whether a step whose dependencies have all ended runs: its condition,
/// or `success()` when it has none.
pub fn decide(condition: Option<&Condition>, facts: &Facts) -> Verdict {
    match condition {
        Some(c) => c.evaluate(facts),
        None => {
            let (holds, why) = success(facts);
            Verdict { holds, why }
        }
    }
}

fn eval(expr: &Expr, facts: &Facts) -> Seen {
    match expr {
        Expr::Str(s) => Seen::plain(Val::Str(s.clone())),
        Expr::Num(n) => Seen::plain(Val::Num(n.parse().unwrap_or(f64::NAN))),
        Expr::Bool(b) => Seen::plain(Val::Bool(*b)),
        Expr::Null => Seen::plain(Val::Null),
        Expr::Name { path, .. } => name(path, facts),
        Expr::Not(inner) => {
            let seen = eval(inner, facts);
            Seen {
                val: Val::Bool(!seen.val.truthy()),
                facts: seen.facts,
            }
        }
        // Short-circuit, and keep only the facts that decided the outcome.
        Expr::And(a, b) => {
            let left = eval(a, facts);
            if !left.val.truthy() {
                return left;
            }
            eval(b, facts)
        }
        Expr::Or(a, b) => {
            let left = eval(a, facts);
            if left.val.truthy() {
                return left;
            }
            let mut right = eval(b, facts);
            let mut all = left.facts;
            all.append(&mut right.facts);
            Seen {
                val: right.val,
                facts: all,
            }
        }
        Expr::Compare { equal, left, right } => {
            let (l, mut r) = (eval(left, facts), eval(right, facts));
            let mut all = l.facts;
            all.append(&mut r.facts);
            Seen {
                val: Val::Bool(l.val.equals(&r.val) == *equal),
                facts: all,
            }
        }
        Expr::Call { name, args, .. } => call(name, args, facts),
    }
}

fn name(path: &[String], facts: &Facts) -> Seen {
    let c = facts.context;
    let value = match path {
        [one] => match one.as_str() {
            "ref" => Some(c.git_ref.clone()),
            "branch" => Some(c.branch().to_owned()),
            "commit" => Some(c.commit.clone()),
            "short_sha" => Some(c.short_sha().to_owned()),
            "event" => Some(c.event.clone()),
            "actor" => Some(c.actor.clone()),
            _ => None,
        },
        [head, key] if head == "env" => facts.env.get(key).cloned(),
        [head, key] if head == "matrix" => facts.matrix.get(key).cloned(),
        _ => None,
    };
    let dotted = path.join(".");
    match value {
        Some(v) => Seen {
            facts: vec![format!("{dotted} is {}", quoted(&v))],
            val: Val::Str(v),
        },
        None => Seen {
            facts: vec![format!("{dotted} is not set")],
            val: Val::Null,
        },
    }
}

fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn call(name: &str, args: &[Expr], facts: &Facts) -> Seen {
    let status = |(holds, why): (bool, String)| Seen {
        val: Val::Bool(holds),
        facts: vec![why],
    };
    match name {
        "success" => status(success(facts)),
        "failure" => status(failure(facts)),
        "cancelled" => status(if facts.cancelled {
            (true, "the run was cancelled".to_owned())
        } else {
            (false, "the run was not cancelled".to_owned())
        }),
        "always" => Seen::plain(Val::Bool(true)),
        _ => {
            // Validation rejects other names and wrong arities; anything
            // that slips through is false, never a panic.
            let seen: Vec<Seen> = args.iter().map(|a| eval(a, facts)).collect();
            let (Some(a), Some(b)) = (seen.first(), seen.get(1)) else {
                return Seen::plain(Val::Bool(false));
            };
            let (hay, needle) = (a.val.text(), b.val.text());
            let holds = match name {
                "startsWith" => hay.starts_with(&needle),
                "endsWith" => hay.ends_with(&needle),
                "contains" => hay.contains(&needle),
                _ => false,
            };
            Seen {
                val: Val::Bool(holds),
                facts: seen.into_iter().flat_map(|s| s.facts).collect(),
            }
        }
    }
}

/// Every dependency is green and the run goes on.
fn success(facts: &Facts) -> (bool, String) {
    if facts.cancelled {
        return (false, "the run was cancelled".into());
    }
    match facts.deps.iter().find(|d| !d.state.is_green()) {
        Some(d) => (
            false,
            format!("needs `{}`, which {}", d.name, ended(d.state)),
        ),
        None => (true, "every dependency succeeded".into()),
    }
}

/// A dependency failed (or was skipped because of a failure further up).
fn failure(facts: &Facts) -> (bool, String) {
    match facts.deps.iter().find(|d| is_failure(d.state)) {
        Some(d) => (true, format!("`{}` {}", d.name, ended(d.state))),
        None => (false, "no dependency failed".into()),
    }
}

/// Ended in a way that fails a run, other than being cancelled.
pub(crate) fn is_failure(state: &State) -> bool {
    state.is_terminal() && !state.passes() && !matches!(state, State::Cancelled { .. })
}

/// "which …" for a dependency's end.
pub(crate) fn ended(state: &State) -> String {
    match state {
        State::Skipped { .. } => "was skipped".into(),
        State::ConditionFalse { .. } => "was skipped (condition false)".into(),
        State::Cancelled { .. } => "was cancelled".into(),
        State::RunnerLost { .. } => "lost its runner".into(),
        State::Succeeded | State::Cached => "succeeded".into(),
        other => other.name().to_owned(),
    }
}
