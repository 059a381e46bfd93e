//! `weir certs`: the CA and workload certificates it writes are what OpenSSL accepts (verify,
//! x509 -text, a mutual-TLS handshake between s_server and s_client), keys are 0600, a
//! certificate of another CA is refused, `--secret` writes a valid Kubernetes Secret holding
//! exactly the files, and wrong input exits 1 while a failed write exits 2.
//!
//! Fails (never skips) when openssl or kubernetes-validate is missing: scripts/test installs
//! both.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::{free_port, scratch_dir, weir_bounded};

const SPIFFE_ID: &str = "spiffe://cluster.local/ns/shop/sa/reviews";

/// Runs `program ARGS` with `input` on stdin, bounded to 10 s.
fn run_bounded(program: &str, args: &[&str], input: &[u8]) -> Output {
    crate::support::run_bounded(program, args, input, Duration::from_secs(10), program)
}

fn openssl(args: &[&str]) -> Output {
    run_bounded("openssl", args, b"")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `weir ARGS`, which must succeed.
fn weir_ok(args: &[&str]) -> String {
    let out = weir_bounded(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "weir {}: {}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `weir ARGS`, which must fail with `code`; its stderr.
fn weir_fails(args: &[&str], code: i32) -> String {
    let out = weir_bounded(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "weir {}: {}",
        args.join(" "),
        text(&out)
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A CA minted into `DIR/name`.
fn mint_ca(dir: &Path, name: &str) -> PathBuf {
    let ca = dir.join(name);
    weir_ok(&[
        "certs",
        "ca",
        "--trust-domain",
        "cluster.local",
        "--out",
        path(&ca),
    ]);
    ca
}

/// A workload certificate for `shop/SA` signed by `ca`, written to `DIR/out`.
fn issue(ca: &Path, sa: &str, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "certs",
        "issue",
        "--ca",
        path(ca),
        "--namespace",
        "shop",
        "--service-account",
        sa,
        "--out",
        path(out),
    ];
    args.extend_from_slice(extra);
    weir_ok(&args)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
}

#[test]
fn openssl_verifies_a_workload_certificate_against_its_ca_for_both_sides() {
    let dir = scratch_dir("certs-verify");
    let ca = mint_ca(&dir, "ca");
    let out = dir.join("reviews");
    let said = issue(&ca, "reviews", &out, &[]);
    assert!(
        said.starts_with(&format!("issued {SPIFFE_ID}, valid until ")),
        "{said}"
    );
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(
            said.contains(path(&out.join(file))),
            "{file} not listed: {said}"
        );
    }

    let bundle = out.join("ca.crt");
    let leaf = out.join("tls.crt");
    for purpose in [None, Some("sslserver"), Some("sslclient")] {
        let mut args = vec!["verify", "-CAfile", path(&bundle)];
        if let Some(p) = purpose {
            args.extend(["-purpose", p]);
        }
        args.push(path(&leaf));
        let v = openssl(&args);
        assert_eq!(
            v.status.code(),
            Some(0),
            "openssl {}: {}",
            args.join(" "),
            text(&v)
        );
        assert!(text(&v).contains(": OK"), "{}", text(&v));
    }
    assert_eq!(
        std::fs::read(&bundle).expect("bundle"),
        std::fs::read(ca.join("ca.crt")).expect("ca.crt"),
        "the bundle is the CA certificate"
    );
}

#[test]
fn openssl_shows_one_uri_san_and_the_ca_flags() {
    let dir = scratch_dir("certs-text");
    let ca = mint_ca(&dir, "ca");
    let out = dir.join("reviews");
    issue(&ca, "reviews", &out, &[]);

    let leaf = openssl(&["x509", "-in", path(&out.join("tls.crt")), "-text", "-noout"]);
    assert_eq!(leaf.status.code(), Some(0), "{}", text(&leaf));
    let leaf = text(&leaf);
    assert!(leaf.contains(&format!("URI:{SPIFFE_ID}")), "{leaf}");
    assert_eq!(leaf.matches("URI:").count(), 1, "{leaf}");
    assert!(
        !leaf.contains("DNS:") && !leaf.contains("IP Address:"),
        "{leaf}"
    );
    assert!(leaf.contains("CA:FALSE"), "{leaf}");
    assert!(leaf.contains("NIST CURVE: P-256"), "{leaf}");
    assert!(
        leaf.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{leaf}"
    );
    assert!(
        leaf.contains("Issuer: O = weir, CN = weir mesh CA cluster.local"),
        "{leaf}"
    );

    let root = openssl(&["x509", "-in", path(&ca.join("ca.crt")), "-text", "-noout"]);
    assert_eq!(root.status.code(), Some(0), "{}", text(&root));
    let root = text(&root);
    assert!(root.contains("CA:TRUE"), "{root}");
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(root.contains("URI:spiffe://cluster.local\n"), "{root}");
    assert!(root.contains("NIST CURVE: P-256"), "{root}");

    for key in [out.join("tls.key"), ca.join("ca.key")] {
        let k = openssl(&["pkey", "-in", path(&key), "-check", "-noout"]);
        assert_eq!(k.status.code(), Some(0), "{}: {}", key.display(), text(&k));
    }
}

#[test]
fn private_keys_are_mode_0600() {
    let dir = scratch_dir("certs-mode");
    let ca = mint_ca(&dir, "ca");
    let out = dir.join("reviews");
    issue(&ca, "reviews", &out, &["--secret", "reviews-tls"]);
    assert_eq!(mode(&ca.join("ca.key")), 0o600);
    assert_eq!(mode(&out.join("tls.key")), 0o600);
    assert_eq!(
        mode(&out.join("secret.yaml")),
        0o600,
        "the Secret holds the key"
    );
    assert_eq!(mode(&out.join("tls.crt")) & 0o600, 0o600);
}

#[test]
fn a_certificate_of_another_ca_fails_verification() {
    let dir = scratch_dir("certs-other");
    let first = mint_ca(&dir, "first");
    let second = mint_ca(&dir, "second");
    let out = dir.join("intruder");
    issue(&second, "reviews", &out, &[]);
    let v = openssl(&[
        "verify",
        "-CAfile",
        path(&first.join("ca.crt")),
        path(&out.join("tls.crt")),
    ]);
    assert_ne!(v.status.code(), Some(0), "{}", text(&v));
    assert!(
        text(&v).contains("unable to get local issuer certificate"),
        "{}",
        text(&v)
    );
}

#[test]
fn the_lifetime_is_a_day_unless_told() {
    let dir = scratch_dir("certs-lifetime");
    let ca = mint_ca(&dir, "ca");
    let checkend = |cert: &Path, secs: u64| {
        let secs = secs.to_string();
        openssl(&["x509", "-in", path(cert), "-noout", "-checkend", &secs])
            .status
            .code()
    };
    let day = dir.join("day");
    issue(&ca, "reviews", &day, &[]);
    let cert = day.join("tls.crt");
    // `-checkend N` exits 0 when the certificate is still valid N seconds from now.
    assert_eq!(checkend(&cert, 24 * 3600 - 120), Some(0));
    assert_eq!(checkend(&cert, 24 * 3600 + 120), Some(1));

    let hour = dir.join("hour");
    issue(&ca, "reviews", &hour, &["--valid", "1h"]);
    assert_eq!(checkend(&hour.join("tls.crt"), 3600 - 120), Some(0));
    assert_eq!(checkend(&hour.join("tls.crt"), 3600 + 120), Some(1));

    // The CA: ten years unless told.
    assert_eq!(
        checkend(&ca.join("ca.crt"), 10 * 365 * 86400 - 120),
        Some(0)
    );
    assert_eq!(
        checkend(&ca.join("ca.crt"), 10 * 365 * 86400 + 120),
        Some(1)
    );
}

#[test]
fn the_secret_holds_exactly_the_files_and_is_a_valid_kubernetes_tls_secret() {
    let dir = scratch_dir("certs-secret");
    let ca = mint_ca(&dir, "ca");
    let out = dir.join("reviews");
    let said = issue(&ca, "reviews", &out, &["--secret", "reviews-tls"]);
    assert!(said.contains("Secret shop/reviews-tls"), "{said}");
    let manifest = std::fs::read_to_string(out.join("secret.yaml")).expect("secret.yaml");
    let doc: serde_json::Value = serde_saphyr::from_str(&manifest).expect("YAML");
    assert_eq!(doc["apiVersion"], "v1");
    assert_eq!(doc["kind"], "Secret");
    assert_eq!(doc["type"], "kubernetes.io/tls");
    assert_eq!(doc["metadata"]["name"], "reviews-tls");
    assert_eq!(doc["metadata"]["namespace"], "shop");
    let data = doc["data"].as_object().expect("data");
    assert_eq!(data.len(), 3, "{data:?}");
    for (key, file) in [
        ("tls.crt", "tls.crt"),
        ("tls.key", "tls.key"),
        ("ca.crt", "ca.crt"),
    ] {
        let encoded = data[key].as_str().expect("a base64 string");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("base64");
        assert_eq!(
            decoded,
            std::fs::read(out.join(file)).expect("file"),
            "data.{key} is {file}"
        );
    }

    // `python3 -m`: the module is where scripts/test checks for it, whatever pip does with
    // its command.
    let v = run_bounded(
        "python3",
        &[
            "-m",
            "kubernetes_validate",
            "--strict",
            path(&out.join("secret.yaml")),
        ],
        b"",
    );
    assert_eq!(
        v.status.code(),
        Some(0),
        "kubernetes-validate: {}",
        text(&v)
    );
}

/// `openssl s_server` with `server`'s certificate, requiring a client certificate signed by
/// its bundle, answering one connection (`-www`); `openssl s_client` with `client`'s
/// certificate, trusting `client_trusts`. The client's output and the server's.
fn handshake(
    server: &Path,
    client: &Path,
    client_trusts: &Path,
    extra: &[&str],
) -> (Output, String) {
    let accept = format!("127.0.0.1:{}", free_port());
    let (cert, key, bundle) = (
        server.join("tls.crt"),
        server.join("tls.key"),
        server.join("ca.crt"),
    );
    let mut args = vec![
        "s_server",
        "-accept",
        &accept,
        "-cert",
        path(&cert),
        "-key",
        path(&key),
        "-CAfile",
        path(&bundle),
        "-Verify",
        "1",
        "-verify_return_error",
        "-naccept",
        "1",
        "-www",
    ];
    args.extend_from_slice(extra);
    let mut s_server = Command::new("openssl")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_server");
    let stdout = s_server.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut server_out = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                server_out.push_str(&line);
                server_out.push('\n');
                if line == "ACCEPT" {
                    break;
                }
            }
            Err(_) => {
                let _ = s_server.kill();
                let _ = s_server.wait();
                panic!("s_server did not start listening: {server_out}");
            }
        }
    }
    let (client_cert, client_key) = (client.join("tls.crt"), client.join("tls.key"));
    let mut client_args = vec![
        "s_client",
        "-connect",
        &accept,
        "-cert",
        path(&client_cert),
        "-key",
        path(&client_key),
        "-CAfile",
        path(client_trusts),
        "-verify_return_error",
        "-ign_eof",
    ];
    client_args.extend_from_slice(extra);
    let client_out = run_bounded("openssl", &client_args, b"GET / HTTP/1.0\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while s_server.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = s_server.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = s_server.wait();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
        server_out.push_str(&line);
        server_out.push('\n');
    }
    (client_out, server_out)
}

