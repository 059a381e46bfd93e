//! `weir init-iptables` for real: in a fresh network namespace, the rules it installs read
//! back exactly, redirect the application's outbound TCP to weir's outbound listener, and
//! `--cleanup` leaves the nat table as it found it. Needs root (CI runs as root); without the
//! right to create a namespace the tests fail saying so.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::netns::{stderr, Netns, Sidecar};
use crate::support::scratch_dir;

const WEIR: &str = env!("CARGO_BIN_EXE_weir");

/// weir in the namespace with TCP listeners on the outbound (127.0.0.1:15001) and inbound
/// (0.0.0.0:15006) ports forwarding to its own admin server: whatever reaches them gets
/// weir's `/live` answer back.
fn start_sidecar(ns: &Netns, dir: &Path) -> Sidecar {
    let config = dir.join("weir.yaml");
    std::fs::write(
        &config,
        "version: 1\nadmin: { address: 127.0.0.1:9901 }\nlisteners:\n  - name: outbound\n    \
         address: 127.0.0.1:15001\n    protocol: tcp\n    routes: [{ name: admin, backends: [{ \
         service: admin }] }]\n  - name: inbound\n    address: 0.0.0.0:15006\n    protocol: tcp\n    \
         routes: [{ name: admin, backends: [{ service: admin }] }]\nservices:\n  - name: admin\n    endpoints: [127.0.0.1:9901]\n",
    )
    .expect("write config");
    let log = std::fs::File::create(dir.join("weir.log")).expect("log file");
    let sidecar = ns.spawn(WEIR, &["run", "-c", &config.to_string_lossy()], log.into());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns.ask_live("127.0.0.1", 15001).contains(" 200 ") {
        assert!(
            Instant::now() < deadline,
            "weir did not start in the namespace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sidecar
}

/// The rule and chain lines of a script or a save that belong to weir, sorted (iptables-save
/// orders them its own way).
fn weir_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.contains("WEIR_"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// Install, check, redirect, re-install, clean up, check again: one backend's whole story.
fn redirects_and_cleans_up(backend: &str) {
    let ns = Netns::new();
    let dir = scratch_dir("iptables");
    let sidecar = start_sidecar(&ns, &dir);
    assert_eq!(
        ns.ask_live("198.51.100.7", 80),
        "",
        "before init-iptables nothing answers 198.51.100.7:80"
    );
    let before = ns.nat(backend);

    let args = [
        "--backend",
        backend,
        "--proxy-uid",
        "1337",
        "--exclude-outbound-ports",
        "5432",
        "--exclude-outbound-cidrs",
        "10.1.0.0/16",
    ];
    let script = ns.init_iptables(&[&args[..], &["--dry-run"]].concat());
    ns.init_iptables(&args);
    assert_eq!(weir_lines(&ns.nat(backend)), weir_lines(&script));
    assert_eq!(
        weir_lines(&script).len(),
        4 + 13,
        "four chains and thirteen rules: {script}"
    );

    // The test runs as root, not as the proxy uid: its call to a documentation address is
    // the application's, and lands on weir's outbound listener.
    let answer = ns.ask_live("198.51.100.7", 80);
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "the redirected call reached weir: {answer:?}"
    );

    ns.init_iptables(&args);
    assert_eq!(
        weir_lines(&ns.nat(backend)),
        weir_lines(&script),
        "a second install leaves one copy of every rule"
    );

    let out = ns.exec(WEIR, &["init-iptables", "--backend", backend, "--cleanup"]);
    assert!(out.status.success(), "cleanup: {}", stderr(&out));
    assert_eq!(weir_lines(&ns.nat(backend)), Vec::<String>::new());
    assert_eq!(
        strip_comments(&ns.nat(backend)),
        strip_comments(&before),
        "cleanup leaves the nat table as it found it"
    );
    assert_eq!(
        ns.ask_live("198.51.100.7", 80),
        "",
        "after cleanup the call is not redirected"
    );
    let out = ns.exec(WEIR, &["init-iptables", "--backend", backend, "--cleanup"]);
    assert!(out.status.success(), "a second cleanup: {}", stderr(&out));
    drop(sidecar);
    let _ = std::fs::remove_dir_all(&dir);
}

fn strip_comments(saved: &str) -> Vec<&str> {
    saved.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn init_iptables_redirects_outbound_tcp_and_cleanup_removes_it_nft() {
    redirects_and_cleans_up("nft");
}

#[test]
fn init_iptables_redirects_outbound_tcp_and_cleanup_removes_it_legacy() {
    redirects_and_cleans_up("legacy");
}

#[test]
fn dry_run_output_is_accepted_by_iptables_restore_test() {
    let ns = Netns::new();
    let args = [
        "init-iptables",
        "--dry-run",
        "--exclude-inbound-ports",
        "22,8080",
        "--exclude-outbound-ports",
        "5432",
        "--exclude-outbound-cidrs",
        "10.0.0.0/8,169.254.169.254",
    ];
    let out = ns.exec(WEIR, &args);
    assert!(out.status.success(), "dry run: {}", stderr(&out));
    let script = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(script.starts_with("*nat\n") && script.ends_with("COMMIT\n"));
    for backend in ["nft", "legacy"] {
        let mut child = ns
            .command(&format!("iptables-{backend}-restore"), &["--test"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("iptables-restore");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), script.as_bytes())
            .expect("feed the script");
        let out = child.wait_with_output().expect("iptables-restore --test");
        assert!(
            out.status.success(),
            "iptables-{backend}-restore --test refused the dry run: {}\n{script}",
            stderr(&out)
        );
        assert_eq!(weir_lines(&ns.nat(backend)), Vec::<String>::new());
    }
}

#[test]
fn init_iptables_redirects_inbound_tcp_but_not_the_admin_port() {
    let pod = Netns::bare();
    let client = Netns::bare();
    pod.ip(&format!(
        "link add weirp type veth peer name weirc netns {}",
        client.name
    ));
    pod.ip("addr add 198.51.100.31/24 dev weirp");
    pod.ip("link set weirp up");
    client.ip("addr add 198.51.100.32/24 dev weirc");
    client.ip("link set weirc up");
    let dir = scratch_dir("iptables-in");
    let sidecar = start_sidecar(&pod, &dir);
    assert_eq!(
        client.ask_live("198.51.100.31", 8080),
        "",
        "before init-iptables nothing listens on the pod's port 8080"
    );

    pod.init_iptables(&[]);
    let answer = client.ask_live("198.51.100.31", 8080);
    assert!(
        answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
        "the call to the application's port reached weir's inbound listener: {answer:?}"
    );
    assert_eq!(
        client.ask_live("198.51.100.31", 9901),
        "",
        "the admin port is not redirected (and weir's admin listens on loopback only)"
    );

    pod.init_iptables(&["--cleanup"]);
    assert_eq!(client.ask_live("198.51.100.31", 8080), "");
    drop(sidecar);
    let _ = std::fs::remove_dir_all(&dir);
}
