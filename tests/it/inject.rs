//! `weir inject`: the built binary on the manifests under `tests/fixtures/kube/`. Its output
//! validates with `kubernetes-validate --strict` against Kubernetes 1.29 (the first release
//! with native sidecars on by default), injecting it again changes nothing, untouched
//! documents come back byte for byte, stdin works, and malformed YAML is `FILE:LINE:COL`
//! with exit 1.
//!
//! Fails (never skips) when kubernetes-validate is missing: scripts/test installs it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::{run_bounded, scratch_dir};

/// The Kubernetes version the output is validated against.
const KUBERNETES: &str = "1.29.0";

const FIXTURES: [&str; 6] = ["shop", "statefulset", "cronjob", "pod", "disabled", "mixed"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kube")
        .join(format!("{name}.yaml"))
}

/// Runs `program ARGS` with `input` on stdin, bounded to 30 s (see [`run_bounded`]).
fn run(program: &str, args: &[&str], input: &[u8]) -> Output {
    run_bounded(program, args, input, Duration::from_secs(30), program)
}

fn weir(args: &[&str], input: &[u8]) -> Output {
    run(env!("CARGO_BIN_EXE_weir"), args, input)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `weir inject -f FILE EXTRA…`, asserted to succeed; its stdout.
fn inject(file: &Path, extra: &[&str]) -> String {
    let mut args = vec!["inject", "-f", file.to_str().expect("path")];
    args.extend_from_slice(extra);
    let out = weir(&args, b"");
    assert_eq!(out.status.code(), Some(0), "weir inject: {}", stderr(&out));
    stdout(&out)
}

/// Asserts that `kubernetes-validate --strict` accepts every document of `path`.
fn assert_valid(path: &Path, version: &str) {
    let v = run(
        "python3",
        &[
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            version,
            path.to_str().expect("path"),
        ],
        b"",
    );
    assert_eq!(
        v.status.code(),
        Some(0),
        "kubernetes-validate {}: {}{}",
        path.display(),
        stdout(&v),
        stderr(&v)
    );
}

#[test]
fn every_fixture_injected_validates_strictly_and_reinjects_to_itself() {
    let dir = scratch_dir("inject-validate");
    for (mode, extra) in [("native", &[][..]), ("legacy", &["--legacy-sidecar"][..])] {
        for name in FIXTURES {
            let once = inject(&fixture(name), extra);
            let out = dir.join(format!("{name}-{mode}.yaml"));
            std::fs::write(&out, &once).expect("write");
            assert_valid(&out, KUBERNETES);
            let twice = inject(&out, extra);
            assert_eq!(
                twice, once,
                "{name} ({mode}): injecting twice differs from once"
            );
        }
    }
}

#[test]
fn native_sidecars_are_what_older_clusters_refuse_and_legacy_mode_avoids() {
    let dir = scratch_dir("inject-versions");
    let native = dir.join("native.yaml");
    std::fs::write(&native, inject(&fixture("pod"), &[])).expect("write");
    let old = run(
        "python3",
        &[
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.27.0",
            native.to_str().expect("path"),
        ],
        b"",
    );
    assert_ne!(
        old.status.code(),
        Some(0),
        "1.27 knows no restartPolicy on init containers"
    );
    assert!(stdout(&old).contains("restartPolicy"), "{}", stdout(&old));
    let legacy = dir.join("legacy.yaml");
    std::fs::write(&legacy, inject(&fixture("pod"), &["--legacy-sidecar"])).expect("write");
    assert_valid(&legacy, "1.27.0");
}

#[test]
fn the_deployment_gets_the_sidecar_and_its_service_and_config_map_come_back_verbatim() {
    let original = std::fs::read_to_string(fixture("shop")).expect("fixture");
    let out = inject(&fixture("shop"), &[]);
    let service_and_config_map = &original[original.find("---\n").expect("a second document")..];
    assert!(
        out.ends_with(service_and_config_map),
        "the Service and ConfigMap are not byte for byte at the end:\n{out}"
    );
    let deployment = &out[..out.len() - service_and_config_map.len()];
    assert!(
        deployment.starts_with("# The shop's web tier"),
        "{deployment}"
    );
    let before_app = deployment.find("- name: app").expect("the app container");
    for expected in [
        "- name: weir-init",
        "- name: weir\n",
        "restartPolicy: Always",
        "- name: migrate",
        "secretName: weir-identity-web",
        "weir.io/injected: \"true\"",
        "prometheus.io/port: \"9901\"",
        "image: ghcr.io/weir-proxy/weir:",
    ] {
        let at = deployment
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} missing from:\n{deployment}"));
        if expected.starts_with("- name: weir") || expected == "restartPolicy: Always" {
            assert!(
                at < before_app,
                "{expected} comes before the app's containers"
            );
        }
    }
}

