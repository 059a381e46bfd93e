//! `weir alerts`: the rule file of every example configuration passes `promtool check rules`;
//! the checked-in example rules (`deploy/prometheus/weir-alerts.yaml`) are what `weir alerts`
//! prints now, and their promtool unit tests show every alert firing on a failing series and
//! silent on a healthy one; the rules read only documented metrics; bad options and invalid
//! configurations exit 1 with the reason.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::{scratch_dir, weir_bounded};

/// The configuration the checked-in rules are generated from.
const EXAMPLE_CONFIG: &str = "deploy/prometheus/weir.yaml";
/// The checked-in rules.
const EXAMPLE_RULES: &str = "deploy/prometheus/weir-alerts.yaml";
/// promtool unit tests of the checked-in rules.
const UNIT_TESTS: &str = "deploy/prometheus/tests/weir-alerts.test.yaml";

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs `promtool ARGS` from the crate root.
fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("promtool is installed (scripts/test installs the prometheus package)")
}

/// `weir alerts ARGS`, which must succeed; its stdout.
fn alerts(args: &[&str]) -> String {
    let out = weir_bounded(&[&["alerts"], args].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "weir alerts {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 rules")
}

/// The names of a rule file's rules of one kind (`alert` or `record`), in order.
fn rule_names(rules: &str, kind: &str) -> Vec<String> {
    let prefix = format!("- {kind}: ");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn rules_of_every_example_configuration_pass_promtool_check_rules() {
    let dir = scratch_dir("alerts-check");
    for config in ["examples/reference.yaml", EXAMPLE_CONFIG] {
        let rules = alerts(&["-c", config]);
        let count = rule_names(&rules, "alert").len() + rule_names(&rules, "record").len();
        assert!(count >= 20, "{config}: only {count} rules:\n{rules}");
        let file = dir.join("rules.yaml");
        std::fs::write(&file, &rules).expect("write the rules");
        let out = promtool(&["check", "rules", &file.to_string_lossy()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("SUCCESS: {count} rules found")),
            "{config}: promtool check rules said:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_checked_in_rules_are_what_weir_alerts_prints_now() {
    let now = alerts(&["-c", EXAMPLE_CONFIG]);
    assert!(
        now == read(EXAMPLE_RULES),
        "{EXAMPLE_RULES} is out of date; regenerate it with\n  \
         weir alerts -c {EXAMPLE_CONFIG} -o {EXAMPLE_RULES}\n\
         and update {UNIT_TESTS} to match"
    );
}

#[test]
fn promtool_unit_tests_show_every_alert_firing_and_silent() {
    let tests: serde_json::Value =
        serde_saphyr::from_str(&read(UNIT_TESTS)).expect("the unit tests are YAML");
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().cloned().unwrap_or_default())
    {
        let name = case["alertname"].as_str().expect("alertname").to_string();
        let fires = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
        if fires {
            firing.insert(name);
        } else {
            silent.insert(name);
        }
    }
    let alerts = rule_names(&read(EXAMPLE_RULES), "alert");
    assert_eq!(alerts.len(), 9, "{alerts:?}");
    for alert in &alerts {
        assert!(firing.contains(alert), "no case where {alert} fires");
        assert!(silent.contains(alert), "no case where {alert} stays silent");
    }
    let out = promtool(&["test", "rules", UNIT_TESTS]);
    assert!(
        out.status.success(),
        "promtool test rules {UNIT_TESTS}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_rules_read_only_documented_metrics() {
    let documented = read("docs/metrics.md");
    let rules = read(EXAMPLE_RULES);
    let mut used = BTreeSet::new();
    for (i, _) in rules.match_indices("weir_") {
        let name: String = rules[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // A histogram's series are documented under the histogram's name.
        let name = name.strip_suffix("_bucket").unwrap_or(&name).to_string();
        used.insert(name);
    }
    assert!(used.len() >= 8, "{used:?}");
    let missing: Vec<&String> = used
        .iter()
        .filter(|m| !documented.contains(&format!("`{m}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}

#[test]
fn output_file_holds_what_stdout_would() {
    let file = scratch_dir("alerts-out").join("weir-alerts.yaml");
    let path = file.to_string_lossy();
    let out = alerts(&["-c", EXAMPLE_CONFIG, "-o", &path]);
    assert_eq!(out, "", "nothing on stdout with -o");
    let written = std::fs::read_to_string(&file).expect("the rules were written");
    assert_eq!(written, alerts(&["-c", EXAMPLE_CONFIG]));
}

#[test]
fn flags_set_the_slo_and_the_latency_threshold() {
    let rules = alerts(&[
        "-c",
        EXAMPLE_CONFIG,
        "--slo",
        "99.5",
        "--p99-latency",
        "250ms",
    ]);
    assert!(rules.contains(&format!(
        "#   weir alerts -c {EXAMPLE_CONFIG} --slo 99.5 --p99-latency 250ms\n"
    )));
    assert!(rules.contains("(1 - weir:service_success_ratio:rate1h) > (14.4 * 0.005)"));
    assert!(rules.contains("(1 - weir:service_success_ratio:rate3d) > (1 * 0.005)"));
    assert!(rules.contains("weir:service_latency_p99_seconds:rate5m > 0.25\n"));
    assert!(!rules.contains("0.001)") && !rules.contains("> 0.5\n"));
}

#[test]
fn bad_options_exit_1_with_the_reason() {
    for (args, says) in [
        (
            vec!["--slo", "100"],
            "invalid value '100' for '--slo <PERCENT>': `100` leaves no error budget; the \
             target must be below 100",
        ),
        (
            vec!["--slo", "ninety-nine"],
            "`ninety-nine` is not a percentage; write the percentage of requests that must \
             succeed, such as `99.9`",
        ),
        (
            vec!["--slo", "90"],
            "`90` is too low: its error budget of 10% burnt 14.4x is more failures than \
             requests",
        ),
        (
            vec!["--p99-latency", "45s"],
            "invalid value '45s' for '--p99-latency <DURATION>': `45s` is not below 30s",
        ),
        (
            vec!["--p99-latency", "500"],
            "`500` has no unit; did you mean `500s`?",
        ),
        (vec!["--frobnicate"], "unexpected argument '--frobnicate'"),
    ] {
        let out = weir_bounded(&[&["alerts", "-c", EXAMPLE_CONFIG], &args[..]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: printed rules");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn an_invalid_configuration_exits_1_with_the_diagnostics_of_check() {
    let rel = "tests/fixtures/config/invalid/bad_enum_load_balancer.yaml";
    let check = weir_bounded(&["check", rel]);
    let out = weir_bounded(&["alerts", "-c", rel]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.starts_with(&format!("{rel}:")), "{stderr}");
    assert_eq!(stderr, String::from_utf8_lossy(&check.stderr));

    let out = weir_bounded(&["alerts", "-c", "no/such/weir.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .starts_with("no/such/weir.yaml: cannot read the configuration:"));
}
