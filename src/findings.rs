//! What herald tells the user about a post: each stage adds its findings,
//! `check` lists them. A leaf module, so that every stage can report without
//! depending on the stage that reports them all.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Notice,
    Warning,
    Error,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub code: &'static str,
    /// The line of the post file, when the finding is about one place.
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}
