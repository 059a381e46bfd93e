//! What `weir import` tells the user about the translation, each line placed at the source
//! field it is about (`FILE:LINE:COL: path: message`).

use std::fmt;

/// How much a report matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Translated, but the user should know how (a convention weir relies on, a default
    /// written out). Never an error, even with `--strict`.
    Note,
    /// A field weir cannot express: the behaviour differs from the source's. An error with
    /// `--strict`.
    Unsupported,
    /// The source itself is invalid (as its own system would also refuse it): nothing is
    /// written for it.
    Error,
}

/// One finding, at the source field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The file the field is in (`<stdin>` for standard input).
    pub file: String,
    /// The 1-based line the field starts on.
    pub line: u32,
    /// Its 1-based column.
    pub col: u32,
    /// The field's path inside its resource, e.g. `VirtualService shop/reviews: spec.http[0].rewrite`.
    pub path: String,
    /// Note, unsupported or error.
    pub severity: Severity,
    /// What happens instead, or what is wrong.
    pub message: String,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Note => "note: ",
            Severity::Unsupported => "not supported by weir: ",
            Severity::Error => "error: ",
        };
        write!(
            f,
            "{}:{}:{}: {}: {label}{}",
            self.file, self.line, self.col, self.path, self.message
        )
    }
}

/// The reports of one import, in the order they were found.
#[derive(Debug, Default)]
pub struct Reports {
    items: Vec<Report>,
}

impl Reports {
    /// Records one finding.
    pub fn push(&mut self, report: Report) {
        self.items.push(report);
    }

    /// Every finding, sorted by file and position (the order a reader goes through them).
    pub fn into_sorted(mut self) -> Vec<Report> {
        self.items.sort_by(|a, b| {
            (a.file.as_str(), a.line, a.col, a.severity).cmp(&(
                b.file.as_str(),
                b.line,
                b.col,
                b.severity,
            ))
        });
        self.items.dedup();
        self.items
    }
}
