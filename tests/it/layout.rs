//! The source layout keeps its promises: no import cycle between modules of `src/`, and
//! dependencies point the way the request flows (`proxy -> route -> upstream -> discovery`;
//! `config` knows nothing of the proxy; `telemetry` never calls back into the path).
//!
//! Imports are read from the source text (`use crate::…`, `use super::…`, `use child::…`
//! and paths written inline), outside `#[cfg(test)]` modules: tests may reach anywhere. A
//! child module using its parent's items is not counted as depending on the parent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every module of `src/` (by path, `upstream::h1`) with its source file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).expect("under src");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            (parts.join("::"), file)
        })
        .collect()
}

/// The module a path such as `super::pool::Checkout` names, seen from module `from`.
fn resolve(from: &str, path: &str, modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    match segments.first().copied() {
        Some("crate") => {
            base.clear();
            segments.remove(0);
        }
        Some("super") => {
            while segments.first() == Some(&"super") {
                base.pop();
                segments.remove(0);
            }
        }
        _ => return None,
    }
    (1..=segments.len()).rev().find_map(|n| {
        let candidate = base
            .iter()
            .chain(&segments[..n])
            .copied()
            .collect::<Vec<_>>()
            .join("::");
        modules.contains_key(&candidate).then_some(candidate)
    })
}

/// Module → modules it imports (outside tests).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let mut graph = BTreeMap::new();
    for (name, file) in &modules {
        let text = std::fs::read_to_string(file).expect("readable");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut targets = BTreeSet::new();
        for (i, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let path = path.trim_end_matches(':');
            // `use super::{a, b}`: each name may be a module of its own.
            let rest = &code[i + path.len()..];
            let mut paths = vec![path.to_string()];
            if let Some(group) = rest.strip_prefix("::{") {
                let group = group.split('}').next().unwrap_or_default();
                for item in group.split(',') {
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !item.is_empty() {
                        paths.push(format!("{path}::{item}"));
                    }
                }
            }
            for p in paths {
                if let Some(target) = resolve(name, &p, &modules) {
                    // A child using its parent's items (re-exports of siblings, mostly)
                    // is how Rust modules nest, not a dependency back up.
                    let ancestor = name.starts_with(&format!("{target}::"));
                    if &target != name && !target.is_empty() && !ancestor {
                        targets.insert(target);
                    }
                }
            }
        }
        // `use child::…` and `pub use child::…`: a module re-exporting its own child.
        for (i, _) in code.match_indices("use ") {
            let first: String = code[i + 4..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let child = if name.is_empty() {
                first.clone()
            } else {
                format!("{name}::{first}")
            };
            if !first.is_empty() && modules.contains_key(&child) {
                targets.insert(child);
            }
        }
        graph.insert(name.clone(), targets);
    }
    graph
}

/// The modules on one import cycle, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_of_src_imports_itself_through_others() {
    let graph = imports();
    assert!(graph.len() > 40, "found only {} modules", graph.len());
    assert!(
        graph["upstream::exchange"].contains("upstream::pool"),
        "the scan sees imports"
    );
    assert_eq!(find_cycle(&graph), None);
}

#[test]
fn dependencies_point_the_way_the_request_flows() {
    // Each area may not import the areas listed after it.
    let forbidden: [(&str, &[&str]); 6] = [
        (
            "discovery",
            &["upstream", "route", "proxy", "admin", "server"],
        ),
        (
            "upstream",
            &["route", "proxy", "admin", "server", "snapshot"],
        ),
        ("route", &["proxy", "admin", "server", "snapshot"]),
        (
            "config",
            &["proxy", "route", "upstream", "discovery", "server", "admin"],
        ),
        (
            "telemetry",
            &["proxy", "route", "upstream", "server", "admin"],
        ),
        ("error", &["proxy", "route", "upstream", "server", "admin"]),
    ];
    let graph = imports();
    let area = |module: &str| module.split("::").next().unwrap_or_default().to_string();
    let mut wrong = Vec::new();
    for (module, targets) in &graph {
        for (from, not) in &forbidden {
            if area(module) != *from {
                continue;
            }
            for target in targets {
                if not.contains(&area(target).as_str()) {
                    wrong.push(format!("{module} -> {target}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the flow: {wrong:?}");
}
