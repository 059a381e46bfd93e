//! Message framing and authority (RFC 9112, RFC 9110) with hostile or odd peers on both
//! sides: each test sends the bytes over raw sockets and asserts what the client got, what
//! the upstream saw, and that a well-behaved client is served right after.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{free_port, get, Weir};

/// An upstream that answers every request head with `answer` (then closes when `close`),
/// and keeps each head it received.
async fn scripted_upstream(
    answer: &'static [u8],
    close: bool,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = pending.drain(..end + 4).collect();
                        seen.lock()
                            .expect("lock")
                            .push(String::from_utf8_lossy(&head).to_lowercase());
                        if socket.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, heads)
}

fn config(port: u16, up: SocketAddr) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{up}\"] }}\n"
    )
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("address")
}

/// Sends `request` on `stream` and reads one whole answer (head and body, by its
/// content-length or chunked framing), 3 s at most; returns it lower-cased.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let text = String::from_utf8_lossy(&answer).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let body = &text[end + 4..];
                let done = if let Some(cl) = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                {
                    body.len() >= cl.trim().parse::<usize>().unwrap_or(0)
                } else {
                    body.ends_with("0\r\n\r\n")
                };
                if done {
                    break;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).to_lowercase()
}

/// A well-behaved client on a fresh connection gets an answer from the upstream.
async fn a_good_client_is_served(port: u16) {
    let (status, _, _) = get(local(port), "/", &[]).await.expect("an answer");
    assert!(status < 500, "a good client got {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_both_length_and_chunked_is_relayed_whole_without_the_length() {
    let (up, _) = scripted_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
        false,
    )
    .await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up)).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(
        !answer.contains("content-length: 5"),
        "the stale length is gone: {answer}"
    );
    assert!(
        answer.contains("hello world"),
        "the whole body arrived: {answer}"
    );
    a_good_client_is_served(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_client_behind_an_http_1_0_upstream_is_answered_in_1_1_and_kept_alive() {
    let (up, _) = scripted_upstream(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up)).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    for _ in 0..2 {
        let answer = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unasked_101_from_the_upstream_is_a_502_not_a_protocol_switch() {
    let (up, _) = scripted_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        false,
    )
    .await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up)).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("http/1.1 502"), "{answer}");
    assert!(answer.contains("weir-error: upstream_reset"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_fields_are_refused_and_the_upstream_sees_nothing() {
    let (up, heads) =
        scripted_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up)).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(
        &mut client,
        b"GET / HTTP/1.1\r\nhost: good.example\r\nhost: evil.example\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 400"), "{answer}");
    assert!(answer.contains("weir-error: bad_request"), "{answer}");
    assert!(
        heads.lock().expect("lock").is_empty(),
        "nothing reached the upstream"
    );
    a_good_client_is_served(port).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_absolute_form_authority_wins_and_connection_host_keeps_the_host() {
    let (up, heads) =
        scripted_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up)).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(
        &mut client,
        b"GET http://good.example/x HTTP/1.1\r\nhost: evil.example\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    let answer = exchange(
        &mut client,
        b"GET /y HTTP/1.1\r\nhost: kept.example\r\nconnection: host\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[0].starts_with("get /x http/1.1\r\n"),
        "origin form upstream: {}",
        heads[0]
    );
    assert!(heads[0].contains("host: good.example\r\n"), "{}", heads[0]);
    assert!(!heads[0].contains("evil"), "{}", heads[0]);
    assert!(heads[1].contains("host: kept.example\r\n"), "{}", heads[1]);
}
