//! Configuration: the schema (plain data), decoding YAML with positions, and validation.
//!
//! `config` knows nothing of the proxy. It turns a file into a [`Config`] whose invariants
//! hold, or into every [`Diagnostic`] that explains why it cannot.

mod decode;
mod diagnostic;
pub(crate) mod documents;
mod duration;
mod identifier;
mod not_enforced;
mod reader;
mod schema;
mod shadow;
mod source;
mod suggest;
mod tags;
mod transparent;
pub(crate) mod tree;
mod validate;
mod yaml_error;

use std::fmt;
use std::path::Path;

pub use diagnostic::Diagnostic;
pub use duration::{
    format_duration, format_latency, format_seconds_one_decimal,
    format_seconds_one_decimal_unless_whole, format_whole_seconds_rounded_up, parse_duration,
};
pub use schema::*;
pub use shadow::shadowed_routes;
pub use source::read_bounded;

/// A configuration that decoded and validated, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Things that work but deserve attention (e.g. sections accepted but not enforced yet).
    pub warnings: Vec<Diagnostic>,
    /// The SHA-256 of the text, in hex: `/config` shows it, and `sha256sum weir.yaml`
    /// tells whether a file on disk is the one in force.
    pub sha256: String,
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
///
/// Only a regular file of at most 16 MiB is read (anything else is [`LoadError::Io`]: it could
/// block or never end); text that is not UTF-8 is [`LoadError::Invalid`], located at the first
/// invalid byte.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let name = path.display().to_string();
    let bytes = source::read_bounded(path).map_err(|error| LoadError::Io {
        path: name.clone(),
        error,
    })?;
    load_bytes(&name, &bytes)
}

/// The SHA-256 of `bytes` in lowercase hex (as `sha256sum` prints it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A diagnostic about the field at `path` (mapping keys and list indices from the root) of configuration
/// `text` read from `file`, placed at the field (or its nearest present parent).
pub fn diagnostic_at(file: &str, text: &str, path: &[&str], message: String) -> Diagnostic {
    let pos = tree::position_of(text, path);
    let mut dotted = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            dotted.push_str(&format!("[{segment}]"));
        } else {
            if !dotted.is_empty() {
                dotted.push('.');
            }
            dotted.push_str(segment);
        }
    }
    Diagnostic {
        file: file.to_string(),
        line: pos.line,
        col: pos.col,
        path: dotted,
        message,
    }
}

/// Decodes and validates the bytes of a file: UTF-8 first, then as [`load_str`].
pub fn load_bytes(file: &str, bytes: &[u8]) -> Result<Loaded, LoadError> {
    match source::utf8(bytes) {
        Ok(text) => load_str(file, text),
        Err(err) => Err(LoadError::Invalid(vec![Diagnostic {
            file: file.to_string(),
            line: err.pos.line,
            col: err.pos.col,
            path: "<file>".to_string(),
            message: err.to_string(),
        }])),
    }
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
                message: err.message,
            }]))
        }
    };
    let tags = tags::find_tags(text);
    if !tags.is_empty() {
        return Err(LoadError::Invalid(
            tags.iter()
                .map(|t| Diagnostic {
                    file: file.to_string(),
                    line: t.pos.line,
                    col: t.pos.col,
                    path: if t.path.is_empty() {
                        "<root>".to_string()
                    } else {
                        t.path.clone()
                    },
                    message: t.message(),
                })
                .collect(),
        ));
    }
    let mut ctx = reader::Ctx::new(file);
    let mut facts = validate::Facts::default();
    let config = decode::decode(&mut ctx, &root, &mut facts);
    validate::check(&mut ctx, &facts);
    transparent::check(&mut ctx, &facts);
    if let (Some(config), true) = (&config, ctx.errors.is_empty()) {
        // Before `transparent::expand`: only routes written in the file are judged.
        ctx.warnings.extend(shadow::warnings(file, text, config));
    }
    let reader::Ctx {
        mut errors,
        mut warnings,
        ..
    } = ctx;
    errors.sort_by_key(|d| (d.line, d.col));
    warnings.sort_by_key(|d| (d.line, d.col));
    match config {
        Some(mut config) if errors.is_empty() => Ok(Loaded {
            config: {
                transparent::expand(&mut config);
                config
            },
            warnings,
            sha256: sha256_hex(text.as_bytes()),
        }),
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
