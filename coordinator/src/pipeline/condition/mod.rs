//! `if:` conditions: a small expression language over the run context,
//! `env.NAME`, `matrix.KEY` and the status of a step's dependencies.
//!
//! It has its own lexer and parser so every mistake points at a column,
//! and names and functions are checked when the pipeline is validated —
//! a typo (`brnach == 'main'`) is an error at `file:line:column`, never a
//! condition that is quietly always false and a deploy that never happens.

mod eval;
mod grammar;
mod lex;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

pub use eval::{decide, Dep, Facts, Verdict};

/// A parsed `if:` with the text it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub text: String,
    expr: Expr,
}

/// The syntax tree; offsets are characters into the condition's text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Str(String),
    /// As written, so `3.10` and `3.1` stay apart until compared.
    Num(String),
    Bool(bool),
    Null,
    /// `branch`, `env.NAME`, `matrix.KEY`.
    Name {
        path: Vec<String>,
        at: usize,
    },
    Call {
        name: String,
        args: Vec<Expr>,
        at: usize,
    },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare {
        equal: bool,
        left: Box<Expr>,
        right: Box<Expr>,
    },
}

/// A mistake in a condition, at a character offset into its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub offset: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl ConditionError {
    fn at(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The run context's names, as a condition spells them.
pub const CONTEXT_NAMES: [&str; 6] = ["ref", "branch", "commit", "short_sha", "event", "actor"];

/// Functions and how many arguments each takes.
const FUNCTIONS: [(&str, usize); 7] = [
    ("success", 0),
    ("failure", 0),
    ("always", 0),
    ("cancelled", 0),
    ("startsWith", 2),
    ("endsWith", 2),
    ("contains", 2),
];

/// What a step's condition may name: its environment's variables and its
/// matrix's keys.
pub struct Scope<'a> {
    pub env: &'a BTreeSet<String>,
    pub matrix: &'a BTreeSet<String>,
}

impl Condition {
    /// Parses a condition; `${{ … }}` around it is allowed, as in GitHub
    /// Actions. Offsets in errors count from the start of `text`.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let (inner, skip) = unwrap_braces(text);
        let shift = |mut e: ConditionError| {
            e.offset += skip;
            e
        };
        let tokens = lex::tokens(inner).map_err(shift)?;
        let expr = grammar::parse(&tokens, inner.chars().count()).map_err(shift)?;
        Ok(Condition {
            text: text.to_owned(),
            expr,
        })
    }

    /// Every unknown name, unknown function and wrong argument count.
    pub fn check(&self, scope: &Scope) -> Vec<ConditionError> {
        let skip = unwrap_braces(&self.text).1;
        let mut errors = Vec::new();
        check(&self.expr, scope, &mut errors);
        for e in &mut errors {
            e.offset += skip;
        }
        errors
    }

    /// Calls a status function: without one, `success() && …` is implied.
    pub fn uses_status(&self) -> bool {
        calls_any(&self.expr, &["success", "failure", "always", "cancelled"])
    }

    /// May still run after its run was cancelled (cleanup steps).
    pub fn runs_when_cancelled(&self) -> bool {
        calls_any(&self.expr, &["always", "cancelled"])
    }
}

/// The expression inside `${{ … }}` and the characters before it.
fn unwrap_braces(text: &str) -> (&str, usize) {
    let trimmed = text.trim_end();
    let lead = text.len() - text.trim_start().len();
    match trimmed.trim_start().strip_prefix("${{") {
        Some(rest) if rest.ends_with("}}") => (&rest[..rest.len() - 2], lead + 3),
        _ => (text, 0),
    }
}

fn calls_any(expr: &Expr, names: &[&str]) -> bool {
    match expr {
        Expr::Call { name, args, .. } => {
            names.contains(&name.as_str()) || args.iter().any(|a| calls_any(a, names))
        }
        Expr::Not(e) => calls_any(e, names),
        Expr::And(a, b) | Expr::Or(a, b) => calls_any(a, names) || calls_any(b, names),
        Expr::Compare { left, right, .. } => calls_any(left, names) || calls_any(right, names),
        Expr::Str(_) | Expr::Num(_) | Expr::Bool(_) | Expr::Null | Expr::Name { .. } => false,
    }
}

