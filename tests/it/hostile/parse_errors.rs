//! Request heads weir's HTTP/1.1 parser refuses (400, 414, 431): what the client gets, byte
//! for byte (hyper's answer with `weir-error` after its status line), and that the refusal
//! is counted, access-logged and logged while nothing reaches the upstream and other
//! clients are served. HTTP/2's own refusal of an oversized header list is shown as it is.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{eventually, free_port, get, metric_settles, Upstream, Weir};

/// A listener `main` on `port` in front of `up`, with `limits`, logging at info with the
/// access log on.
fn config(port: u16, up: SocketAddr, limits: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    limits: {{ {limits} }}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{up}\"] }}\n"
    )
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("address")
}

/// Sends `bytes` on a new connection and reads until weir closes it (3 s at most); what
/// came back, and the client's address.
async fn exchange(port: u16, bytes: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut stream = TcpStream::connect(local(port)).await.expect("connect");
    let client = stream.local_addr().expect("client address");
    // weir may refuse and close before taking every byte of an oversized head.
    let _ = stream.write_all(bytes).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), read_all)
        .await
        .expect("weir closes the connection");
    (got, client)
}

/// `answer` as text with the value of its `date` field replaced by `<date>`.
fn dateless(answer: &[u8]) -> String {
    String::from_utf8_lossy(answer)
        .split("\r\n")
        .map(|line| match line.split_once(": ") {
            Some(("date", _)) => "date: <date>".to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// hyper's answer with status line `status`, as the client now gets it.
fn answer(status: &str, code: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nweir-error: {code}\r\nconnection: close\r\ncontent-length: 0\r\ndate: <date>\r\n\r\n"
    )
}

/// A refused head as weir should have recorded it.
struct Refused<'a> {
    /// The refused client's address.
    client: SocketAddr,
    /// Its `weir_downstream_errors_total` kind.
    kind: &'a str,
    /// The status it got.
    status: u16,
    /// Its `weir-error` code.
    code: &'a str,
}

/// Asserts what a refusal left behind: counted under its kind, an access-log line and a
/// `weir::parse_error` line with its client, status and code, nothing more sent upstream
/// (`upstream_hits` requests in all), and a well-behaved client still served.
async fn assert_recorded(
    weir: &Weir,
    port: u16,
    up: &Upstream,
    upstream_hits: u64,
    refused: Refused<'_>,
) {
    let Refused {
        client,
        kind,
        status,
        code,
    } = refused;
    let counted = metric_settles(
        weir,
        "weir_downstream_errors_total",
        &[("listener", "main"), ("kind", kind)],
        1.0,
    )
    .await;
    assert_eq!(counted, 1.0, "counted as {kind}");
    let access = format!(
        "weir::access: request client={client} peer= listener=main route= service= endpoint= method= path= status={status} "
    );
    let logged = format!("client={client} listener=main status={status} error={code} detail=");
    let found = eventually(Duration::from_secs(3), || {
        let logs = weir.logs();
        let access_line = logs
            .lines()
            .find(|l| l.contains(&access))
            .is_some_and(|l| l.ends_with(&format!("error={code}")));
        let info_line = logs.lines().any(|l| {
            l.contains(" INFO weir::parse_error: request head refused") && l.contains(&logged)
        });
        access_line && info_line
    })
    .await;
    assert!(
        found,
        "access-log and info lines for {client}; log:\n{}",
        weir.logs()
    );
    assert_eq!(
        up.hits(),
        upstream_hits,
        "the refused head never reached the upstream"
    );
    let (status, _, body) = get(local(port), "/", &[]).await.expect("a good client");
    assert_eq!((status, body.as_str()), (200, "up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_gets_400_with_weir_error_bad_request() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "")).await;
    let (got, client) = exchange(port, b"GET / HTTP/1.1\r\nbad header\r\n\r\n").await;
    assert_eq!(dateless(&got), answer("400 Bad Request", "bad_request"));
    assert_recorded(
        &weir,
        port,
        &up,
        0,
        Refused {
            client,
            kind: "malformed",
            status: 400,
            code: "bad_request",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_max_request_header_bytes_gets_431_with_weir_error_header_too_large() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "max_request_header_bytes: 8192")).await;
    let mut head = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 9000));
    head.extend_from_slice(b"\r\n\r\n");
    let (got, client) = exchange(port, &head).await;
    assert_eq!(
        dateless(&got),
        answer("431 Request Header Fields Too Large", "header_too_large")
    );
    assert_recorded(
        &weir,
        port,
        &up,
        0,
        Refused {
            client,
            kind: "header_too_large",
            status: 431,
            code: "header_too_large",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_fields_than_max_request_headers_get_431_with_weir_error_header_too_large() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "max_request_headers: 5")).await;
    let mut head = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..10 {
        head.extend_from_slice(format!("x-field-{i}: {i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let (got, client) = exchange(port, &head).await;
    assert_eq!(
        dateless(&got),
        answer("431 Request Header Fields Too Large", "header_too_large")
    );
    assert_recorded(
        &weir,
        port,
        &up,
        0,
        Refused {
            client,
            kind: "header_too_large",
            status: 431,
            code: "header_too_large",
        },
    )
    .await;
}

/// hyper refuses a request target over 65,534 bytes with 414, whatever the caps: it is only
/// reachable with `max_request_header_bytes` above that (at the default 60 KiB such a head
/// is a 431).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_target_over_65534_bytes_gets_414_with_weir_error_uri_too_long() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "max_request_header_bytes: 131072")).await;
    let mut head = b"GET /".to_vec();
    head.extend(std::iter::repeat_n(b'a', 65_534));
    head.extend_from_slice(b" HTTP/1.1\r\nhost: x\r\n\r\n");
    let (got, client) = exchange(port, &head).await;
    assert_eq!(dateless(&got), answer("414 URI Too Long", "uri_too_long"));
    assert_recorded(
        &weir,
        port,
        &up,
        0,
        Refused {
            client,
            kind: "uri_too_long",
            status: 414,
            code: "uri_too_long",
        },
    )
    .await;
}

/// Splits what a client read into responses, by `content-length` (every response here has
/// one).
fn responses(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .expect("a complete head");
        let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
        let length: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        out.push(bytes[..end + length].to_vec());
        bytes = &bytes[end + length..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_head_pipelined_after_a_good_request_leaves_its_response_intact() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "")).await;
    let good = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    let (alone, _) = exchange(
        port,
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    let mut pipelined = good.to_vec();
    pipelined.extend_from_slice(b"GET / HTTP/1.1\r\nbad header\r\n\r\n");
    let (got, client) = exchange(port, &pipelined).await;
    let got = responses(&got);
    assert_eq!(got.len(), 2, "{:?}", dateless(&got.concat()));
    // The same response as a request alone gets, but for keep-alive.
    assert_eq!(
        dateless(&got[0]),
        dateless(&alone).replace("connection: close\r\n", ""),
    );
    assert_eq!(dateless(&got[1]), answer("400 Bad Request", "bad_request"));
    // One request reached the upstream for the reference, one for the pipelined pair.
    assert_recorded(
        &weir,
        port,
        &up,
        2,
        Refused {
            client,
            kind: "malformed",
            status: 400,
            code: "bad_request",
        },
    )
    .await;
    let good_line =
        format!("weir::access: request client={client} peer= listener=main route=all service=up");
    assert!(
        weir.logs()
            .lines()
            .any(|l| l.contains(&good_line) && l.contains(" status=200 ")),
        "the good request is logged as usual"
    );
}

/// An upstream on 127.0.0.1 answering in raw bytes, by path: `/empty-400` is a `400 Bad
/// Request` with no body; `/mimic` is a `200` whose body begins with that status line.
/// Counts the requests it answers.
async fn raw_upstream() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = Arc::new(AtomicU64::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = pending.drain(..end + 4).collect();
                        count.fetch_add(1, Ordering::SeqCst);
                        let answer: &[u8] = if head.starts_with(b"GET /empty-400 ") {
                            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 28\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n"
                        };
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, seen)
}

/// The responses most like hyper's answers, on a connection whose client pipelines a head
/// that is refused right after them: an upstream's `400 Bad Request` with no body (its
/// request is over before hyper writes it) and a body that begins with that status line.
/// Neither gets `weir-error`; the refusal after them does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_responses_that_look_like_hypers_answers_are_never_tagged() {
    let (up, seen) = raw_upstream().await;
    let port = free_port();
    let weir = Weir::start(&config(port, up, "")).await;
    let mut pipelined = Vec::new();
    for path in ["/empty-400", "/mimic", "/empty-400"] {
        pipelined.extend_from_slice(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    }
    pipelined.extend_from_slice(b"GET / HTTP/1.1\r\nbad header\r\n\r\n");
    let (got, client) = exchange(port, &pipelined).await;
    let got: Vec<String> = responses(&got).iter().map(|r| dateless(r)).collect();
    let empty_400 = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: <date>\r\n\r\n";
    let mimic = "HTTP/1.1 200 OK\r\ncontent-length: 28\r\ndate: <date>\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n";
    assert_eq!(
        got,
        [
            empty_400.to_string(),
            mimic.to_string(),
            empty_400.to_string(),
            answer("400 Bad Request", "bad_request"),
        ]
    );
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let counted = metric_settles(
        &weir,
        "weir_downstream_errors_total",
        &[("listener", "main"), ("kind", "malformed")],
        1.0,
    )
    .await;
    assert_eq!(counted, 1.0);
    let refused = format!(
        "client={client} peer= listener=main route= service= endpoint= method= path= status=400 "
    );
    assert!(
        eventually(Duration::from_secs(3), || weir.logs().contains(&refused)).await,
        "{}",
        weir.logs()
    );
}

/// HTTP/2 (h2c): h2 itself answers a header list over `max_request_header_bytes` with its
/// own HPACK-encoded 431 and resets the stream. weir never sees the request or an error:
/// no `weir-error`, not counted (docs/errors.md says so). Nothing reaches the upstream and
/// the connection goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_http2_header_list_gets_h2s_own_431_which_weir_cannot_tag_or_count() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "max_request_header_bytes: 8192")).await;
    let io = TokioIo::new(TcpStream::connect(local(port)).await.expect("connect"));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = |big: bool| {
        let mut builder = http::Request::get(format!("http://127.0.0.1:{port}/"));
        if big {
            builder = builder.header("x-big", "a".repeat(9000));
        }
        builder.body(Empty::<Bytes>::new()).expect("request")
    };
    let refused = sender.send_request(request(true)).await.expect("an answer");
    assert_eq!(refused.status(), 431);
    assert!(refused.headers().get("weir-error").is_none());
    let served = sender
        .send_request(request(false))
        .await
        .expect("an answer");
    assert_eq!(served.status(), 200);
    let body = served.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"up");
    assert_eq!(up.hits(), 1, "only the second request reached the upstream");
    let metrics = weir.metrics().await;
    let counted = weir::telemetry::prometheus_text::metric_sum(
        &metrics,
        "weir_downstream_errors_total",
        &[("listener", "main"), ("kind", "header_too_large")],
    );
    assert_eq!(counted, 0.0, "h2's refusal never reaches weir");
}

/// HTTP/2 (h2c): a header list over four times `max_request_header_bytes` is not answered:
/// h2 closes the whole connection (`GOAWAY`). That does reach weir, as the error the
/// connection ended with, and is counted as `malformed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_h2_closes_for_a_huge_header_list_is_counted_as_malformed() {
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "max_request_header_bytes: 8192")).await;
    let io = TokioIo::new(TcpStream::connect(local(port)).await.expect("connect"));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    let huge = http::Request::get(format!("http://127.0.0.1:{port}/"))
        .header("x-big", "a".repeat(40_000))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let refused = sender.send_request(huge).await;
    let error = refused.expect_err("no answer, the connection is closed");
    assert!(
        format!("{error:?}").contains("GoAway"),
        "closed with GOAWAY: {error:?}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await;
    assert!(matches!(ended, Ok(Ok(Err(_)))), "{ended:?}");
    let counted = metric_settles(
        &weir,
        "weir_downstream_errors_total",
        &[("listener", "main"), ("kind", "malformed")],
        1.0,
    )
    .await;
    assert_eq!(counted, 1.0);
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    let (status, _, body) = get(local(port), "/", &[]).await.expect("a good client");
    assert_eq!((status, body.as_str()), (200, "up"));
}