#[test]
fn two_workloads_of_one_ca_complete_a_mutual_tls_handshake() {
    let dir = scratch_dir("certs-mtls");
    let ca = mint_ca(&dir, "ca");
    let (reviews, frontend) = (dir.join("reviews"), dir.join("frontend"));
    issue(&ca, "reviews", &reviews, &[]);
    issue(&ca, "frontend", &frontend, &[]);
    let (client, server) = handshake(&reviews, &frontend, &frontend.join("ca.crt"), &[]);
    let said = text(&client);
    assert_eq!(
        client.status.code(),
        Some(0),
        "client: {said}\nserver: {server}"
    );
    assert!(said.contains("Verify return code: 0 (ok)"), "{said}");
    assert!(said.contains("HTTP/1.0 200 ok"), "{said}");
    assert!(
        said.contains("Client certificate"),
        "the server saw it: {said}"
    );
    assert!(
        server.contains("1 server accepts that finished"),
        "{server}"
    );
}

#[test]
fn a_client_certificate_of_another_ca_is_refused_in_the_handshake() {
    let dir = scratch_dir("certs-mtls-other");
    let ca = mint_ca(&dir, "ca");
    let other_ca = mint_ca(&dir, "other-ca");
    let (reviews, intruder) = (dir.join("reviews"), dir.join("intruder"));
    issue(&ca, "reviews", &reviews, &[]);
    issue(&other_ca, "frontend", &intruder, &[]);
    // TLS 1.2, so that the client learns of the refusal within the handshake.
    let (client, server) = handshake(&reviews, &intruder, &ca.join("ca.crt"), &["-tls1_2"]);
    assert_ne!(client.status.code(), Some(0), "client: {}", text(&client));
    assert!(
        text(&client).contains("alert unknown ca"),
        "{}",
        text(&client)
    );
    assert!(
        server.contains("0 server accepts that finished"),
        "{server}"
    );
}

