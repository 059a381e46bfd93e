//! A generic YAML tree that remembers where every node came from.
//!
//! serde derive stops at the first error; the configuration loader wants every error. So the
//! text is first read into this untyped tree (with serde-saphyr's [`Spanned`] providing the
//! positions), and the schema walk in `decode.rs` then reports every problem it finds.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Spanned};

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

impl Pos {
    /// The start of the file.
    pub const START: Pos = Pos { line: 1, col: 1 };

    /// The position serde-saphyr reports (1-based), clamped to at least 1.
    pub(crate) fn from_location(loc: &serde_saphyr::Location) -> Pos {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).max(1);
        Pos {
            line: clamp(loc.line()),
            col: clamp(loc.column()),
        }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Where the node starts (for a block mapping: its first key).
    pub pos: Pos,
    /// The node itself.
    pub value: Value,
}

/// The shape of a YAML node, after YAML 1.2 core-schema typing of plain scalars.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer (any sign).
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A string (quoted, or plain text that is not a number, boolean or null).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order, duplicates kept (the reader reports them).
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key text.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

impl Value {
    /// Describes the value for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "nothing (null)".to_string(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Int(i) => format!("the number {i}"),
            Value::Float(f) => describe_float(*f),
            Value::Str(s) => format!("the string {}", quote(s)),
            Value::Seq(_) => "a list".to_string(),
            Value::Map(_) => "a mapping".to_string(),
        }
    }
}

/// A float for a message. Integers beyond 128 bits arrive as floats; printed in full they
/// would show digits the user never wrote, so huge values are only given as a magnitude.
pub(crate) fn describe_float(f: f64) -> String {
    if f.is_infinite() || f.is_nan() {
        "a number too large to use".to_string()
    } else if f.abs() >= 1e15 {
        format!("a number too large to use (about {f:e})")
    } else {
        format!("the number {f}")
    }
}

/// Quotes a user string for a message, escaping control characters and shortening long text.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    format!("{out:?}")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            pos: Pos::from_location(&spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            items.push(node);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push(Entry {
                key: key.value,
                key_pos: Pos::from_location(&key.referenced),
                value,
            });
        }
        Ok(Value::Map(entries))
    }
}

/// A YAML document that could not be read as YAML at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What is wrong and how to fix it, on one line.
    pub message: String,
}

/// Parses `text` into a [`Node`] tree. Duplicate keys are kept (the reader reports them);
/// booleans follow YAML 1.2 (`true`/`false` only, so `on:` stays a key and `no` a string).
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Option<Node>>(text, options)
        .map(|node| {
            node.unwrap_or(Node {
                pos: Pos::START,
                value: Value::Null,
            })
        })
        .map_err(|err| {
            let (location, message) = super::yaml_error::describe(&err);
            let pos = location.map_or(Pos::START, |loc| Pos::from_location(&loc));
            SyntaxError { pos, message }
        })
}

/// Where the key at `path` (mapping keys and list indices from the root) starts in `text`; when the key is
/// absent, where its nearest present parent starts (the file's start at worst). Used to
/// place a diagnostic about a field found by comparing two decoded configurations.
pub(crate) fn position_of(text: &str, path: &[&str]) -> Pos {
    let Ok(root) = parse(text) else {
        return Pos::START;
    };
    let mut node = &root;
    let mut pos = Pos::START;
    for key in path {
        match &node.value {
            Value::Map(entries) => {
                let Some(entry) = entries.iter().find(|e| e.key == *key) else {
                    break;
                };
                pos = entry.key_pos;
                node = &entry.value;
            }
            Value::Seq(items) => {
                let Some(item) = key.parse::<usize>().ok().and_then(|i| items.get(i)) else {
                    break;
                };
                pos = item.pos;
                node = item;
            }
            _ => break,
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn scalars_are_typed_by_the_yaml_core_schema() {
        let doc = parse("a: 1\nb: -2\nc: 1.5\nd: true\ne: \"true\"\nf: on\ng: ~\nh:\ni: 10s\n")
            .expect("parses");
        let values: Vec<_> = map(&doc)
            .iter()
            .map(|e| (e.key.as_str(), e.value.value.clone()))
            .collect();
        assert_eq!(
            values,
            vec![
                ("a", Value::Int(1)),
                ("b", Value::Int(-2)),
                ("c", Value::Float(1.5)),
                ("d", Value::Bool(true)),
                ("e", Value::Str("true".into())),
                ("f", Value::Str("on".into())),
                ("g", Value::Null),
                ("h", Value::Null),
                ("i", Value::Str("10s".into())),
            ]
        );
    }

    #[test]
    fn positions_point_at_keys_and_values() {
        let doc = parse("version: 1\nlisteners:\n  - name: x\n    address: { a: 1 }\non: [a, b]\n")
            .expect("parses");
        let top = map(&doc);
        assert_eq!(top[0].key_pos, Pos { line: 1, col: 1 });
        assert_eq!(top[0].value.pos, Pos { line: 1, col: 10 });
        assert_eq!(top[2].key, "on");
        let Value::Seq(items) = &top[1].value.value else {
            panic!("seq")
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
        let item = map(&items[0]);
        assert_eq!(item[1].key_pos, Pos { line: 4, col: 5 });
        assert_eq!(item[1].value.pos, Pos { line: 4, col: 14 });
        let Value::Seq(on) = &top[2].value.value else {
            panic!("seq")
        };
        assert_eq!(on[1].pos, Pos { line: 5, col: 9 });
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let doc = parse("a: 1\na: 2\n").expect("parses");
        assert_eq!(map(&doc).len(), 2);
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").expect("parses").value, Value::Null);
        assert_eq!(
            parse("# only a comment\n").expect("parses").value,
            Value::Null
        );
    }

    #[test]
    fn crlf_non_string_keys_and_anchors() {
        let doc = parse("a: 1\r\n2: &x two\r\nc: *x\r\n").expect("parses");
        let top = map(&doc);
        assert_eq!(top[1].key, "2");
        assert_eq!(top[1].value.pos, Pos { line: 2, col: 7 });
        assert_eq!(top[2].value.value, Value::Str("two".into()));
        assert_eq!(top[2].value.pos, Pos { line: 3, col: 4 });
    }

    #[test]
    fn several_documents_are_a_syntax_error() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("invalid");
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.is_empty());
        assert!(!err.message.contains('\n'));
        eprintln!("{err:?}");
        let err = parse("a: 1\n  b: 2\n").expect_err("invalid");
        eprintln!("{err:?}");
    }
}
