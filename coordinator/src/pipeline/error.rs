//! Diagnostics for pipeline files.
//!
//! Errors carry a file position so editors and CI logs can jump straight to
//! the offending node, and a separate hint so tooling can show "what would
//! be right" apart from "what is wrong".

use std::fmt;

use super::yaml::Pos;

/// One problem found in a pipeline file.
///
/// `line` and `column` are 1-based. They are both 0 only when the problem
/// concerns the file as a whole (it could not be read), in which case the
/// position is left out of the rendered message rather than invented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PipelineError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one pipeline file, in position order.
///
/// Reporting all of them at once saves the edit-run-edit loop that a
/// first-error-only parser forces on people writing a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineErrors(pub Vec<PipelineError>);

impl PipelineErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, PipelineError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PipelineErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PipelineErrors {}

impl<'a> IntoIterator for &'a PipelineErrors {
    type Item = &'a PipelineError;
    type IntoIter = std::slice::Iter<'a, PipelineError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Accumulates errors while the parser keeps going, so one pass can report
/// everything instead of stopping at the first problem.
pub(super) struct Collector {
    file: String,
    errors: Vec<PipelineError>,
}

impl Collector {
    pub(super) fn new(file: &str) -> Self {
        Self {
            file: file.to_owned(),
            errors: Vec::new(),
        }
    }

    /// A collector whose errors go nowhere: for checks whose findings
    /// another pass already reports (the same template in every matrix
    /// combination).
    pub(super) fn discard() -> Self {
        Self::new("")
    }

    pub(super) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.push(pos, message.into(), None);
    }

    pub(super) fn error_with_hint(
        &mut self,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(pos, message.into(), Some(hint.into()));
    }

    fn push(&mut self, pos: Pos, message: String, hint: Option<String>) {
        self.errors.push(PipelineError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message,
            hint,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Sorted by position; the sort is stable so errors at the same node keep
    /// the order in which the checks found them.
    /// Identical errors (one `if:` checked once per matrix combination)
    /// are reported once.
    pub(super) fn finish(mut self) -> PipelineErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        let mut seen = Vec::new();
        self.errors.retain(|e| {
            let key = (e.line, e.column, e.message.clone());
            let new = !seen.contains(&key);
            seen.push(key);
            new
        });
        PipelineErrors(self.errors)
    }
}
