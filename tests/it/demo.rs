//! `weir demo`: the embedded default runs end to end and reports the configured split.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `SHARE` column of the service row named `service` in the summary table, in percent.
fn share_of(summary: &str, service: &str) -> Option<f64> {
    summary
        .lines()
        .map(str::trim_start)
        .find(|l| l.split_whitespace().next() == Some(service))?
        .split_whitespace()
        .nth(2)?
        .trim_end_matches('%')
        .parse()
        .ok()
}

#[test]
fn demo_runs_the_embedded_config_and_splits_about_ninety_ten() {
    // The demo falls back to a free admin port when 9901 is taken (by another test or a
    // running weir), so this test may run beside anything.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["demo", "--duration", "3s", "--rps", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start weir demo");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir demo --duration 3s still runs after 60s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().expect("stdout reader");
    let stderr = err.join().expect("stderr reader");
    let context = format!("stdout:\n{stdout}\nstderr:\n{stderr}");

    assert_eq!(status.code(), Some(0), "{context}");
    assert!(stderr.contains("/metrics"), "{context}");
    assert!(stdout.contains("reviews-v1"), "{context}");
    assert!(stdout.contains("reviews-v2"), "{context}");
    assert!(
        stdout.contains("metrics were served at http://127.0.0.1:"),
        "{context}"
    );
    let v2 =
        share_of(&stdout, "reviews-v2").unwrap_or_else(|| panic!("no reviews-v2 share\n{context}"));
    assert!(
        (6.0..=14.0).contains(&v2),
        "reviews-v2 got {v2}%, want 10 ± 4\n{context}"
    );
    let v1 =
        share_of(&stdout, "reviews-v1").unwrap_or_else(|| panic!("no reviews-v1 share\n{context}"));
    assert!(
        (v1 + v2 - 100.0).abs() < 0.2,
        "shares {v1}% + {v2}% should sum to 100\n{context}"
    );
}