#[test]
fn wrong_input_exits_1_naming_the_argument_and_the_fix() {
    let dir = scratch_dir("certs-input");
    let ca = mint_ca(&dir, "ca");
    let out = dir.join("out");
    let (ca_s, out_s) = (path(&ca).to_owned(), path(&out).to_owned());
    let issue_args = |ns: &'static str, sa: &'static str| {
        vec![
            "certs".to_string(),
            "issue".into(),
            "--ca".into(),
            ca_s.clone(),
            "--namespace".into(),
            ns.into(),
            "--service-account".into(),
            sa.into(),
            "--out".into(),
            out_s.clone(),
        ]
    };
    let fails = |args: Vec<String>, code: i32| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        weir_fails(&args, code)
    };

    let err = fails(issue_args("Shop", "reviews"), 1);
    assert!(err.contains("--namespace"), "{err}");
    assert!(err.contains("did you mean `shop`?"), "{err}");
    let err = fails(issue_args("shop", "re_views"), 1);
    assert!(
        err.contains("--service-account") && err.contains("character `_`"),
        "{err}"
    );
    let mut args = issue_args("shop", "reviews");
    args.extend(["--valid".into(), "3 days".into()]);
    let err = fails(args, 1);
    assert!(err.contains("--valid") && err.contains("`90d`"), "{err}");
    let mut args = issue_args("shop", "reviews");
    args.extend(["--secret".into(), "Reviews".into()]);
    let err = fails(args, 1);
    assert!(
        err.contains("--secret") && err.contains("did you mean `reviews`?"),
        "{err}"
    );
    let mut args = issue_args("shop", "reviews");
    args.extend(["--valid".into(), "20y".into()]);
    let err = fails(args, 1);
    assert!(
        err.contains("--valid") && err.contains("would outlive the CA"),
        "{err}"
    );
    assert!(!out.exists(), "nothing was written");

    let mut args = issue_args("shop", "reviews");
    args[3] = path(&dir.join("nope")).to_owned();
    let err = fails(args, 1);
    assert!(
        err.contains("--ca: ") && err.contains("nope: not found"),
        "{err}"
    );
    assert!(err.contains("weir certs ca --out DIR"), "{err}");

    // A directory that holds a workload certificate, not a CA.
    issue(&ca, "reviews", &out, &[]);
    std::fs::copy(out.join("tls.key"), out.join("ca.key")).expect("copy");
    let mut args = issue_args("shop", "reviews");
    args[3] = out_s.clone();
    let err = fails(args, 1);
    assert!(err.contains("not a usable mesh CA"), "{err}");

    let err = weir_fails(
        &[
            "certs",
            "ca",
            "--trust-domain",
            "Cluster.Local",
            "--out",
            &out_s,
        ],
        1,
    );
    assert!(
        err.contains("--trust-domain") && err.contains("`cluster.local`"),
        "{err}"
    );

    // An existing CA is kept unless --force.
    let before = std::fs::read(ca.join("ca.crt")).expect("ca.crt");
    let err = weir_fails(&["certs", "ca", "--out", path(&ca)], 1);
    assert!(
        err.contains("ca.crt: a CA is already there") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(ca.join("ca.crt")).expect("ca.crt"), before);
    weir_ok(&["certs", "ca", "--out", path(&ca), "--force"]);
    assert_ne!(std::fs::read(ca.join("ca.crt")).expect("ca.crt"), before);
}

#[test]
fn a_directory_that_cannot_be_written_exits_2() {
    let dir = scratch_dir("certs-runtime");
    let ca = mint_ca(&dir, "ca");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").expect("write");
    let under_file = file.join("out");
    let err = weir_fails(&["certs", "ca", "--out", path(&under_file)], 2);
    assert!(err.contains("cannot write"), "{err}");
    let err = weir_fails(
        &[
            "certs",
            "issue",
            "--ca",
            path(&ca),
            "-n",
            "shop",
            "--service-account",
            "reviews",
            "--out",
            path(&under_file),
        ],
        2,
    );
    assert!(
        err.contains(&format!("{}: cannot write", under_file.display())),
        "{err}"
    );
}
