//! A renderer for the part of Helm's template language that `deploy/helm/weir` uses, written
//! when no `helm` binary could be had here. A real helm now renders the chart in the tests
//! too, and must produce the same documents; this renderer stays for its strictness: a value
//! the templates read that `values.yaml` does not define is an error (below).
//!
//! It is not Helm: it knows `define`, `include`, `if`/`else`, `with`, `range`, `:=`
//! variables, pipelines, parenthesised calls, the `{{-`/`-}}` trim markers, comments,
//! `.Values`, `.Release`, `.Chart`, `.Files.Get`, and the functions `default`, `trunc`,
//! `trimSuffix`, `contains`, `printf` (`%s`, `%d`), `replace`, `quote`, `toYaml`, `fromYaml`
//! and `nindent`. Anything else is an error naming it, never output, so a template that
//! starts using more of the language fails here until the renderer learns it. It is
//! stricter than Helm in one way, on purpose: a value the templates read that `values.yaml`
//! does not define is an error (Helm prints nothing), which checks that values and
//! templates agree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A chart directory: its templates parsed, its `define`d templates collected.
pub struct Chart {
    dir: PathBuf,
    chart: Value,
    defaults: Value,
    templates: Vec<(String, Vec<Node>)>,
    defines: HashMap<String, Vec<Node>>,
}

/// What the chart renders to: the manifest (as `helm template` prints it) and NOTES.txt.
pub struct Rendered {
    pub manifest: String,
    pub notes: String,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    Assign(String, Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    With(Pipeline, Vec<Node>),
    Range(Pipeline, Vec<Node>),
}

type Pipeline = Vec<Vec<Operand>>;

#[derive(Debug, Clone)]
enum Operand {
    Str(String),
    Int(i64),
    /// `.A.B` (base `None`), `$.A.B` (base `Some("")`) or `$name.A` (base `Some("name")`).
    Path(Option<String>, Vec<String>),
    Func(String),
    Paren(Pipeline),
}

impl Chart {
    /// Reads `dir/Chart.yaml`, `dir/values.yaml` and every file of `dir/templates`.
    pub fn load(dir: &Path) -> Result<Chart, String> {
        let read =
            |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
        let meta: Value = serde_saphyr::from_str(&read(dir.join("Chart.yaml"))?)
            .map_err(|e| format!("Chart.yaml: {e}"))?;
        let chart = Value::Object(Map::from_iter([
            ("Name".to_string(), meta["name"].clone()),
            ("Version".to_string(), meta["version"].clone()),
            ("AppVersion".to_string(), meta["appVersion"].clone()),
        ]));
        let defaults = serde_saphyr::from_str(&read(dir.join("values.yaml"))?)
            .map_err(|e| format!("values.yaml: {e}"))?;
        let mut names: Vec<String> = std::fs::read_dir(dir.join("templates"))
            .map_err(|e| format!("templates: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut templates = Vec::new();
        let mut defines = HashMap::new();
        for name in names {
            let text = read(dir.join("templates").join(&name))?;
            let nodes = parse(&text, &mut defines).map_err(|e| format!("{name}: {e}"))?;
            templates.push((name, nodes));
        }
        Ok(Chart {
            dir: dir.to_path_buf(),
            chart,
            defaults,
            templates,
            defines,
        })
    }

    /// Renders the chart as release `release` in `namespace`, with `values` (a values file's
    /// YAML, or empty) merged over values.yaml as `helm template -f` does.
    pub fn render(&self, release: &str, namespace: &str, values: &str) -> Result<Rendered, String> {
        let mut merged = self.defaults.clone();
        if !values.trim().is_empty() {
            let overrides: Value =
                serde_saphyr::from_str(values).map_err(|e| format!("values: {e}"))?;
            merge(&mut merged, overrides);
        }
        let root = Value::Object(Map::from_iter([
            ("Values".to_string(), merged),
            ("Chart".to_string(), self.chart.clone()),
            (
                "Release".to_string(),
                serde_json::json!({"Name": release, "Namespace": namespace, "Service": "Helm"}),
            ),
        ]));
        let mut manifest = String::new();
        let mut notes = String::new();
        for (name, nodes) in &self.templates {
            if name.starts_with('_') {
                continue;
            }
            let mut scope = Scope {
                dot: root.clone(),
                vars: HashMap::new(),
            };
            let out = self
                .exec(nodes, &mut scope, &root)
                .map_err(|e| format!("{name}: {e}"))?;
            if name == "NOTES.txt" {
                notes = out;
            } else if !out.trim().is_empty() {
                manifest.push_str(&format!(
                    "---\n# Source: {}/templates/{name}\n{out}\n",
                    print(&self.chart["Name"])?
                ));
            }
        }
        Ok(Rendered { manifest, notes })
    }

    fn exec(&self, nodes: &[Node], scope: &mut Scope, root: &Value) -> Result<String, String> {
        let mut out = String::new();
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Print(p) => out.push_str(&print(&self.eval(p, scope, root)?)?),
                Node::Assign(name, p) => {
                    let v = self.eval(p, scope, root)?;
                    scope.vars.insert(name.clone(), v);
                }
                Node::If(p, then, otherwise) => {
                    let branch = if truthy(&self.eval(p, scope, root)?) {
                        then
                    } else {
                        otherwise
                    };
                    out.push_str(&self.exec(branch, &mut scope.clone(), root)?);
                }
                Node::With(p, body) => {
                    let v = self.eval(p, scope, root)?;
                    if truthy(&v) {
                        let mut inner = scope.clone();
                        inner.dot = v;
                        out.push_str(&self.exec(body, &mut inner, root)?);
                    }
                }
                Node::Range(p, body) => match self.eval(p, scope, root)? {
                    Value::Array(items) => {
                        for item in items {
                            let mut inner = scope.clone();
                            inner.dot = item;
                            out.push_str(&self.exec(body, &mut inner, root)?);
                        }
                    }
                    Value::Null => return Err("range over a missing value".into()),
                    other => return Err(format!("range over {other} (only lists)")),
                },
            }
        }
        Ok(out)
    }

