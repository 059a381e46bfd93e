//! The input side of `weir import`: files cut into Kubernetes resources, and a reader over
//! their fields that remembers which ones a translator looked at.
//!
//! "Nothing dropped silently" is enforced here rather than by each translator's care: a
//! translator takes the fields it understands ([`Obj::get`]), and [`Obj::finish`] reports
//! every field it did not take as unsupported, at its line and column.

use std::cell::RefCell;
use std::rc::Rc;

use super::report::{Report, Reports, Severity};
use crate::config::documents;
use crate::config::tree::{self, Node, Pos, Value};

/// One file given to `weir import`.
#[derive(Debug, Clone)]
pub struct Input {
    /// Its name in reports (`<stdin>` for standard input).
    pub name: String,
    /// Its text.
    pub text: String,
}

/// One Kubernetes resource (a YAML document with `kind`) of an input file.
#[derive(Debug)]
pub struct Resource {
    /// The file it is in.
    pub file: Rc<str>,
    /// `apiVersion`, e.g. `networking.istio.io/v1`.
    pub api_version: String,
    /// `kind`, e.g. `VirtualService`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, or the namespace given with `--namespace`, or `default`.
    pub namespace: String,
    /// `metadata.annotations`, in file order.
    pub annotations: Vec<(String, String)>,
    /// The whole document.
    pub(crate) root: Node,
    /// Fields of the wrong shape found while reading (a scalar where a list belongs, a
    /// negative weight): the readers return nothing for them and record why here, so no
    /// translator can drop one silently. [`Resource::take_problems`] collects them.
    problems: RefCell<Vec<Report>>,
}

impl Resource {
    /// `VirtualService shop/reviews`: how comments and reports name the resource.
    pub fn title(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    /// The API group of `apiVersion` (`networking.istio.io`; empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The version of `apiVersion` (`v1alpha3`).
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// A reader over the whole document.
    pub fn obj(&self) -> Obj<'_> {
        Obj::root(self)
    }

    /// A reader over the document's `spec` (an empty mapping when it has none).
    pub fn spec(&self) -> Obj<'_> {
        let root = Obj::root(self);
        match root.get("spec") {
            Some(spec) => spec,
            None => Obj {
                res: self,
                node: &EMPTY,
                pos: root.pos,
                path: "spec".to_string(),
                taken: RefCell::default(),
            },
        }
    }

    /// Reports `message` about the resource as a whole (at its `kind`).
    pub fn report(&self, reports: &mut Reports, severity: Severity, message: impl Into<String>) {
        Obj::root(self).report(reports, severity, message);
    }

    /// The problems the readers recorded (see [`Resource::problems`]).
    pub fn take_problems(&self) -> Vec<Report> {
        std::mem::take(&mut *self.problems.borrow_mut())
    }

    /// The value of annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Where annotation `key` is written (for reports about it).
    pub fn annotation_obj(&self, key: &str) -> Option<Obj<'_>> {
        Obj::root(self)
            .get("metadata")?
            .get("annotations")?
            .get(key)
    }
}

static EMPTY: Node = Node {
    pos: Pos::START,
    value: Value::Null,
};

/// Reads every input into resources. Documents that are not YAML, or have no `kind`, are
/// reported; empty documents are skipped.
pub fn read(inputs: &[Input], namespace: Option<&str>, reports: &mut Reports) -> Vec<Resource> {
    let mut resources = Vec::new();
    for input in inputs {
        let file: Rc<str> = Rc::from(input.name.as_str());
        for doc in documents::split(&input.text) {
            let offset = u32::try_from(doc.first_line.saturating_sub(1)).unwrap_or(0);
            let mut node = match tree::parse(doc.text) {
                Ok(node) => node,
                Err(err) => {
                    reports.push(Report {
                        file: file.to_string(),
                        line: err.pos.line + offset,
                        col: err.pos.col,
                        path: "(document)".to_string(),
                        severity: Severity::Error,
                        message: format!("not YAML: {}", err.message),
                    });
                    continue;
                }
            };
            shift(&mut node, offset);
            // Empty, or Spring-style Hystrix settings (read by the Hystrix translator).
            if node.value == Value::Null || has_top_level_key(&node, "hystrix") {
                continue;
            }
            if let Some(resource) = resource_of(&file, node, namespace, reports) {
                resources.push(resource);
            }
        }
    }
    resources
}

/// Whether a document is a mapping with `key` at its top level.
pub(crate) fn has_top_level_key(root: &Node, key: &str) -> bool {
    matches!(&root.value, Value::Map(entries) if entries.iter().any(|e| e.key == key))
}

