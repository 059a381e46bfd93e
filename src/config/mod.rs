//! Configuration: the schema (plain data), decoding YAML with positions, and validation.
//!
//! `config` knows nothing of the proxy. It turns a file into a [`Config`] whose invariants
//! hold, or into every [`Diagnostic`] that explains why it cannot.

mod decode;
mod diagnostic;
mod duration;
mod not_enforced;
mod reader;
mod schema;
mod suggest;
mod tree;
mod validate;

use std::fmt;
use std::path::Path;

pub use diagnostic::Diagnostic;
pub use duration::{
    format_duration, format_latency, format_seconds_one_decimal,
    format_seconds_one_decimal_unless_whole, format_whole_seconds_rounded_up, parse_duration,
};
pub use schema::*;

/// A configuration that decoded and validated, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Things that work but deserve attention (e.g. sections accepted but not enforced yet).
    pub warnings: Vec<Diagnostic>,
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// The file could not be read.
    Io {
        /// The path as given.
        path: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The file was read but is invalid; every problem found, in file order.
    Invalid(Vec<Diagnostic>),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => {
                write!(f, "{path}: cannot read the configuration: {error}")
            }
            LoadError::Invalid(diags) => {
                for (i, d) in diags.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{d}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads, decodes and validates the configuration at `path`.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|error| LoadError::Io {
        path: path.display().to_string(),
        error,
    })?;
    load_str(&path.display().to_string(), &text)
}

/// Decodes and validates configuration text; `file` names it in diagnostics.
///
/// Every problem in the file is reported, each located at the offending value (or key), and
/// errors and warnings are sorted by position.
pub fn load_str(file: &str, text: &str) -> Result<Loaded, LoadError> {
    let root = match tree::parse(text) {
        Ok(root) => root,
        Err(err) => {
            return Err(LoadError::Invalid(vec![Diagnostic {
                file: file.to_string(),
                line: err.pos.line,
                col: err.pos.col,
                path: "<yaml>".to_string(),
                message: format!(
                    "invalid YAML: {}; check the indentation, quotes and brackets here and on the line before",
                    err.message
                ),
            }]))
        }
    };
    let mut ctx = reader::Ctx::new(file);
    let mut facts = validate::Facts::default();
    let config = decode::decode(&mut ctx, &root, &mut facts);
    validate::check(&mut ctx, &facts);
    let reader::Ctx {
        mut errors,
        mut warnings,
        ..
    } = ctx;
    errors.sort_by_key(|d| (d.line, d.col));
    warnings.sort_by_key(|d| (d.line, d.col));
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded { config, warnings }),
        _ if !errors.is_empty() => Err(LoadError::Invalid(errors)),
        _ => Err(LoadError::Invalid(vec![Diagnostic {
            file: file.to_string(),
            line: root.pos.line,
            col: root.pos.col,
            path: "<root>".to_string(),
            message: "the configuration could not be decoded (internal error: no diagnostic was recorded); please report this".to_string(),
        }])),
    }
}

#[cfg(test)]
mod tests;
