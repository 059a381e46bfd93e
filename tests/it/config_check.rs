//! `weir check`: every invalid fixture prints exactly its `# expect:` lines and exits 1, and
//! `weir run -c` answers the same; the reference example passes with its not-enforced
//! warnings; files that are not regular files or are too large are refused at once (exit 2).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::scratch_dir;

const FIXTURES: &str = "tests/fixtures/config/invalid";

/// Runs `weir check <rel>` from the crate root.
fn weir_check(rel: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", rel])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run weir check")
}

/// Runs `weir ARGS` from the crate root, killed (and the test failed) after 10 s: a hostile
/// file must be refused promptly, never block the command.
fn weir_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run weir");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait for weir").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`weir {}` still running after 10 s", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("weir output")
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

/// `weir check PATH` and `weir run -c PATH` both exit 2 with exactly `PATH: cannot read the
/// configuration: REASON`, promptly.
fn assert_refused(path: &str, reason: &str) {
    let expected = format!("{path}: cannot read the configuration: {reason}");
    for args in [vec!["check", path], vec!["run", "-c", path]] {
        let out = weir_bounded(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            (out.status.code(), stderr.trim_end()),
            (Some(2), expected.as_str()),
            "weir {}",
            args.join(" ")
        );
    }
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = scratch_dir("fifo");
    let fifo = dir.join("weir.yaml");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    assert_refused(
        &fifo.display().to_string(),
        "it is a FIFO (named pipe), not a regular file; weir reads its configuration only from a regular file",
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_device_is_refused_without_reading_it() {
    assert_refused(
        "/dev/zero",
        "it is a device, not a regular file; weir reads its configuration only from a regular file",
    );
}

#[test]
fn a_directory_is_refused() {
    assert_refused(
        "tests/fixtures/config",
        "it is a directory, not a file; give the path of the YAML configuration file",
    );
}

#[test]
fn a_file_over_16_mib_is_refused_but_16_mib_is_read() {
    let dir = scratch_dir("big");
    let cap = 16 * 1024 * 1024;
    // Sparse files: no 16 MiB written to disk. Zero bytes are not YAML, so the file at the cap
    // is read and then rejected as invalid (exit 1), while the one over it is never read.
    let at_cap = dir.join("at-cap.yaml");
    std::fs::File::create(&at_cap)
        .and_then(|f| f.set_len(cap))
        .expect("sparse file");
    let over = dir.join("over.yaml");
    std::fs::File::create(&over)
        .and_then(|f| f.set_len(cap + 1))
        .expect("sparse file");
    assert_refused(
        &over.display().to_string(),
        "the file is larger than 16 MiB, the limit for a configuration file; check the path",
    );
    let out = weir_bounded(&["check", &at_cap.display().to_string()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn reference_example_passes_and_prints_the_not_enforced_warnings() {
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
    assert!(expected.len() >= 6, "{expected:#?}");
    assert!(expected
        .iter()
        .all(|w| w.contains("is accepted but not enforced yet")));
    assert_eq!(diagnostic_lines(&stderr, rel), expected);
    assert!(
        stdout
            .lines()
            .any(|l| l == format!("{rel}: ok (3 listeners, 5 services)")),
        "stdout:\n{stdout}"
    );
}

#[test]
fn an_unreadable_file_exits_2() {
    assert_refused(
        "tests/fixtures/config/no-such-file.yaml",
        "No such file or directory (os error 2)",
    );
}