    fn eval(&self, pipeline: &Pipeline, scope: &Scope, root: &Value) -> Result<Value, String> {
        let mut piped: Option<Value> = None;
        for command in pipeline {
            let (head, rest) = command.split_first().ok_or("empty command")?;
            let func = match head {
                Operand::Func(f) => Some(f.as_str()),
                Operand::Path(None, fields) if fields == &["Files", "Get"] => Some("Files.Get"),
                _ => None,
            };
            let value = match func {
                Some(f) => {
                    let mut args = rest
                        .iter()
                        .map(|a| self.operand(a, scope, root))
                        .collect::<Result<Vec<_>, _>>()?;
                    args.extend(piped.take());
                    self.call(f, args)?
                }
                None if rest.is_empty() && piped.is_none() => self.operand(head, scope, root)?,
                None => return Err(format!("{head:?} is not a function")),
            };
            piped = Some(value);
        }
        piped.ok_or_else(|| "empty pipeline".to_string())
    }

    fn operand(&self, op: &Operand, scope: &Scope, root: &Value) -> Result<Value, String> {
        match op {
            Operand::Str(s) => Ok(Value::String(s.clone())),
            Operand::Int(i) => Ok(Value::from(*i)),
            Operand::Paren(p) => self.eval(p, scope, root),
            Operand::Func(f) => self.call(f, Vec::new()),
            Operand::Path(base, fields) => {
                let mut v = match base {
                    None => &scope.dot,
                    Some(name) if name.is_empty() => root,
                    Some(name) => scope
                        .vars
                        .get(name)
                        .ok_or_else(|| format!("undefined variable ${name}"))?,
                };
                for (i, f) in fields.iter().enumerate() {
                    v = v.get(f).ok_or_else(|| {
                        format!(
                            "{} is not defined (is it in values.yaml?)",
                            fields[..=i].join(".")
                        )
                    })?;
                }
                Ok(v.clone())
            }
        }
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        let want = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!("{name} takes {n} arguments, got {}", args.len()))
            }
        };
        let s = |v: &Value| print(v);
        Ok(match name {
            "default" => {
                want(2)?;
                if truthy(&args[1]) {
                    args[1].clone()
                } else {
                    args[0].clone()
                }
            }
            "trunc" => {
                want(2)?;
                let n = args[0].as_u64().ok_or("trunc takes a length")? as usize;
                Value::String(s(&args[1])?.chars().take(n).collect())
            }
            "trimSuffix" => {
                want(2)?;
                let (suffix, text) = (s(&args[0])?, s(&args[1])?);
                Value::String(text.strip_suffix(&suffix).unwrap_or(&text).to_string())
            }
            "contains" => {
                want(2)?;
                Value::Bool(s(&args[1])?.contains(&s(&args[0])?))
            }
            "replace" => {
                want(3)?;
                Value::String(s(&args[2])?.replace(&s(&args[0])?, &s(&args[1])?))
            }
            "printf" => {
                let (format, values) = args.split_first().ok_or("printf needs a format")?;
                let mut values = values.iter();
                let mut out = String::new();
                let mut chars = s(format)?.chars().collect::<Vec<_>>().into_iter();
                while let Some(c) = chars.next() {
                    if c != '%' {
                        out.push(c);
                        continue;
                    }
                    match chars.next() {
                        Some('s') | Some('d') => {
                            out.push_str(&s(values.next().ok_or("printf: too few values")?)?)
                        }
                        other => return Err(format!("printf verb %{other:?} is not supported")),
                    }
                }
                Value::String(out)
            }
            "quote" => {
                want(1)?;
                Value::String(Value::String(s(&args[0])?).to_string())
            }
            "toYaml" => {
                want(1)?;
                let yaml = serde_saphyr::to_string(&args[0]).map_err(|e| e.to_string())?;
                Value::String(yaml.trim_end_matches('\n').to_string())
            }
            "fromYaml" => {
                want(1)?;
                serde_saphyr::from_str(&s(&args[0])?).map_err(|e| format!("fromYaml: {e}"))?
            }
            "nindent" => {
                want(2)?;
                let n = args[0].as_u64().ok_or("nindent takes a width")? as usize;
                let pad = " ".repeat(n);
                Value::String(format!(
                    "\n{pad}{}",
                    s(&args[1])?.replace('\n', &format!("\n{pad}"))
                ))
            }
            "include" => {
                want(2)?;
                let name = s(&args[0])?;
                let body = self
                    .defines
                    .get(&name)
                    .ok_or_else(|| format!("no template {name:?} is defined"))?;
                let mut scope = Scope {
                    dot: args[1].clone(),
                    vars: HashMap::new(),
                };
                // An included template's `$` is the value it was given, as in Go.
                Value::String(self.exec(body, &mut scope, &args[1])?)
            }
            "Files.Get" => {
                want(1)?;
                let path = self.dir.join(s(&args[0])?);
                Value::String(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("{}: {e}", path.display()))?,
                )
            }
            other => return Err(format!("the function {other:?} is not supported here")),
        })
    }
}

