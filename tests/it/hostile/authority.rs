//! Which target a request names, when it names more than one: two `host` fields, an
//! absolute-form target against a `host` field, `connection: host`, and HTTP/2's
//! `:authority` against a `host` field. The upstream must see exactly one `host`, the one
//! the request's own rules make authoritative, or nothing at all.

use std::time::Duration;

use tokio::net::TcpStream;

use super::{a_good_client_is_served, config, local};
use crate::support::{exchange, free_port, scripted_upstream, Upstream, Weir};

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_host_fields_are_refused_and_the_upstream_sees_nothing() {
    let (up, heads) = scripted_upstream(OK, false).await;
    let good = Upstream::start("good").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up, good.addr, "", "")).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let answer = exchange(
        &mut client,
        b"GET / HTTP/1.1\r\nhost: good.example\r\nhost: evil.example\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 400"), "{answer}");
    assert!(answer.contains("weir-error: bad_request"), "{answer}");
    a_good_client_is_served(port, "good", Duration::ZERO).await;
    assert!(
        heads.lock().expect("lock").is_empty(),
        "nothing reached the upstream"
    );
    assert_eq!(good.paths(), ["/good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_absolute_form_authority_wins_and_connection_host_keeps_the_host() {
    let (up, heads) = scripted_upstream(OK, false).await;
    let good = Upstream::start("good").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up, good.addr, "", "")).await;
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
    a_good_client_is_served(port, "good", Duration::ZERO).await;
    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[0].starts_with("get /x http/1.1\r\n"),
        "origin form upstream: {}",
        heads[0]
    );
    assert_eq!(heads[0].matches("host:").count(), 1, "{}", heads[0]);
    assert!(heads[0].contains("host: good.example\r\n"), "{}", heads[0]);
    assert!(!heads[0].contains("evil"), "{}", heads[0]);
    assert_eq!(heads[1].matches("host:").count(), 1, "{}", heads[1]);
    assert!(heads[1].contains("host: kept.example\r\n"), "{}", heads[1]);
}