#[test]
fn disabled_workloads_come_back_unchanged() {
    let original = std::fs::read_to_string(fixture("disabled")).expect("fixture");
    assert_eq!(inject(&fixture("disabled"), &[]), original);
}

#[test]
fn stdin_and_output_file_give_the_same_manifest_as_a_file_on_stdout() {
    let from_file = inject(&fixture("cronjob"), &[]);
    let text = std::fs::read(fixture("cronjob")).expect("fixture");
    let out = weir(&["inject", "-f", "-"], &text);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), from_file);
    assert!(
        from_file.contains("secretName: weir-identity-reporter"),
        "{from_file}"
    );

    let dir = scratch_dir("inject-output");
    let target = dir.join("out.yaml");
    let out = weir(
        &[
            "inject",
            "-f",
            fixture("cronjob").to_str().expect("path"),
            "-o",
            target.to_str().expect("path"),
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&target).expect("written"),
        from_file
    );
}

#[test]
fn flags_choose_the_image_config_map_identity_secret_and_resources() {
    let out = inject(
        &fixture("pod"),
        &[
            "--image",
            "registry.example.com/weir:dev",
            "--config-map",
            "mesh",
            "--identity-secret",
            "debug-cert",
            "--memory-limit",
            "512Mi",
        ],
    );
    for expected in [
        "image: registry.example.com/weir:dev",
        "name: mesh",
        "secretName: debug-cert",
        "memory: 512Mi",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let bad = weir(
        &[
            "inject",
            "-f",
            fixture("pod").to_str().expect("path"),
            "--cpu-limit",
            "lots",
        ],
        b"",
    );
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("not a Kubernetes quantity"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn malformed_yaml_is_reported_at_its_file_line_and_column_with_exit_1() {
    let file = "tests/fixtures/kube/malformed.yaml";
    let out = weir(&["inject", "-f", file], b"");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing is written on error");
    let err = stderr(&out);
    let rest = err
        .strip_prefix(&format!("{file}:"))
        .unwrap_or_else(|| panic!("not FILE:LINE:COL: {err}"));
    let mut parts = rest.splitn(3, ':');
    let line: usize = parts.next().and_then(|l| l.parse().ok()).expect("a line");
    let col: usize = parts.next().and_then(|c| c.parse().ok()).expect("a column");
    assert!(
        (10..=11).contains(&line),
        "the error is in the Deployment: {err}"
    );
    assert!(col >= 1, "{err}");

    let stdin = weir(&["inject", "-f", "-"], b"kind: [Pod\n");
    assert_eq!(stdin.status.code(), Some(1));
    assert!(stderr(&stdin).starts_with("<stdin>:"), "{}", stderr(&stdin));
}

#[test]
fn a_missing_file_exits_2() {
    let out = weir(&["inject", "-f", "tests/fixtures/kube/absent.yaml"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("tests/fixtures/kube/absent.yaml: cannot read the manifest"),
        "{}",
        stderr(&out)
    );
}
