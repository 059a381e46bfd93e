//! Reading the YAML tree field by field while collecting every problem.
//!
//! [`Ctx`] collects diagnostics; [`MapReader`] hands out the fields of one mapping and, on
//! [`MapReader::finish`], reports every key nobody asked for; [`Field`] converts one value to
//! the type the schema wants, reporting a located error (and returning `None`) when it cannot.

use std::net::SocketAddr;
use std::time::Duration;

use super::diagnostic::Diagnostic;
use super::duration::parse_duration;
use super::identifier::check_name;
use super::suggest::{did_you_mean, one_of};
use super::tree::{describe_float, quote, Entry, Node, Pos, Value};

/// Collects the errors and warnings of one file.
#[derive(Debug)]
pub(crate) struct Ctx {
    file: String,
    /// Errors found so far, in discovery order.
    pub errors: Vec<Diagnostic>,
    /// Warnings found so far, in discovery order.
    pub warnings: Vec<Diagnostic>,
}

impl Ctx {
    /// A collector for the file named `file` in diagnostics.
    pub fn new(file: &str) -> Ctx {
        Ctx {
            file: file.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn diagnostic(&self, pos: Pos, path: &str, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            path: if path.is_empty() {
                "<root>".to_string()
            } else {
                path.to_string()
            },
            message,
        }
    }

    /// Records an error at `pos` about the field at `path`.
    pub fn error(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(pos, path, message.into());
        self.errors.push(d);
    }

    /// Records a warning at `pos` about the field at `path`.
    pub fn warn(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(pos, path, message.into());
        self.warnings.push(d);
    }
}

/// `parent.key`, or `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// One value in the tree, with its path and the position of its key.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    /// The value.
    pub node: &'a Node,
    /// `listeners[0].address`.
    pub path: String,
    /// Where the key is (for list items: the item itself).
    pub key_pos: Pos,
}

/// The fields of one YAML mapping, handed out by name.
#[derive(Debug)]
pub(crate) struct MapReader<'a> {
    entries: &'a [Entry],
    pos: Pos,
    path: String,
    /// Keys the schema asked for, whether present or not.
    known: Vec<&'static str>,
    /// Entries consumed (or already reported, such as duplicates).
    used: Vec<bool>,
}

impl<'a> MapReader<'a> {
    /// Reads `field` as a mapping, or reports "expected {what}" and returns `None`.
    /// Duplicate keys are reported here, at the second occurrence.
    pub fn new(ctx: &mut Ctx, field: &Field<'a>, what: &str) -> Option<MapReader<'a>> {
        let Value::Map(entries) = &field.node.value else {
            field.type_error(ctx, &format!("a mapping ({what})"));
            return None;
        };
        let mut used = vec![false; entries.len()];
        for (i, entry) in entries.iter().enumerate() {
            if let Some(first) = entries[..i].iter().find(|e| e.key == entry.key) {
                ctx.error(
                    entry.key_pos,
                    &join(&field.path, &entry.key),
                    format!(
                        "duplicate key `{}` (first given at line {}); keep only one of them",
                        entry.key, first.key_pos.line
                    ),
                );
                used[i] = true;
            }
        }
        Some(MapReader {
            entries,
            pos: field.node.pos,
            path: field.path.clone(),
            known: Vec::new(),
            used,
        })
    }

    /// Where the mapping starts.
    pub fn pos(&self) -> Pos {
        self.pos
    }

    /// The mapping's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn take(&mut self, key: &'static str) -> Option<Field<'a>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        let i = self.entries.iter().position(|e| e.key == key)?;
        self.used[i] = true;
        let entry = &self.entries[i];
        Some(Field {
            node: &entry.value,
            path: join(&self.path, key),
            key_pos: entry.key_pos,
        })
    }

