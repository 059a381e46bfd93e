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
use crate::support::{free_port, Upstream, Weir};

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
        answer.starts_with("http/1.1 431 request header fields too large\r\n"),
        "{answer}"
    );
    assert_eq!(downstream_errors(&weir, "header_too_large", 1.0).await, 1.0);
    assert_eq!(
        up.paths(),
        ["/good"],
        "the oversized head reached no upstream"
    );
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
