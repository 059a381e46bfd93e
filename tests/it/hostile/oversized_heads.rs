//! Oversized request heads: over `limits.max_request_header_bytes` (60 KiB by default) or
//! with more fields than `limits.max_request_headers` (100 by default) they get 431 from the
//! HTTP layer and the connection is closed, without buffering more than the cap; a head at
//! the limit is served whole.
//!
//! weir answers these 431s from hyper's parser, without a `weir-error` field today (see
//! docs/errors.md), so the tests assert the status line and the close.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{a_good_client_is_served, answer_then_close, config, downstream_errors, local};
use crate::support::{exchange, free_port, scripted_upstream, Upstream, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_max_request_header_bytes_gets_431_and_is_not_read_on() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut huge = TcpStream::connect(local(port)).await.expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70 * 1024));
    // Half of it, then a good client while this head is still coming.
    huge.write_all(&head[..30 * 1024]).await.expect("write");
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    // weir refuses at the cap and closes: the rest of the write may fail, as it should.
    let _ = huge.write_all(&head[30 * 1024..]).await;
    let answer = answer_then_close(&mut huge)
        .await
        .expect("the connection is closed");
    assert!(
        answer.starts_with(
            "http/1.1 431 request header fields too large\r\nweir-error: header_too_large\r\n"
        ),
        "{answer}"
    );
    assert_eq!(downstream_errors(&weir, "header_too_large", 1.0).await, 1.0);
    assert_eq!(
        up.paths(),
        ["/good"],
        "the oversized head reached no upstream"
    );
}

/// A request head with `host` and `fields - 1` more fields `x-field-N: N`.
fn head_with_fields(fields: usize) -> Vec<u8> {
    let mut head = String::from("GET /fields HTTP/1.1\r\nhost: x\r\n");
    for n in 1..fields {
        head.push_str(&format!("x-field-{n}: {n}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_fields_than_max_request_headers_get_431_and_exactly_the_limit_is_served() {
    // A raw upstream: it keeps whole heads, and has no field limit of its own (weir adds
    // x-forwarded-for and x-forwarded-proto, so the upstream gets 102 fields).
    let (up, heads) =
        scripted_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", false).await;
    let good = Upstream::start("good").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up, good.addr, "", "")).await;

    let mut at_limit = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(&mut at_limit, &head_with_fields(100)).await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    {
        let heads = heads.lock().expect("lock");
        assert_eq!(heads.len(), 1, "{heads:?}");
        let lines: Vec<&str> = heads[0].split("\r\n").collect();
        assert_eq!(lines[0], "get /fields http/1.1");
        assert_eq!(lines.iter().filter(|l| l.starts_with("host:")).count(), 1);
        for n in 1..100 {
            assert!(
                lines.contains(&format!("x-field-{n}: {n}").as_str()),
                "x-field-{n} is missing: {}",
                heads[0]
            );
        }
    }

    let mut over = TcpStream::connect(local(port)).await.expect("connect");
    over.write_all(&head_with_fields(101)).await.expect("write");
    let answer = answer_then_close(&mut over)
        .await
        .expect("the connection is closed");
    assert!(
        answer.starts_with(
            "http/1.1 431 request header fields too large\r\nweir-error: header_too_large\r\n"
        ),
        "{answer}"
    );
    assert_eq!(downstream_errors(&weir, "header_too_large", 1.0).await, 1.0);
    a_good_client_is_served(port, "good", Duration::ZERO).await;
    assert_eq!(
        heads.lock().expect("lock").len(),
        1,
        "the head over the limit reached no upstream"
    );
    assert_eq!(good.paths(), ["/good"]);
}

/// Peak resident memory (`VmHWM`) of process `pid` in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_sending_oversized_heads_stay_within_the_cap() {
    const CONNECTIONS: u64 = 1000;
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let baseline = peak_rss_kib(weir.child.id());
    // Five times the 60 KiB cap, never finished: weir must stop reading at the cap (431),
    // not buffer it all.
    let mut head = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 300 * 1024));
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut stream = TcpStream::connect(local(port)).await.expect("connect");
        // weir refuses and closes part-way: the rest of the write fails, as it should.
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.write_all(&head)).await;
        held.push(stream);
    }
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    let grown = peak_rss_kib(weir.child.id()).saturating_sub(baseline);
    // Each connection may hold its capped buffer (hyper grows it by doubling: up to twice
    // the cap) and some 32 KiB of its own; unbounded, it was about 400 KB each.
    let bound = CONNECTIONS * (2 * 60 + 32);
    assert!(
        grown <= bound,
        "peak RSS grew {grown} KiB for {CONNECTIONS} oversized heads (bound {bound} KiB)"
    );
    assert_eq!(
        downstream_errors(&weir, "header_too_large", CONNECTIONS as f64).await,
        CONNECTIONS as f64,
        "every oversized head was refused with 431"
    );
    assert_eq!(
        up.paths(),
        ["/good"],
        "only the good request reached the upstream"
    );
    drop(held);
}
