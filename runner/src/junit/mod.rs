//! JUnit XML test reports, as written by pytest, cargo-nextest, jest
//! (jest-junit), go-junit-report and Maven Surefire, turned into per-test
//! outcomes. One reader for every dialect: they agree on `testsuite` /
//! `testcase` / `failure|error|skipped` and differ in nesting and in which
//! attributes they fill.

#[cfg(test)]
mod tests;

use std::time::Duration;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use thiserror::Error;

pub use buildfleet_model::TestOutcome;

#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The enclosing `testsuite`'s name (empty if none).
    pub suite: String,
    pub classname: String,
    pub name: String,
    /// The `file` attribute where the tool writes one.
    pub file: Option<String>,
    pub duration: Duration,
    pub outcome: TestOutcome,
    /// The failure/error/skip message, or the first line of its text.
    pub message: String,
}

impl TestCase {
    /// A stable identity across runs, for history and flaky detection.
    pub fn id(&self) -> String {
        if self.classname.is_empty() || self.classname.trim() == self.name.trim() {
            self.name.trim().to_owned()
        } else {
            format!("{}::{}", self.classname.trim(), self.name.trim())
        }
    }
}

#[derive(Debug, Error)]
pub enum JunitError {
    #[error("{file}: not well-formed XML at byte {position}: {message}")]
    Xml {
        file: String,
        position: u64,
        message: String,
    },
    #[error("{file}: testcase at byte {position} has no name")]
    NoName { file: String, position: u64 },
    #[error("{file}: testcase `{name}` has time {time:?}, which is not a number of seconds")]
    BadTime {
        file: String,
        name: String,
        time: String,
    },
    #[error(
        "{file}: no <testsuite>, <testsuites> or <testcase> element; is this a JUnit XML report?"
    )]
    NotJunit { file: String },
}

fn attr(e: &BytesStart<'_>, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// Seconds as the tools write them: `0.5`, `12`, and Surefire's `1,234.5`.
/// `None` for what no `Duration` holds (negative, NaN, past 2^64 seconds).
fn seconds(text: &str) -> Option<Duration> {
    let cleaned: String = text.trim().chars().filter(|c| *c != ',').collect();
    let secs: f64 = cleaned.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

/// Parses one report. `file` names it in errors.
pub fn parse(file: &str, xml: &str) -> Result<Vec<TestCase>, JunitError> {
    let mut reader = Reader::from_str(xml);
    let mut suites: Vec<String> = Vec::new();
    let mut current: Option<TestCase> = None;
    // Text inside a failure/error/skipped element, for a message fallback.
    let mut in_result: Option<TestOutcome> = None;
    let mut cases = Vec::new();
    let mut saw_junit = false;
    loop {
        let position = reader.buffer_position();
        let event = reader.read_event().map_err(|e| JunitError::Xml {
            file: file.to_owned(),
            position,
            message: e.to_string(),
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testsuites" => {
                saw_junit = true;
            }
            Event::Start(e) if e.name().as_ref() == b"testsuite" => {
                saw_junit = true;
                suites.push(attr(&e, b"name").unwrap_or_default());
            }
            Event::End(e) if e.name().as_ref() == b"testsuite" => {
                suites.pop();
            }
            ref ev @ (Event::Start(ref e) | Event::Empty(ref e))
                if e.name().as_ref() == b"testcase" =>
            {
                saw_junit = true;
                let name = attr(e, b"name").ok_or(JunitError::NoName {
                    file: file.to_owned(),
                    position,
                })?;
                let duration = match attr(e, b"time") {
                    None => Duration::ZERO,
                    Some(t) => seconds(&t).ok_or_else(|| JunitError::BadTime {
                        file: file.to_owned(),
                        name: name.clone(),
                        time: t.clone(),
                    })?,
                };
                let case = TestCase {
                    suite: suites.last().cloned().unwrap_or_default(),
                    classname: attr(e, b"classname").unwrap_or_default(),
                    name,
                    file: attr(e, b"file"),
                    duration,
                    outcome: TestOutcome::Passed,
                    message: String::new(),
                };
                if matches!(ev, Event::Empty(_)) {
                    cases.push(case);
                } else {
                    current = Some(case);
                }
            }
            Event::End(e) if e.name().as_ref() == b"testcase" => {
                if let Some(case) = current.take() {
                    cases.push(case);
                }
            }
            ref ev @ (Event::Start(ref e) | Event::Empty(ref e)) => {
                let outcome = match e.name().as_ref() {
                    b"failure" => Some(TestOutcome::Failed),
                    b"error" => Some(TestOutcome::Error),
                    b"skipped" => Some(TestOutcome::Skipped),
                    // Surefire/nextest reruns: the final outcome is the
                    // testcase's own; these only record earlier attempts.
                    _ => None,
                };
                if let (Some(outcome), Some(case)) = (outcome, current.as_mut()) {
                    // The worst result wins if a tool writes several.
                    if rank(outcome) > rank(case.outcome) {
                        case.outcome = outcome;
                        case.message = attr(e, b"message").unwrap_or_default();
                    }
                    if matches!(ev, Event::Start(_)) {
                        in_result = Some(outcome);
                    }
                }
            }
            Event::Text(t) => {
                if let (Some(outcome), Some(case)) = (in_result, current.as_mut()) {
                    if case.outcome == outcome && case.message.is_empty() {
                        // Entities arrive as separate events; the first
                        // line before one is enough for a summary.
                        let text = t.decode().map(|c| c.into_owned()).unwrap_or_default();
                        case.message = text
                            .lines()
                            .map(str::trim)
                            .find(|l| !l.is_empty())
                            .unwrap_or_default()
                            .to_owned();
                    }
                }
            }
            Event::End(e) if matches!(e.name().as_ref(), b"failure" | b"error" | b"skipped") => {
                in_result = None;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_junit {
        return Err(JunitError::NotJunit {
            file: file.to_owned(),
        });
    }
    Ok(cases)
}

fn rank(o: TestOutcome) -> u8 {
    match o {
        TestOutcome::Passed => 0,
        TestOutcome::Skipped => 1,
        TestOutcome::Failed => 2,
        TestOutcome::Error => 3,
    }
}