fn check(expr: &Expr, scope: &Scope, errors: &mut Vec<ConditionError>) {
    match expr {
        Expr::Name { path, at } => {
            if let Some(e) = check_name(path, *at, scope) {
                errors.push(e);
            }
        }
        Expr::Call { name, args, at } => {
            match FUNCTIONS.iter().find(|(f, _)| f == name) {
                None => {
                    let mut e = ConditionError::at(*at, format!("unknown function `{name}()`"));
                    let names = FUNCTIONS.iter().map(|(f, _)| *f);
                    e.hint = Some(match super::suggest::closest(name, names) {
                        Some(close) => format!("did you mean `{close}()`?"),
                        None => format!(
                            "conditions know {}",
                            FUNCTIONS.map(|(f, _)| format!("`{f}()`")).join(", ")
                        ),
                    });
                    errors.push(e);
                }
                Some((_, want)) if *want != args.len() => errors.push(ConditionError::at(
                    *at,
                    format!(
                        "`{name}()` takes {want} argument{}, found {}",
                        if *want == 1 { "" } else { "s" },
                        args.len()
                    ),
                )),
                Some(_) => {}
            }
            for a in args {
                check(a, scope, errors);
            }
        }
        Expr::Not(e) => check(e, scope, errors),
        Expr::And(a, b) | Expr::Or(a, b) => {
            check(a, scope, errors);
            check(b, scope, errors);
        }
        Expr::Compare { left, right, .. } => {
            check(left, scope, errors);
            check(right, scope, errors);
        }
        Expr::Str(_) | Expr::Num(_) | Expr::Bool(_) | Expr::Null => {}
    }
}

fn check_name(path: &[String], at: usize, scope: &Scope) -> Option<ConditionError> {
    let dotted = path.join(".");
    match path {
        [one] if CONTEXT_NAMES.contains(&one.as_str()) => None,
        [head, name] if head == "env" => (!scope.env.contains(name)).then(|| {
            unknown(at, &dotted, name, scope.env.iter().map(String::as_str), "env.")
                .hint_or("a condition sees the pipeline's and the step's `env` and the BUILDFLEET_* context variables")
        }),
        [head, key] if head == "matrix" => {
            if scope.matrix.is_empty() {
                Some(
                    ConditionError::at(at, format!("unknown name `{dotted}`: the step has no `matrix`"))
                        .hint("`matrix.KEY` names a key of the step's `matrix:`"),
                )
            } else {
                (!scope.matrix.contains(key)).then(|| {
                    unknown(at, &dotted, key, scope.matrix.iter().map(String::as_str), "matrix.")
                        .hint_or("`matrix.KEY` names a key of the step's `matrix:`")
                })
            }
        }
        [one] => Some(
            unknown(at, &dotted, one, CONTEXT_NAMES, "")
                .hint_or("names are ref, branch, commit, short_sha, event, actor, env.NAME and matrix.KEY"),
        ),
        _ => Some(
            ConditionError::at(at, format!("unknown name `{dotted}`"))
                .hint("names are ref, branch, commit, short_sha, event, actor, env.NAME and matrix.KEY"),
        ),
    }
}

fn unknown<'a>(
    at: usize,
    dotted: &str,
    last: &str,
    known: impl IntoIterator<Item = &'a str>,
    prefix: &str,
) -> ConditionError {
    let mut e = ConditionError::at(at, format!("unknown name `{dotted}`"));
    if let Some(close) = super::suggest::closest(last, known) {
        e.hint = Some(format!("did you mean `{prefix}{close}`?"));
    }
    e
}

impl ConditionError {
    fn hint_or(mut self, hint: &str) -> Self {
        self.hint.get_or_insert_with(|| hint.to_owned());
        self
    }
}
