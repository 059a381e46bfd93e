//! Hostile input, gathered in one place: request smuggling vectors and authority confusion,
//! broken framing from either side, floods of connections and of HTTP/2 frames, slow
//! clients and stalled peers, oversized request heads, and configuration files that are not
//! what they claim to be.
//!
//! Every case sends the real bytes over real sockets to the real `weir` binary and asserts
//! three things:
//!
//! 1. **what the client got**: the exact status (and the `weir-error` value when weir
//!    answers itself), or that its connection was closed, and when;
//! 2. **what the upstream saw**: nothing, or exactly the requests it should have seen
//!    ([`crate::support::Upstream::paths`] and its recorded headers, or the raw heads of a
//!    [`crate::support::scripted_upstream`]);
//! 3. **that weir kept serving**: a well-behaved client on a connection of its own is served
//!    ([`a_good_client_is_served`]), while the attack's connections are still open where
//!    the case allows it, else right after.
//!
//! For a hostile configuration file the three become: the exit code and the exact message
//! of `weir check` and of `weir run` (weir has no configuration reload yet, so there is no
//! running proxy a bad file could reach).

mod authority;
mod client_faults;
mod config_files;
mod floods;
mod framing;
mod h2_floods;
mod oversized_heads;
mod parse_errors;
mod slow_peers;
mod smuggling;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::{get, metric_settles, Weir};

/// The path a well-behaved client asks for; every configuration here routes it to a real
/// [`crate::support::Upstream`].
pub const GOOD_PATH: &str = "/good";

/// One listener `main` on `port`: [`GOOD_PATH`] goes to service `good` at `good`, every other
/// request to service `up` at `up` (the two may be one upstream). `listener_extra` is YAML
/// for the listener (4 spaces in, each line ending in a newline), `route_extra` for the
/// route `all` (8 spaces in). The text ends inside service `up`'s mapping, so that a test can
/// append keys of it (4 spaces in).
pub fn config(
    port: u16,
    up: SocketAddr,
    good: SocketAddr,
    listener_extra: &str,
    route_extra: &str,
) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n{listener_extra}    routes:\n      - name: good\n        match: {{ path: {{ prefix: {GOOD_PATH} }} }}\n        backends: [{{ service: good }}]\n      - name: all\n{route_extra}        backends: [{{ service: up }}]\nservices:\n  - name: good\n    endpoints: [\"{good}\"]\n  - name: up\n    endpoints: [\"{up}\"]\n"
    )
}

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Point 3 of every case: a well-behaved client, on a connection of its own, sends
/// `GET /good` and gets `200` with the body `name` (the serving upstream's name). It tries
/// again until `within` has passed (`Duration::ZERO`: exactly once), for the cases where
/// weir may serve again only once the attack has ended; each try is bounded to 5 s.
pub async fn a_good_client_is_served(port: u16, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got =
            tokio::time::timeout(Duration::from_secs(5), get(local(port), GOOD_PATH, &[])).await;
        match got {
            Ok(Ok((200, _, body))) if body == name => return,
            other if Instant::now() >= deadline => {
                panic!("a well-behaved client was not served: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits (3 s at most) until the peer closes `stream`, reading and discarding what it
/// sends meanwhile (an HTTP/2 server's SETTINGS, the rest of an answer); how long after
/// `started` that was.
pub async fn closed_after(stream: &mut TcpStream, started: Instant) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Reads everything the peer sends until it closes `stream` (3 s at most): the answer,
/// lower-cased, or `None` when the connection was still open after 3 s.
pub async fn answer_then_close(stream: &mut TcpStream) -> Option<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&answer).to_lowercase())
}

/// Polls `weir_downstream_errors_total{listener="main", kind}` until it is `want` (3 s).
pub async fn downstream_errors(weir: &Weir, kind: &str, want: f64) -> f64 {
    metric_settles(
        weir,
        "weir_downstream_errors_total",
        &[("listener", "main"), ("kind", kind)],
        want,
    )
    .await
}