    /// The field `key`; when absent, reports it as missing (at this mapping) with `hint`
    /// saying what to write.
    pub fn required(&mut self, ctx: &mut Ctx, key: &'static str, hint: &str) -> Option<Field<'a>> {
        let field = self.take(key);
        if field.is_none() {
            ctx.error(
                self.pos,
                &join(&self.path, key),
                format!("required field `{key}` is missing; {hint}"),
            );
        }
        field
    }

    /// The field `key` if present and not null.
    pub fn optional(&mut self, key: &'static str) -> Option<Field<'a>> {
        self.take(key).filter(|f| f.node.value != Value::Null)
    }

    /// Reports every key that no `required`/`optional` call asked for, suggesting the
    /// closest known key or listing the valid ones.
    pub fn finish(self, ctx: &mut Ctx) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let message = match did_you_mean(&entry.key, self.known.iter().copied()) {
                Some(close) => format!("unknown field `{}`; did you mean `{close}`?", entry.key),
                None => format!(
                    "unknown field `{}`; the fields allowed here are {}",
                    entry.key,
                    one_of(&self.known)
                ),
            };
            ctx.error(entry.key_pos, &join(&self.path, &entry.key), message);
        }
    }
}

impl<'a> Field<'a> {
    /// The root of the document, as a field with an empty path.
    pub fn root(node: &'a Node) -> Field<'a> {
        Field {
            node,
            path: String::new(),
            key_pos: node.pos,
        }
    }

    /// Where the value is.
    pub fn pos(&self) -> Pos {
        self.node.pos
    }

    /// Records an error at the value.
    pub fn error(&self, ctx: &mut Ctx, message: impl Into<String>) {
        ctx.error(self.node.pos, &self.path, message);
    }

    /// Records "expected {expected}, found {what it is}".
    pub fn type_error(&self, ctx: &mut Ctx, expected: &str) {
        let mut message = format!("expected {expected}, found {}", self.node.value.describe());
        match &self.node.value {
            Value::Str(_) if expected.contains("number") => {
                message.push_str("; write the number without quotes")
            }
            Value::Str(s)
                if expected.contains("`true`")
                    && ["yes", "no", "on", "off", "y", "n"]
                        .contains(&s.to_lowercase().as_str()) =>
            {
                message.push_str(" (YAML 1.2 booleans are only `true` and `false`)")
            }
            Value::Bool(_) | Value::Int(_) | Value::Float(_)
                if expected.starts_with("a string") =>
            {
                message.push_str("; put it in quotes if you mean the text")
            }
            _ => {}
        }
        self.error(ctx, message);
    }

    /// The value as a string.
    pub fn str(&self, ctx: &mut Ctx) -> Option<&'a str> {
        match &self.node.value {
            Value::Str(s) => Some(s.as_str()),
            _ => {
                self.type_error(ctx, "a string");
                None
            }
        }
    }

    /// The value as a non-empty string; `what` names it in the error ("a service name").
    pub fn name(&self, ctx: &mut Ctx, what: &str) -> Option<String> {
        let s = self.str(ctx)?;
        if s.trim().is_empty() {
            self.error(ctx, format!("{what} must not be empty"));
            return None;
        }
        Some(s.to_string())
    }

    /// The value as a listener, route or service name: non-empty and following
    /// [`check_name`]'s rule, since such names are referenced and printed in logs.
    pub fn identifier(&self, ctx: &mut Ctx, what: &str) -> Option<String> {
        let name = self.name(ctx, what)?;
        match check_name(&name) {
            Ok(()) => Some(name),
            Err(message) => {
                self.error(
                    ctx,
                    format!(
                        "{} is not a valid {}: {message}",
                        quote(&name),
                        what.trim_start_matches("a ")
                    ),
                );
                None
            }
        }
    }

