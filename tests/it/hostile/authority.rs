//! Which target a request names, when it names more than one: two `host` fields, an
//! absolute-form target against a `host` field, `connection: host`, and HTTP/2's
//! `:authority` against a `host` field. The upstream must see exactly one `host`, the one
//! the request's own rules make authoritative, or nothing at all.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// Sends `GET http://authority.example/PATH` with `host: other.example` over an h2c
/// connection to `addr`: hyper's client sends `:authority` from the URI and the `host`
/// field as given. Returns the status.
async fn h2_get_with_both(addr: std::net::SocketAddr, path: &str, via: &str) -> u16 {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://authority.example{path}"))
        .header("host", "other.example")
        .header("x-via", via)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    })
    .await;
    answer.expect("an answer within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_authority_wins_over_a_host_field_and_the_upstream_sees_one_host() {
    let up = Upstream::start("up").await;
    // The client really sends both: straight to the (h2c) upstream, the request arrives with
    // `:authority` in its URI and the `host` field beside it.
    assert_eq!(h2_get_with_both(up.addr, "/direct", "none").await, 200);
    {
        let uris = up.state.uris.lock().expect("lock");
        assert_eq!(
            uris[0].authority().map(|a| a.as_str()),
            Some("authority.example")
        );
    }
    assert_eq!(up.last_headers()["host"], "other.example");

    // RFC 9113 §8.3.1: `:authority` wins. Through weir to an HTTP/1.1 upstream (`up`) it is
    // the one `host` field; to an h2c upstream (`h2`) it is the `:authority`, and no `host`.
    let port = free_port();
    let yaml = config(port, up.addr, up.addr, "", "")
        .replace(
            "      - name: all\n",
            "      - name: h2\n        match: { headers: [{ name: x-via, exact: h2 }] }\n        backends: [{ service: h2 }]\n      - name: all\n",
        )
        + &format!("  - {{ name: h2, endpoints: [\"{}\"], protocol: http2 }}\n", up.addr);
    let _weir = Weir::start(&yaml).await;
    assert_eq!(h2_get_with_both(local(port), "/h1", "h1").await, 200);
    let seen = up.last_headers();
    assert_eq!(
        seen.get_all("host").iter().collect::<Vec<_>>(),
        ["authority.example"],
        "an HTTP/1.1 upstream gets one host, the :authority: {seen:?}"
    );
    assert_eq!(h2_get_with_both(local(port), "/h2", "h2").await, 200);
    let seen = up.last_headers();
    let uri = up.state.uris.lock().expect("lock").last().cloned();
    assert_eq!(
        uri.as_ref().and_then(|u| u.authority()).map(|a| a.as_str()),
        Some("authority.example"),
        "an h2c upstream gets the :authority"
    );
    assert!(
        seen.get_all("host").iter().count() == 0,
        "and no host field beside it: {seen:?}"
    );
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    assert_eq!(up.paths(), ["/direct", "/h1", "/h2", "/good"]);
}
