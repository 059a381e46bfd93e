//! Hostile configuration files: paths that are not regular files (a FIFO that would block a
//! reader, a device that never ends, a directory), a file too large to be a configuration,
//! and files whose YAML attacks the reader or the terminal (an alias bomb, deep nesting,
//! tags asking to build objects, bytes that are not UTF-8, names carrying escapes or line
//! breaks). `weir check` and `weir run` must both refuse each promptly (10 s at most, see
//! [`weir_bounded`]) with its exact message, and `weir run` must start nothing.

use std::path::Path;
use std::process::Command;

use crate::support::{assert_unreadable_config, scratch_dir, weir_bounded};

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = scratch_dir("fifo");
    let fifo = dir.join("weir.yaml");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    assert_unreadable_config(
        &fifo.display().to_string(),
        "it is a FIFO (named pipe), not a regular file; weir reads its configuration only from a regular file",
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_device_is_refused_without_reading_it() {
    assert_unreadable_config(
        "/dev/zero",
        "it is a device, not a regular file; weir reads its configuration only from a regular file",
    );
}

#[test]
fn a_directory_is_refused() {
    assert_unreadable_config(
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
    assert_unreadable_config(
        &over.display().to_string(),
        "the file is larger than 16 MiB, the limit for a configuration file; check the path",
    );
    let at_cap = at_cap.display().to_string();
    for args in [vec!["check", &at_cap], vec!["run", "-c", &at_cap]] {
        let out = weir_bounded(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            (out.status.code(), stderr.trim_end()),
            (
                Some(1),
                format!("{at_cap}:1:1: <yaml>: invalid YAML: unexpected character: `\\u{{0}}'; check the indentation, quotes and brackets here and on the line before").as_str()
            ),
            "weir {}",
            args.join(" ")
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Fixtures (in tests/fixtures/config/invalid) written to attack the reader or whoever
/// reads its messages.
const HOSTILE_FIXTURES: &[&str] = &[
    "alias_bomb",
    "nested_too_deep",
    "huge_number",
    "yaml_tag_python_object",
    "yaml_tags_local_and_core",
    "invalid_utf8",
    "name_with_control_character",
    "name_with_line_break",
];

#[test]
fn hostile_yaml_is_refused_with_exactly_its_messages_and_no_control_character() {
    for name in HOSTILE_FIXTURES {
        let rel = format!("tests/fixtures/config/invalid/{name}.yaml");
        let bytes =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel)).expect("readable");
        let expected: Vec<String> = String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        assert!(!expected.is_empty(), "{rel} has no `# expect:` lines");
        for args in [vec!["check", rel.as_str()], vec!["run", "-c", rel.as_str()]] {
            let out = weir_bounded(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("weir {}", args.join(" "));
            assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
            // Exactly the expected lines: a name with a line break forges no log line, and
            // nothing was started (no log line of a running weir).
            assert_eq!(stderr.lines().collect::<Vec<_>>(), expected, "{what}");
            assert!(
                !stderr.chars().any(|c| c.is_control() && c != '\n'),
                "{what}: a control character reached the terminal: {stderr:?}"
            );
            assert!(out.stdout.is_empty(), "{what}: {:?}", out.stdout);
        }
    }
}