#[derive(Clone)]
struct Scope {
    dot: Value,
    vars: HashMap<String, Value>,
}

/// Go's notion of truth: false, 0, nil and empty strings, lists and maps are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn print(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("cannot print {other} (use toYaml)")),
    }
}

/// `overrides` over `base`: maps merge key by key, anything else replaces.
fn merge(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

enum Piece {
    Text(String),
    Action(String),
}

/// Splits `text` into text and actions, applying the trim markers and dropping comments.
fn lex(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("an action is not closed with }}")?;
        let mut action = &after[..end];
        if let Some(a) = action.strip_prefix("- ") {
            before = before.trim_end();
            action = a;
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix(" -") {
            trim_next = true;
            action = a;
        }
        pieces.push(Piece::Text(before.to_string()));
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            pieces.push(Piece::Action(action.to_string()));
        }
        rest = &after[end + 2..];
    }
    pieces.push(Piece::Text(if trim_next {
        rest.trim_start().to_string()
    } else {
        rest.to_string()
    }));
    Ok(pieces)
}

/// Parses a template file; its `define`s go to `defines`.
fn parse(text: &str, defines: &mut HashMap<String, Vec<Node>>) -> Result<Vec<Node>, String> {
    let pieces = lex(text)?;
    let mut it = pieces.into_iter();
    let (nodes, end) = block(&mut it, defines)?;
    match end {
        None => Ok(nodes),
        Some(e) => Err(format!("unexpected {{{{ {e} }}}}")),
    }
}