/// Moves every position of `node` down by `lines` (a document's lines are counted from
/// its own start by the parser).
fn shift(node: &mut Node, lines: u32) {
    node.pos.line += lines;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| shift(n, lines)),
        Value::Map(entries) => {
            for entry in entries {
                entry.key_pos.line += lines;
                shift(&mut entry.value, lines);
            }
        }
        _ => {}
    }
}

fn resource_of(
    file: &Rc<str>,
    root: Node,
    namespace: Option<&str>,
    reports: &mut Reports,
) -> Option<Resource> {
    let field = |key: &str| match &root.value {
        Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
        _ => None,
    };
    let text = |node: Option<&Node>| match node.map(|n| &n.value) {
        Some(Value::Str(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(kind), Some(api_version)) = (text(field("kind")), text(field("apiVersion"))) else {
        reports.push(Report {
            file: file.to_string(),
            line: root.pos.line,
            col: root.pos.col,
            path: "(document)".to_string(),
            severity: Severity::Error,
            message: "not a Kubernetes resource (it has no `apiVersion` and `kind`); skipped"
                .to_string(),
        });
        return None;
    };
    let metadata = field("metadata");
    let meta = |key: &str| match metadata.map(|m| &m.value) {
        Some(Value::Map(entries)) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
        _ => None,
    };
    let name = printable(&text(meta("name")).unwrap_or_default());
    let namespace = printable(
        &text(meta("namespace"))
            .or_else(|| namespace.map(str::to_string))
            .unwrap_or_else(|| "default".to_string()),
    );
    let kind = printable(&kind);
    let api_version = printable(&api_version);
    let annotations = match meta("annotations").map(|n| &n.value) {
        Some(Value::Map(entries)) => entries
            .iter()
            .filter_map(|e| scalar_text(&e.value.value).map(|v| (e.key.clone(), v)))
            .collect(),
        _ => Vec::new(),
    };
    Some(Resource {
        file: file.clone(),
        api_version,
        kind,
        name,
        namespace,
        annotations,
        root,
        problems: RefCell::default(),
    })
}

/// `s` with control characters escaped: names end up in comments of the output and in
/// report lines, where a line break would forge a line.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A scalar as text (`500m`, `1`, `0.5`, `true`), as Kubernetes quantities and annotation
/// values are compared.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A field of a resource, with its path for reports and the set of its keys a translator
/// has taken.
pub struct Obj<'a> {
    res: &'a Resource,
    node: &'a Node,
    /// Where the field starts: its key, or its list item.
    pos: Pos,
    path: String,
    taken: RefCell<Vec<String>>,
}

impl<'a> Obj<'a> {
    fn root(res: &'a Resource) -> Obj<'a> {
        Obj {
            res,
            node: &res.root,
            pos: res.root.pos,
            path: String::new(),
            taken: RefCell::default(),
        }
    }

    /// The resource the field belongs to.
    pub fn resource(&self) -> &'a Resource {
        self.res
    }

    /// The field's path inside its resource, e.g. `spec.http[0].route`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `FILE:LINE`, for the comment naming where a generated item came from.
    pub fn line(&self) -> u32 {
        self.pos.line
    }

    /// Takes the field `key` of this mapping; `None` when it is absent or null.
    pub fn get(&self, key: &str) -> Option<Obj<'a>> {
        self.taken.borrow_mut().push(key.to_string());
        let Value::Map(entries) = &self.node.value else {
            return None;
        };
        let entry = entries.iter().find(|e| e.key == key)?;
        if entry.value.value == Value::Null {
            return None;
        }
        Some(Obj {
            res: self.res,
            node: &entry.value,
            pos: entry.key_pos,
            path: join(&self.path, key),
            taken: RefCell::default(),
        })
    }

    /// Marks keys as read without reading them (fields with no effect on a sidecar's
    /// traffic, such as `exportTo`).
    pub fn skip(&self, keys: &[&str]) {
        self.taken
            .borrow_mut()
            .extend(keys.iter().map(|k| k.to_string()));
    }

    /// The items of this sequence (none, and a recorded problem, when it is not one).
    pub fn items(&self) -> Vec<Obj<'a>> {
        match &self.node.value {
            Value::Seq(_) | Value::Null => {}
            other => self.problem(format!("expected a list, found {}", other.describe())),
        }
        match &self.node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, node)| Obj {
                    res: self.res,
                    node,
                    pos: node.pos,
                    path: format!("{}[{i}]", self.path),
                    taken: RefCell::default(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The items of the sequence `key` (none when absent).
    pub fn list(&self, key: &str) -> Vec<Obj<'a>> {
        self.get(key).map(|o| o.items()).unwrap_or_default()
    }

    /// The entries of this mapping, each taken.
    pub fn entries(&self) -> Vec<(String, Obj<'a>)> {
        let Value::Map(entries) = &self.node.value else {
            return Vec::new();
        };
        entries
            .iter()
            .map(|e| {
                self.taken.borrow_mut().push(e.key.clone());
                (
                    e.key.clone(),
                    Obj {
                        res: self.res,
                        node: &e.value,
                        pos: e.key_pos,
                        path: join(&self.path, &e.key),
                        taken: RefCell::default(),
                    },
                )
            })
            .collect()
    }

    /// The field as text, when it is a scalar (otherwise a recorded problem).
    pub fn text(&self) -> Option<String> {
        let text = scalar_text(&self.node.value);
        if text.is_none() && self.node.value != Value::Null {
            self.problem(format!(
                "expected a single value, found {}",
                self.node.value.describe()
            ));
        }
        text
    }

    /// The field `key` as text.
    pub fn str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|o| o.text())
    }

    /// The field as a finite number (otherwise a recorded problem).
    pub fn number(&self) -> Option<f64> {
        let n = match &self.node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|f: &f64| f.is_finite());
        if n.is_none() {
            self.problem(format!(
                "expected a number, found {}",
                self.node.value.describe()
            ));
        }
        n
    }

    /// The field as a whole number from 0 to 2^64-1 (otherwise a recorded problem).
    pub fn uint(&self) -> Option<u64> {
        let n = match &self.node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        if n.is_none() {
            self.problem(format!(
                "expected a whole number of at least 0, found {}",
                self.node.value.describe()
            ));
        }
        n
    }

    /// The field as a boolean (otherwise a recorded problem).
    pub fn boolean(&self) -> Option<bool> {
        let b = match &self.node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => s.parse().ok(),
            _ => None,
        };
        if b.is_none() {
            self.problem(format!(
                "expected true or false, found {}",
                self.node.value.describe()
            ));
        }
        b
    }

    /// Records that this field has the wrong shape (an error: the source's own system
    /// would refuse it too).
    fn problem(&self, message: String) {
        let path = format!(
            "{}({}/{}).{}",
            self.res.kind, self.res.namespace, self.res.name, self.path
        );
        self.res.problems.borrow_mut().push(Report {
            file: self.res.file.to_string(),
            line: self.pos.line,
            col: self.pos.col,
            path,
            severity: Severity::Error,
            message,
        });
    }

    /// Whether the field is an empty mapping (`{}`), which some APIs give a meaning.
    pub fn is_empty_map(&self) -> bool {
        matches!(&self.node.value, Value::Map(e) if e.is_empty())
    }

    /// Reports `message` at this field.
    pub fn report(&self, reports: &mut Reports, severity: Severity, message: impl Into<String>) {
        let path = if self.path.is_empty() {
            self.res.title().replace(' ', "(") + ")"
        } else {
            format!(
                "{}({}/{}).{}",
                self.res.kind, self.res.namespace, self.res.name, self.path
            )
        };
        reports.push(Report {
            file: self.res.file.to_string(),
            line: self.pos.line,
            col: self.pos.col,
            path,
            severity,
            message: message.into(),
        });
    }

    /// Reports this field as something weir cannot express; `instead` says what happens.
    pub fn unsupported(&self, reports: &mut Reports, instead: impl Into<String>) {
        self.report(reports, Severity::Unsupported, instead);
    }

    /// Reports a note about how this field was translated.
    pub fn note(&self, reports: &mut Reports, message: impl Into<String>) {
        self.report(reports, Severity::Note, message);
    }

    /// Reports this field as invalid.
    pub fn error(&self, reports: &mut Reports, message: impl Into<String>) {
        self.report(reports, Severity::Error, message);
    }

    /// Reports every key of this mapping no translator took, as unsupported; `instead`
    /// says, for a key, what happens without it.
    pub fn finish(&self, reports: &mut Reports, instead: &dyn Fn(&str) -> String) {
        let entries = match &self.node.value {
            Value::Map(entries) => entries,
            Value::Null => return,
            other => {
                self.problem(format!("expected a mapping, found {}", other.describe()));
                return;
            }
        };
        let taken = self.taken.borrow();
        for entry in entries {
            if taken.contains(&entry.key) || entry.value.value == Value::Null {
                continue;
            }
            let child = Obj {
                res: self.res,
                node: &entry.value,
                pos: entry.key_pos,
                path: join(&self.path, &entry.key),
                taken: RefCell::default(),
            };
            child.unsupported(reports, instead(&entry.key));
        }
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}
