//! A Prometheus rule file as plain data, and the one place it becomes YAML.
//!
//! Written by hand rather than through a YAML serializer so that the file reads well and never
//! changes between runs: expressions are literal blocks (PromQL as an operator would type it,
//! backslashes and quotes untouched), annotations are double-quoted strings.

use std::fmt::Write as _;

/// A rule group: rules Prometheus evaluates together, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    /// The group's name, unique in the file.
    pub name: &'static str,
    /// The rules, in evaluation order.
    pub rules: Vec<Rule>,
}

#[cfg(test)]
impl Group {
    /// The names of the group's alerts, in order (recording rules left out).
    pub fn alert_names(&self) -> Vec<&'static str> {
        self.rules
            .iter()
            .filter_map(|r| match r {
                Rule::Alert(a) => Some(a.name),
                Rule::Record { .. } => None,
            })
            .collect()
    }
}

/// A recording or an alerting rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rule {
    /// Stores an expression's result as a new series, named `record`.
    Record {
        /// The recorded metric's name (`weir:service_success_ratio:rate5m`).
        record: String,
        /// PromQL.
        expr: String,
    },
    /// Fires for every series `expr` returns (for `for_` in a row).
    Alert(Alert),
}

/// How soon a human has to act on an alert: the label Alertmanager routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    /// Users are failing now or will be within hours: wake someone.
    Page,
    /// Needs a person within a working day.
    Ticket,
    /// Worth knowing; context for the other alerts.
    Warning,
}

impl Severity {
    /// The `severity` label's value.
    fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
            Severity::Warning => "warning",
        }
    }
}

/// An alerting rule with weir's labels and annotations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alert {
    /// The alert's name (`WeirCircuitBreakerOpen`).
    pub name: &'static str,
    /// PromQL; every series it returns is an alert.
    pub expr: String,
    /// How long `expr` must hold before the alert fires (`1m`), if at all.
    pub for_: Option<&'static str>,
    /// How soon to act.
    pub severity: Severity,
    /// One line for the notification's title.
    pub summary: String,
    /// What happened and what to check: admin endpoint, metric, configuration field.
    pub description: String,
}

/// The rule file: a comment saying how it was made, then the groups.
pub(crate) fn render(header: &str, groups: &[Group]) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if groups.is_empty() {
        out.push_str("groups: []\n");
        return out;
    }
    out.push_str("groups:\n");
    for group in groups {
        let _ = writeln!(out, "  - name: {}", group.name);
        out.push_str("    rules:\n");
        for rule in &group.rules {
            match rule {
                Rule::Record { record, expr } => {
                    let _ = writeln!(out, "      - record: {record}");
                    write_expr(&mut out, expr);
                }
                Rule::Alert(a) => {
                    let _ = writeln!(out, "      - alert: {}", a.name);
                    write_expr(&mut out, &a.expr);
                    if let Some(d) = a.for_ {
                        let _ = writeln!(out, "        for: {d}");
                    }
                    out.push_str("        labels:\n");
                    let _ = writeln!(out, "          severity: {}", a.severity.as_str());
                    out.push_str("        annotations:\n");
                    let _ = writeln!(out, "          summary: {}", quoted(&a.summary));
                    let _ = writeln!(out, "          description: {}", quoted(&a.description));
                }
            }
        }
    }
    out
}

/// `expr:` as a literal block, each line indented under the key.
fn write_expr(out: &mut String, expr: &str) {
    out.push_str("        expr: |\n");
    for line in expr.trim().lines() {
        let _ = writeln!(out, "          {}", line.trim_end());
    }
}

/// A YAML double-quoted scalar: JSON's string syntax is valid YAML.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_render_as_a_prometheus_rule_file() {
        let groups = [Group {
            name: "weir-test",
            rules: vec![
                Rule::Record {
                    record: "weir:x:rate5m".into(),
                    expr: "sum by (service) (\n  rate(x{service=~\"a\\\\.b\"}[5m])\n)\n".into(),
                },
                Rule::Alert(Alert {
                    name: "WeirX",
                    expr: "weir:x:rate5m > 1".into(),
                    for_: Some("1m"),
                    severity: Severity::Ticket,
                    summary: "{{ $labels.service }} is \"x\"".into(),
                    description: "check /services".into(),
                }),
            ],
        }];
        let expected = r#"# made by a test
# second line
groups:
  - name: weir-test
    rules:
      - record: weir:x:rate5m
        expr: |
          sum by (service) (
            rate(x{service=~"a\\.b"}[5m])
          )
      - alert: WeirX
        expr: |
          weir:x:rate5m > 1
        for: 1m
        labels:
          severity: ticket
        annotations:
          summary: "{{ $labels.service }} is \"x\""
          description: "check /services"
"#;
        assert_eq!(render("made by a test\nsecond line", &groups), expected);
    }

    #[test]
    fn a_file_without_rules_is_still_a_rule_file() {
        assert_eq!(render("h", &[]), "# h\ngroups: []\n");
    }
}