/// Nodes up to an `end` or `else` (returned) or the end of the file (`None`).
fn block(
    it: &mut std::vec::IntoIter<Piece>,
    defines: &mut HashMap<String, Vec<Node>>,
) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some(piece) = it.next() {
        let action = match piece {
            Piece::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t));
                }
                continue;
            }
            Piece::Action(a) => a,
        };
        let tokens = tokenize(&action)?;
        let keyword = tokens.first().map(String::as_str).unwrap_or("");
        match keyword {
            "end" | "else" if tokens.len() == 1 => return Ok((nodes, Some(keyword.to_string()))),
            "define" => {
                let name = unquote(tokens.get(1).ok_or("define needs a name")?)?;
                let (body, end) = block(it, defines)?;
                if end.as_deref() != Some("end") {
                    return Err(format!("define {name:?} has no end"));
                }
                defines.insert(name, body);
            }
            "if" => {
                let cond = pipeline(&tokens[1..])?;
                let (then, end) = block(it, defines)?;
                let otherwise = match end.as_deref() {
                    Some("else") => match block(it, defines)? {
                        (nodes, Some(e)) if e == "end" => nodes,
                        _ => return Err("if … else has no end".into()),
                    },
                    Some("end") => Vec::new(),
                    _ => return Err("if has no end".into()),
                };
                nodes.push(Node::If(cond, then, otherwise));
            }
            "with" | "range" => {
                let value = pipeline(&tokens[1..])?;
                let (body, end) = block(it, defines)?;
                if end.as_deref() != Some("end") {
                    return Err(format!("{keyword} has no end (else is not supported)"));
                }
                nodes.push(if keyword == "with" {
                    Node::With(value, body)
                } else {
                    Node::Range(value, body)
                });
            }
            "else" | "end" | "template" | "block" | "break" | "continue" => {
                return Err(format!("{{{{ {action} }}}} is not supported"))
            }
            _ if tokens.get(1).map(String::as_str) == Some(":=") => {
                let name = tokens[0]
                    .strip_prefix('$')
                    .ok_or("only $variables can be declared")?;
                nodes.push(Node::Assign(name.to_string(), pipeline(&tokens[2..])?));
            }
            _ => nodes.push(Node::Print(pipeline(&tokens)?)),
        }
    }
    Ok((nodes, None))
}

/// Words, string literals (kept quoted), `(`, `)`, `|` and `:=`.
fn tokenize(action: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            let mut s = String::from('"');
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => {
                        s.push('\\');
                        s.push(chars.next().ok_or("unterminated string")?);
                    }
                    Some('"') => break,
                    Some(ch) => s.push(ch),
                    None => return Err("unterminated string".into()),
                }
            }
            s.push('"');
            tokens.push(s);
        } else if c == '(' || c == ')' || c == '|' {
            tokens.push(c.to_string());
            chars.next();
        } else {
            let mut word = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || "()|\"".contains(ch) {
                    break;
                }
                word.push(ch);
                chars.next();
            }
            tokens.push(word);
        }
    }
    Ok(tokens)
}

fn unquote(token: &str) -> Result<String, String> {
    serde_json::from_str::<String>(token).map_err(|_| format!("{token} is not a string"))
}

fn pipeline(tokens: &[String]) -> Result<Pipeline, String> {
    let mut commands = vec![Vec::new()];
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let operand = match t {
            "|" => {
                commands.push(Vec::new());
                i += 1;
                continue;
            }
            "(" => {
                let mut depth = 0;
                let close = (i..tokens.len())
                    .find(|&j| {
                        match tokens[j].as_str() {
                            "(" => depth += 1,
                            ")" => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .ok_or("unbalanced (")?;
                let inner = pipeline(&tokens[i + 1..close])?;
                i = close;
                Operand::Paren(inner)
            }
            ")" => return Err("unbalanced )".into()),
            _ if t.starts_with('"') => Operand::Str(unquote(t)?),
            _ if t.starts_with('.') => Operand::Path(
                None,
                t[1..]
                    .split('.')
                    .filter(|f| !f.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            _ if t.starts_with('$') => {
                let mut parts = t[1..].split('.');
                let name = parts.next().unwrap_or("").to_string();
                Operand::Path(Some(name), parts.map(String::from).collect())
            }
            _ if t.parse::<i64>().is_ok() => Operand::Int(t.parse().map_err(|_| "number")?),
            _ if t.chars().all(|c| c.is_ascii_alphanumeric()) => Operand::Func(t.to_string()),
            _ => return Err(format!("{t:?} is not understood")),
        };
        commands.last_mut().ok_or("empty")?.push(operand);
        i += 1;
    }
    if commands.iter().any(Vec::is_empty) {
        return Err("an empty command in a pipeline".into());
    }
    Ok(commands)
}
