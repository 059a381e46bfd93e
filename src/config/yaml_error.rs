//! The YAML parser's errors, told in the user's terms.
//!
//! serde-saphyr's messages are written for the programmer calling it (`use from_str_multiple`,
//! `budget breached: Depth { depth: 65 }`). The errors a configuration file can provoke are
//! mapped here to what is wrong with the file and how to fix it; the rest are the parser's
//! description of a syntax error, followed by where to look.

use serde_saphyr::{budget::BudgetBreach, Error, Location, MessageFormatter};

/// Where the parser stopped (when it says) and what to tell the user, on one line.
pub(crate) fn describe(err: &Error) -> (Option<Location>, String) {
    // The outer error's location is where the file used the alias (when one is involved).
    let outer = err.without_snippet();
    (outer.location(), message(innermost(outer)))
}

/// The error an alias error wraps (the one that says what went wrong).
fn innermost(err: &Error) -> &Error {
    match err {
        Error::AliasError { error, .. } => innermost(error.without_snippet()),
        other => other,
    }
}

const ALIAS_HINT: &str =
    "a weir configuration needs no anchor (`&name`) repeated this often; write the values out";

fn message(err: &Error) -> String {
    match err {
        Error::MultipleDocuments { .. } => "a second YAML document starts here (after a `---` line); a weir configuration is one document: remove the `---` line and keep one configuration per file".to_string(),
        Error::Budget { breach, .. } => budget_message(breach),
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => {
            format!("aliases (`*name`) expand to too much YAML; {ALIAS_HINT}")
        }
        Error::UnknownAnchor { .. } => "this alias (`*name`) refers to no anchor (`&name`) defined before it; define the anchor first or write the value out".to_string(),
        Error::Unexpected { expected: "string scalar", .. } => "a mapping key must be plain text, not a list or a mapping; write the key as text such as `name:`".to_string(),
        Error::NonFiniteFloat { value, .. } => format!(
            "{value:?} is not a finite number (too large, infinite or not a number); write a number in the range this field accepts"
        ),
        Error::InvalidUtf8Input => "the file is not valid UTF-8; save it as UTF-8".to_string(),
        other => format!(
            "invalid YAML: {}; check the indentation, quotes and brackets here and on the line before",
            one_line(&serde_saphyr::DefaultMessageFormatter.format_message(other))
        ),
    }
}

fn budget_message(breach: &BudgetBreach) -> String {
    match breach {
        BudgetBreach::Depth { .. } => "the YAML is nested more than 64 levels deep here; a weir configuration needs fewer than 10, so look for unclosed `[` or `{` or runaway indentation".to_string(),
        BudgetBreach::Aliases { .. } | BudgetBreach::Nodes { .. } => format!(
            "the YAML expands to more than 250000 values here (aliases `*name` repeating anchors); {ALIAS_HINT}"
        ),
        BudgetBreach::Anchors { .. } => format!("the file defines more than 50000 anchors (`&name`); {ALIAS_HINT}"),
        BudgetBreach::Documents { .. } => "the file holds too many YAML documents; a weir configuration is one document".to_string(),
        _ => "the YAML is too large to be a configuration (more events, scalar text or nesting than weir accepts); check that this is the right file".to_string(),
    }
}

/// The text with control characters and runs of spaces collapsed to single spaces.
fn one_line(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