    /// The value as a boolean.
    pub fn bool(&self, ctx: &mut Ctx) -> Option<bool> {
        match &self.node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.type_error(ctx, "`true` or `false`");
                None
            }
        }
    }

    /// The value as a whole number within `lo..=hi`.
    pub fn int_in(&self, ctx: &mut Ctx, lo: i128, hi: i128) -> Option<i128> {
        let value = match &self.node.value {
            Value::Int(i) => *i,
            Value::Float(f) if f.is_finite() && f.abs() < 1e15 => {
                self.error(ctx, format!("expected a whole number, found {f}"));
                return None;
            }
            Value::Float(f) => {
                self.error(
                    ctx,
                    format!(
                        "expected a whole number between {lo} and {hi}, found {}",
                        describe_float(*f)
                    ),
                );
                return None;
            }
            _ => {
                self.type_error(ctx, "a number");
                return None;
            }
        };
        if value < lo || value > hi {
            let range = if hi == i128::from(u32::MAX) && value < lo {
                format!("at least {lo}")
            } else {
                format!("between {lo} and {hi}")
            };
            self.error(ctx, format!("{value} is out of range; it must be {range}"));
            return None;
        }
        Some(value)
    }

    /// The value as a `u32` of at least `min`.
    pub fn u32_min(&self, ctx: &mut Ctx, min: u32) -> Option<u32> {
        let value = self.int_in(ctx, i128::from(min), i128::from(u32::MAX))?;
        u32::try_from(value).ok()
    }

    /// The value as a `u16` within `lo..=hi`.
    pub fn u16_in(&self, ctx: &mut Ctx, lo: u16, hi: u16) -> Option<u16> {
        let value = self.int_in(ctx, i128::from(lo), i128::from(hi))?;
        u16::try_from(value).ok()
    }

    /// The value as a percentage, a number from 0 to 100.
    pub fn percent(&self, ctx: &mut Ctx) -> Option<f64> {
        let value = match &self.node.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => {
                self.type_error(ctx, "a percentage (a number from 0 to 100)");
                return None;
            }
        };
        if !(0.0..=100.0).contains(&value) {
            self.error(
                ctx,
                format!("{value} is not a percentage; use a number from 0 to 100"),
            );
            return None;
        }
        Some(value)
    }

    /// The value as a duration (`250ms`, `10s`).
    pub fn duration(&self, ctx: &mut Ctx) -> Option<Duration> {
        match &self.node.value {
            Value::Str(s) => match parse_duration(s) {
                Ok(d) => Some(d),
                Err(message) => {
                    self.error(ctx, message);
                    None
                }
            },
            Value::Int(i) if *i >= 0 => {
                self.error(
                    ctx,
                    format!("durations need a unit: write `{i}s` for seconds or `{i}ms` for milliseconds"),
                );
                None
            }
            _ => {
                self.type_error(ctx, "a duration such as `250ms`, `10s` or `1m`");
                None
            }
        }
    }

    /// The value as a duration greater than zero.
    pub fn positive_duration(&self, ctx: &mut Ctx) -> Option<Duration> {
        let d = self.duration(ctx)?;
        if d.is_zero() {
            self.error(ctx, "must be longer than zero, e.g. `1s`");
            return None;
        }
        Some(d)
    }

    /// The value as an `IP:PORT` socket address.
    pub fn socket_addr(&self, ctx: &mut Ctx) -> Option<SocketAddr> {
        let Value::Str(s) = &self.node.value else {
            if let Value::Int(port) = &self.node.value {
                self.error(
                    ctx,
                    format!("expected IP:PORT, found only the number {port}; write e.g. `0.0.0.0:{port}` or `127.0.0.1:{port}`"),
                );
            } else {
                self.type_error(ctx, "an address IP:PORT such as `0.0.0.0:15006`");
            }
            return None;
        };
        match s.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) if s.parse::<std::net::IpAddr>().is_ok() => {
                let ip = if s.contains(':') {
                    format!("[{s}]")
                } else {
                    s.clone()
                };
                self.error(
                    ctx,
                    format!(
                        "{} has no port; write `{ip}:PORT`, e.g. `{ip}:8080`",
                        quote(s)
                    ),
                );
                None
            }
            Err(_) => {
                let hint = match s.rsplit_once(':') {
                    Some((host, _))
                        if host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[') =>
                    {
                        " (host names are not resolved here; use an IP address)"
                    }
                    _ => "",
                };
                self.error(
                    ctx,
                    format!(
                        "{} is not an IP:PORT address{hint}; use IP:PORT such as `0.0.0.0:15006` or `[::1]:8080`",
                        quote(s)
                    ),
                );
                None
            }
        }
    }

    /// The value as one of the named `choices`; an unknown name lists them (with did-you-mean).
    pub fn choice<T: Copy>(&self, ctx: &mut Ctx, choices: &[(&'static str, T)]) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let Value::Str(s) = &self.node.value else {
            self.type_error(ctx, &format!("one of {}", one_of(&names)));
            return None;
        };
        if let Some((_, v)) = choices.iter().find(|(n, _)| *n == s) {
            return Some(*v);
        }
        let message = match did_you_mean(s, names.iter().copied()) {
            Some(close) => format!(
                "unknown value {}; did you mean `{close}`? (accepted: {})",
                quote(s),
                one_of(&names)
            ),
            None => format!(
                "unknown value {}; accepted values are {}",
                quote(s),
                one_of(&names)
            ),
        };
        self.error(ctx, message);
        None
    }

    /// The items of a list, each with its indexed path.
    pub fn seq(&self, ctx: &mut Ctx, what: &str) -> Option<Vec<Field<'a>>> {
        let Value::Seq(items) = &self.node.value else {
            self.type_error(ctx, &format!("a list ({what})"));
            return None;
        };
        Some(
            items
                .iter()
                .enumerate()
                .map(|(i, node)| Field {
                    node,
                    path: format!("{}[{i}]", self.path),
                    key_pos: node.pos,
                })
                .collect(),
        )
    }

    /// Like [`Field::seq`], but an empty list is an error with `hint` saying what to add.
    pub fn non_empty_seq(&self, ctx: &mut Ctx, what: &str, hint: &str) -> Option<Vec<Field<'a>>> {
        let items = self.seq(ctx, what)?;
        if items.is_empty() {
            self.error(ctx, format!("the list is empty; {hint}"));
            return None;
        }
        Some(items)
    }

    /// Reads the value as a mapping (see [`MapReader::new`]).
    pub fn map(&self, ctx: &mut Ctx, what: &str) -> Option<MapReader<'a>> {
        MapReader::new(ctx, self, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tree::parse;

    fn with_root<R>(yaml: &str, f: impl FnOnce(&mut Ctx, Field<'_>) -> R) -> (R, Vec<String>) {
        let node = parse(yaml).expect("valid yaml");
        let mut ctx = Ctx::new("t.yaml");
        let r = f(&mut ctx, Field::root(&node));
        (r, ctx.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn required_reports_missing_at_the_mapping() {
        let (_, errors) = with_root("a:\n  b: 1\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            let a = m.required(ctx, "a", "add a").expect("a");
            let mut inner = a.map(ctx, "inner").expect("inner");
            let _ = inner.optional("b");
            assert!(inner.required(ctx, "c", "add `c: 1`").is_none());
            inner.finish(ctx);
            m.finish(ctx);
        });
        assert_eq!(
            errors,
            vec!["t.yaml:2:3: a.c: required field `c` is missing; add `c: 1`"]
        );
    }

    #[test]
    fn finish_reports_unknown_keys_with_suggestions() {
        let (_, errors) = with_root("nmae: x\nzzz: 1\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            let _ = m.optional("name");
            let _ = m.optional("address");
            m.finish(ctx);
        });
        assert_eq!(
            errors,
            vec![
                "t.yaml:1:1: nmae: unknown field `nmae`; did you mean `name`?",
                "t.yaml:2:1: zzz: unknown field `zzz`; the fields allowed here are `name` or `address`",
            ]
        );
    }

    #[test]
    fn duplicate_keys_are_reported_once() {
        let (_, errors) = with_root("name: a\nname: b\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            let name = m.optional("name").and_then(|f| f.name(ctx, "name"));
            assert_eq!(name.as_deref(), Some("a"));
            m.finish(ctx);
        });
        assert_eq!(errors, vec!["t.yaml:2:1: name: duplicate key `name` (first given at line 1); keep only one of them"]);
    }

    #[test]
    fn optional_treats_null_as_absent() {
        let (_, errors) = with_root("node:\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            assert!(m.optional("node").is_none());
            m.finish(ctx);
        });
        assert!(errors.is_empty());
    }

    #[test]
    fn typed_values_report_wrong_types() {
        let (_, errors) = with_root(
            "w: ten\np: 150\nd: 10\nb: yes\na: localhost:80\nc: robin\nf: 1.5\nn: -1\ns: 5\n",
            |ctx, root| {
                let mut m = root.map(ctx, "test").expect("map");
                assert!(m.optional("w").and_then(|f| f.u32_min(ctx, 0)).is_none());
                assert!(m.optional("p").and_then(|f| f.percent(ctx)).is_none());
                assert!(m.optional("d").and_then(|f| f.duration(ctx)).is_none());
                assert!(m.optional("b").and_then(|f| f.bool(ctx)).is_none());
                assert!(m.optional("a").and_then(|f| f.socket_addr(ctx)).is_none());
                assert!(m
                    .optional("c")
                    .and_then(|f| f.choice(ctx, &[("round_robin", 1), ("random", 2)]))
                    .is_none());
                assert!(m.optional("f").and_then(|f| f.u32_min(ctx, 0)).is_none());
                assert!(m.optional("n").and_then(|f| f.u32_min(ctx, 0)).is_none());
                assert!(m.optional("s").and_then(|f| f.str(ctx)).is_none());
                m.finish(ctx);
            },
        );
        assert_eq!(
            errors,
            vec![
                "t.yaml:1:4: w: expected a number, found the string \"ten\"; write the number without quotes",
                "t.yaml:2:4: p: 150 is not a percentage; use a number from 0 to 100",
                "t.yaml:3:4: d: durations need a unit: write `10s` for seconds or `10ms` for milliseconds",
                "t.yaml:4:4: b: expected `true` or `false`, found the string \"yes\" (YAML 1.2 booleans are only `true` and `false`)",
                "t.yaml:5:4: a: \"localhost:80\" is not an IP:PORT address (host names are not resolved here; use an IP address); use IP:PORT such as `0.0.0.0:15006` or `[::1]:8080`",
                "t.yaml:6:4: c: unknown value \"robin\"; accepted values are `round_robin` or `random`",
                "t.yaml:7:4: f: expected a whole number, found 1.5",
                "t.yaml:8:4: n: -1 is out of range; it must be at least 0",
                "t.yaml:9:4: s: expected a string, found the number 5; put it in quotes if you mean the text",
            ]
        );
    }

    #[test]
    fn choice_suggests_the_closest_value() {
        let (v, errors) = with_root("x: randon\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            let v = m
                .optional("x")
                .and_then(|f| f.choice(ctx, &[("round_robin", 1), ("random", 2)]));
            m.finish(ctx);
            v
        });
        assert_eq!(v, None);
        assert_eq!(
            errors,
            vec!["t.yaml:1:4: x: unknown value \"randon\"; did you mean `random`? (accepted: `round_robin` or `random`)"]
        );
    }

    #[test]
    fn seq_paths_are_indexed() {
        let (paths, errors) = with_root("l: [a, b]\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            let items = m
                .optional("l")
                .and_then(|f| f.seq(ctx, "names"))
                .expect("seq");
            m.finish(ctx);
            items
                .iter()
                .map(|f| (f.path.clone(), f.pos()))
                .collect::<Vec<_>>()
        });
        assert!(errors.is_empty());
        assert_eq!(paths[1], ("l[1]".to_string(), Pos { line: 1, col: 8 }));
    }

    #[test]
    fn empty_lists_are_reported() {
        let (_, errors) = with_root("l: []\n", |ctx, root| {
            let mut m = root.map(ctx, "test").expect("map");
            assert!(m
                .optional("l")
                .and_then(|f| f.non_empty_seq(ctx, "routes", "add one"))
                .is_none());
            m.finish(ctx);
        });
        assert_eq!(errors, vec!["t.yaml:1:4: l: the list is empty; add one"]);
    }

    #[test]
    fn not_a_mapping_is_a_type_error() {
        let (_, errors) = with_root("- a\n", |ctx, root| {
            assert!(root.map(ctx, "the configuration").is_none());
        });
        assert_eq!(
            errors,
            vec!["t.yaml:1:1: <root>: expected a mapping (the configuration), found a list"]
        );
    }
}
