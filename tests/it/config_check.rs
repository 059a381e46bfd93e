//! `weir check`: every invalid fixture prints exactly its `# expect:` lines and exits 1, and
//! `weir run -c` answers the same; the reference example passes with its not-enforced
//! warnings; a missing file exits 2. (Files that are not regular files or are too large are
//! in `hostile::config_files`.)

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{assert_unreadable_config, weir_bounded};

const FIXTURES: &str = "tests/fixtures/config/invalid";

/// Runs `weir check <rel>` from the crate root.
fn weir_check(rel: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", rel])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run weir check")
}

/// Fixture paths relative to the crate root, sorted.
fn fixtures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURES);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture directory")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| format!("{FIXTURES}/{n}"))
        .collect();
    names.sort();
    names
}

/// Lines of `text` that are diagnostics about `rel`: `rel:LINE:COL: …`.
fn diagnostic_lines(text: &str, rel: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(rel)
                .and_then(|r| r.strip_prefix(':'))
                .and_then(|r| r.split_once(':'))
                .and_then(|(line, r)| r.split_once(':').map(|(col, _)| (line, col)))
                .is_some_and(|(line, col)| {
                    line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok()
                })
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn there_are_at_least_30_invalid_fixtures() {
    let n = fixtures().len();
    assert!(n >= 30, "only {n} fixtures in {FIXTURES}");
}

#[test]
fn every_invalid_fixture_prints_its_expected_errors_and_exits_1() {
    let mut failures = Vec::new();
    for rel in fixtures() {
        // Lossy: a fixture may hold invalid UTF-8 on purpose (after its `# expect:` lines).
        let bytes =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel)).expect("readable");
        let expected: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        assert!(!expected.is_empty(), "{rel} has no `# expect:` lines");
        let out = weir_check(&rel);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let actual = diagnostic_lines(&stderr, &rel);
        if out.status.code() != Some(1) || actual != expected {
            failures.push(format!(
                "{rel}: exit {:?}\n  expected:\n    {}\n  stderr:\n    {}",
                out.status.code(),
                expected.join("\n    "),
                stderr.lines().collect::<Vec<_>>().join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn weir_run_refuses_every_invalid_fixture_like_check_before_binding_anything() {
    let mut failures = Vec::new();
    for rel in fixtures() {
        let check = weir_check(&rel);
        let run = weir_bounded(&["run", "-c", &rel]);
        let check_lines = diagnostic_lines(&String::from_utf8_lossy(&check.stderr), &rel);
        let run_stderr = String::from_utf8_lossy(&run.stderr);
        // Nothing was started: no log line, only the diagnostics.
        if run.status.code() != Some(1) || run_stderr.lines().collect::<Vec<_>>() != check_lines {
            failures.push(format!(
                "{rel}: run exit {:?}\n  check said:\n    {}\n  run said:\n    {}",
                run.status.code(),
                check_lines.join("\n    "),
                run_stderr.lines().collect::<Vec<_>>().join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reference_example_passes_without_warnings() {
    let rel = "examples/reference.yaml";
    let out = weir_check(rel);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");

    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("readable");
    let loaded =
        weir::config::load_str(rel, &text).expect("the library accepts the reference example");
    let expected: Vec<String> = loaded
        .warnings
        .iter()
        .map(|w| {
            format!(
                "{}:{}:{}: {}: warning: {}",
                w.file, w.line, w.col, w.path, w.message
            )
        })
        .collect();
    // Every section is enforced (Kubernetes discovery and transparent mode were the last):
    // the reference example, which uses every key, loads without a warning.
    assert_eq!(expected, Vec::<String>::new());
    assert_eq!(diagnostic_lines(&stderr, rel), expected);
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("{rel}: ok (4 listeners, 5 services)")),
        "stdout:\n{stdout}"
    );
}

#[test]
fn an_unreadable_file_exits_2() {
    assert_unreadable_config(
        "tests/fixtures/config/no-such-file.yaml",
        "No such file or directory (os error 2)",
    );
}
