//! A YAML document as plain data that keeps the order of its keys.
//!
//! A manifest that weir rewrites should read like the one the user wrote: `apiVersion`,
//! `kind`, `metadata`, `spec` in that order, the containers' fields where they were. A
//! `serde_json::Value` would sort the keys, so injection works on this small tree instead.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One YAML node: a scalar, a sequence or a mapping whose entries keep their order.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    /// `null`, `~` or an empty value.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits in 64 signed bits.
    Int(i64),
    /// A larger unsigned integer.
    UInt(u64),
    /// A floating-point number.
    Float(f64),
    /// Any string, quoted or plain.
    Str(String),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping, entries in document order.
    Map(Vec<(String, Yaml)>),
}

// === impl Yaml ===

impl Yaml {
    /// A string node, for the values injection writes.
    pub fn str(s: impl Into<String>) -> Yaml {
        Yaml::Str(s.into())
    }

    /// A mapping of the given entries, in that order.
    pub fn map<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
        Yaml::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// The value under `key`, when this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value under `key`, when this is a mapping that has it, to change in place.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Yaml> {
        match self {
            Yaml::Map(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value under the path of keys, when every step is a mapping that has it.
    pub fn at(&self, path: &[&str]) -> Option<&Yaml> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The value under the path of keys, to change in place.
    pub fn at_mut(&mut self, path: &[&str]) -> Option<&mut Yaml> {
        path.iter().try_fold(self, |node, key| node.get_mut(key))
    }

    /// The string, when this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Yaml::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping under `key`, created (at the end) when absent or null. `None` when this
    /// is not a mapping or the key holds something other than a mapping.
    pub fn entry_map(&mut self, key: &str) -> Option<&mut Yaml> {
        self.entry(key, Yaml::Map(Vec::new()), |v| matches!(v, Yaml::Map(_)))
    }

    /// The sequence under `key`, created (at the end) when absent or null; `None` as for
    /// [`Yaml::entry_map`].
    pub fn entry_seq(&mut self, key: &str) -> Option<&mut Vec<Yaml>> {
        match self.entry(key, Yaml::Seq(Vec::new()), |v| matches!(v, Yaml::Seq(_)))? {
            Yaml::Seq(items) => Some(items),
            _ => None,
        }
    }

    fn entry(&mut self, key: &str, empty: Yaml, fits: fn(&Yaml) -> bool) -> Option<&mut Yaml> {
        let Yaml::Map(entries) = self else {
            return None;
        };
        let index = match entries.iter().position(|(k, _)| k == key) {
            Some(i) => {
                if entries[i].1 == Yaml::Null {
                    entries[i].1 = empty;
                }
                i
            }
            None => {
                entries.push((key.to_string(), empty));
                entries.len() - 1
            }
        };
        let value = &mut entries[index].1;
        fits(value).then_some(value)
    }

    /// Sets `key` to `value`, in place when present, else at the end; no-op on a non-mapping.
    pub fn set(&mut self, key: &str, value: Yaml) {
        if let Yaml::Map(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => entries.push((key.to_string(), value)),
            }
        }
    }
}

impl Serialize for Yaml {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Yaml::Null => s.serialize_unit(),
            Yaml::Bool(b) => s.serialize_bool(*b),
            Yaml::Int(i) => s.serialize_i64(*i),
            Yaml::UInt(u) => s.serialize_u64(*u),
            Yaml::Float(f) => s.serialize_f64(*f),
            Yaml::Str(text) => s.serialize_str(text),
            Yaml::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Yaml::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Yaml, D::Error> {
        d.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Yaml, E> {
        Ok(Yaml::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Yaml, E> {
        Ok(i64::try_from(u).map_or(Yaml::UInt(u), Yaml::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Yaml, E> {
        Ok(Yaml::Str(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Yaml, E> {
        Ok(Yaml::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Yaml::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Yaml>()? {
            entries.push((k, v));
        }
        Ok(Yaml::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Yaml {
        serde_saphyr::from_str(text).expect("YAML")
    }

    #[test]
    fn keys_keep_their_document_order_through_a_round_trip() {
        let doc =
            parse("kind: Pod\napiVersion: v1\nmetadata:\n  name: web\n  labels: {z: a, a: z}\n");
        let Yaml::Map(entries) = &doc else {
            panic!("a mapping")
        };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["kind", "apiVersion", "metadata"]);
        let text = serde_saphyr::to_string(&doc).expect("serialise");
        assert!(text.find("kind").expect("kind") < text.find("apiVersion").expect("api"));
        assert_eq!(parse(&text), doc);
    }

    #[test]
    fn strings_that_look_like_numbers_or_booleans_stay_strings() {
        let doc = Yaml::map([
            ("port", Yaml::str("9901")),
            ("scrape", Yaml::str("true")),
            ("n", Yaml::Int(3)),
        ]);
        let text = serde_saphyr::to_string(&doc).expect("serialise");
        assert_eq!(parse(&text), doc, "{text}");
    }

    #[test]
    fn entry_creates_missing_and_null_containers_and_refuses_other_types() {
        let mut doc = parse("a: ~\nb: 3\n");
        assert!(doc.entry_map("a").is_some());
        assert!(doc.entry_seq("c").is_some());
        assert!(doc.entry_map("b").is_none());
        assert_eq!(doc.get("a"), Some(&Yaml::Map(Vec::new())));
        assert_eq!(doc.get("c"), Some(&Yaml::Seq(Vec::new())));
    }
}
