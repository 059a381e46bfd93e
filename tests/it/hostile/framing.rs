//! Message framing (RFC 9112) from a hostile upstream: a response with both
//! `content-length` and `transfer-encoding`, and a `101 Switching Protocols` nobody asked
//! for. The client must get one well-framed answer, and weir must keep serving.

use std::time::Duration;

use tokio::net::TcpStream;

use super::{a_good_client_is_served, config, local};
use crate::support::{exchange, free_port, scripted_upstream, Upstream, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_both_length_and_chunked_is_relayed_whole_without_the_length() {
    let (up, heads) = scripted_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
        false,
    )
    .await;
    let good = Upstream::start("good").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up, good.addr, "", "")).await;
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
    a_good_client_is_served(port, "good", Duration::ZERO).await;
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("get / http/1.1\r\n"), "{}", heads[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unasked_101_from_the_upstream_is_a_502_not_a_protocol_switch() {
    let (up, heads) = scripted_upstream(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        false,
    )
    .await;
    let good = Upstream::start("good").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up, good.addr, "", "")).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("http/1.1 502"), "{answer}");
    assert!(answer.contains("weir-error: upstream_reset"), "{answer}");
    a_good_client_is_served(port, "good", Duration::ZERO).await;
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(!heads[0].contains("upgrade"), "{}", heads[0]);
}
