//! Reading metrics back from the Prometheus / OpenMetrics text format that `/metrics` serves.
//!
//! weir writes its metrics with prometheus-client; this is the other direction, for code
//! that reads what weir counted: the demo's summary, and the integration tests. It reads
//! sample lines only: `# HELP`, `# TYPE`, `# EOF` and other comments are skipped, and so are
//! lines that do not parse. Histogram series (`_bucket`, `_sum`, `_count`) are samples like
//! any other, each under its own name.

/// One sample line: `name{label="value",...} value [timestamp] [# exemplar]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name as written, suffix included (`weir_http_requests_total`,
    /// `weir_http_request_duration_seconds_bucket`).
    pub name: String,
    /// Label names and values, unescaped, in the order written.
    pub labels: Vec<(String, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

// === impl Sample ===

impl Sample {
    /// The value of label `name`, or `""` when absent (as Prometheus treats a missing label).
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Whether every `(name, value)` pair of `wanted` is one of this sample's labels.
    fn has_labels(&self, wanted: &[(&str, &str)]) -> bool {
        wanted
            .iter()
            .all(|(name, value)| self.label(name) == *value)
    }
}

/// Every sample in `text`, in order; comments and lines that do not parse are skipped.
pub fn parse(text: &str) -> impl Iterator<Item = Sample> + '_ {
    text.lines().filter_map(parse_line)
}

/// The sum of the samples named `name` that carry every label pair in `labels` (other
/// labels may differ): e.g. all requests of one route, over every code and endpoint.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse(text)
        .filter(|s| s.name == name && s.has_labels(labels))
        .map(|s| s.value)
        .sum()
}

/// Parses one sample line; `None` for comments, blank lines and malformed samples.
fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim_start();
    let name_len = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    if name_len == 0 || line.starts_with(|c: char| c.is_ascii_digit()) {
        return None; // a comment (`#`), a blank line, or no metric name
    }
    let (name, rest) = line.split_at(name_len);
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => parse_labels(inner)?,
        None => (Vec::new(), rest),
    };
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    // Anything after the value is a timestamp or an exemplar (` # {...} value`).
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (the text after `{`); returns the labels and the text after `}`.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once('=')?;
        let quoted = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i + 1,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim().to_string(), value));
        rest = quoted[end..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples_named(text: &str, name: &str) -> Vec<Sample> {
        parse(text).filter(|s| s.name == name).collect()
    }

    const REQUESTS: &str = r#"# HELP weir_http_requests HTTP requests completed.
# TYPE weir_http_requests counter
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v1",endpoint="127.0.0.1:1001",code="200",error="none"} 700
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v1",endpoint="127.0.0.1:1002",code="200",error="none"} 200
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="127.0.0.1:1003",code="200",error="none"} 98
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="127.0.0.1:1003",code="503",error="circuit_open"} 2
weir_http_requests_total{listener="other",route="r",service="x",endpoint="127.0.0.1:9",code="200",error="none"} 5
weir_http_requests_in_flight{service="reviews-v1",endpoint="127.0.0.1:1001"} 0
weir_http_requests_total_created{listener="demo"} 1
# EOF
"#;

    #[test]
    fn parser_reads_labels_and_values_of_one_metric_only() {
        let samples = samples_named(REQUESTS, "weir_http_requests_total");
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[3].label("error"), "circuit_open");
        assert_eq!(samples[3].label("code"), "503");
        assert_eq!(samples[3].value, 2.0);
        assert_eq!(samples[0].label("missing"), "");
    }

    #[test]
    fn parser_unescapes_values_and_ignores_exemplars_and_junk() {
        let text = concat!(
            "m{a=\"x\\\"y\",b=\"p\\\\q\",c=\"1\\n2\"} 3 # {trace_id=\"abc\"} 0.1\n",
            "m 7\n",
            "m{a=\"unterminated} 1\n",
            "m{a=\"x\"} not-a-number\n",
            "mm{a=\"x\"} 9\n",
        );
        let samples = samples_named(text, "m");
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].label("a"), "x\"y");
        assert_eq!(samples[0].label("b"), "p\\q");
        assert_eq!(samples[0].label("c"), "1\n2");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(
            samples[1],
            Sample {
                name: "m".into(),
                labels: vec![],
                value: 7.0
            }
        );
    }

    #[test]
    fn comments_and_blank_lines_are_not_samples() {
        let text = "# HELP m A counter.\n# TYPE m counter\n\n   \n# EOF\n";
        assert_eq!(parse(text).count(), 0);
    }

    #[test]
    fn histogram_series_keep_their_suffix_and_infinite_bounds_parse() {
        let text = concat!(
            "# TYPE d histogram\n",
            "d_bucket{le=\"0.1\"} 3\n",
            "d_bucket{le=\"+Inf\"} 5\n",
            "d_sum 0.75\n",
            "d_count 5\n",
            "g +Inf\n",
            "h -Inf\n",
            "n NaN\n",
        );
        let names: Vec<String> = parse(text).map(|s| s.name).collect();
        assert_eq!(
            names,
            ["d_bucket", "d_bucket", "d_sum", "d_count", "g", "h", "n"]
        );
        let buckets = samples_named(text, "d_bucket");
        assert_eq!(buckets[1].label("le"), "+Inf");
        assert_eq!(buckets[1].value, 5.0);
        assert_eq!(metric_sum(text, "d_sum", &[]), 0.75);
        assert_eq!(metric_sum(text, "g", &[]), f64::INFINITY);
        assert_eq!(metric_sum(text, "h", &[]), f64::NEG_INFINITY);
        assert!(metric_sum(text, "n", &[]).is_nan());
    }

    #[test]
    fn timestamps_and_openmetrics_exemplars_after_the_value_are_ignored() {
        let text = concat!(
            "c_total{a=\"1\"} 4 1700000000000\n",
            "d_bucket{le=\"0.5\"} 12 # {trace_id=\"4bf92f\"} 0.31 1700000000.123\n",
        );
        assert_eq!(metric_sum(text, "c_total", &[("a", "1")]), 4.0);
        assert_eq!(metric_sum(text, "d_bucket", &[("le", "0.5")]), 12.0);
    }

    #[test]
    fn metric_sum_adds_the_samples_carrying_every_label_asked_for() {
        let total = "weir_http_requests_total";
        assert_eq!(metric_sum(REQUESTS, total, &[]), 1005.0);
        assert_eq!(metric_sum(REQUESTS, total, &[("listener", "demo")]), 1000.0);
        assert_eq!(
            metric_sum(REQUESTS, total, &[("code", "200"), ("route", "reviews")]),
            998.0
        );
        // An empty value matches the label written empty, and a label not written at all.
        assert_eq!(metric_sum(REQUESTS, total, &[("error", "none")]), 1003.0);
        assert_eq!(metric_sum(REQUESTS, total, &[("zone", "")]), 1005.0);
        // Values are compared whole, not as substrings.
        assert_eq!(metric_sum(REQUESTS, total, &[("service", "reviews")]), 0.0);
        assert_eq!(metric_sum(REQUESTS, "weir_nothing", &[]), 0.0);
    }
}
