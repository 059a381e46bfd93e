//! The edge under hostile clients: silent sockets, idle connections, more connections than
//! allowed, and a flood that exhausts the process's file descriptors. Each test opens the
//! real sockets, asserts what those clients got and what weir counted, and that a
//! well-behaved client is served during or right after.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{eventually, free_port, get, metric_settles, Upstream, Weir};

fn config(port: u16, up: SocketAddr, listener_extra: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n{listener_extra}    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{up}\"] }}\n"
    )
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("address")
}

/// Waits (3 s at most) until the peer closes `stream`, reading and discarding what it
/// sends meanwhile (an HTTP/2 server's SETTINGS, the rest of an answer); how long that took.
async fn closed_after(stream: &mut TcpStream, started: Instant) -> Option<Duration> {
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

/// Polls `weir_downstream_errors_total{listener="main", kind}` until it is `want` (3 s).
async fn downstream_errors(weir: &Weir, kind: &str, want: f64) -> f64 {
    metric_settles(
        weir,
        "weir_downstream_errors_total",
        &[("listener", "main"), ("kind", kind)],
        want,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_and_a_bare_http2_preface_are_closed_after_the_first_byte_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        "    timeouts: { first_byte: 300ms }\n",
    ))
    .await;
    let mut silent = TcpStream::connect(local(port)).await.expect("connect");
    let mut preface = TcpStream::connect(local(port)).await.expect("connect");
    let started = Instant::now();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    for stream in [&mut silent, &mut preface] {
        let took = closed_after(stream, started).await.expect("closed");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
    assert_eq!(downstream_errors(&weir, "timeout", 2.0).await, 2.0);
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    let (status, _, body) = get(local(port), "/", &[]).await.expect("a good client");
    assert_eq!((status, body.as_str()), (200, "up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "    timeouts: { idle: 300ms }\n")).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = vec![0u8; 1024];
    let n = client.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    let took = closed_after(&mut client, answered)
        .await
        .expect("closed when idle");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(downstream_errors(&weir, "timeout", 1.0).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_once_and_counted() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        "    limits: { max_connections: 2 }\n",
    ))
    .await;
    let first = TcpStream::connect(local(port)).await.expect("connect");
    let second = TcpStream::connect(local(port)).await.expect("connect");
    let mut third = TcpStream::connect(local(port)).await.expect("connect");
    let started = Instant::now();
    let took = closed_after(&mut third, started)
        .await
        .expect("the third is closed");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(downstream_errors(&weir, "rejected", 1.0).await, 1.0);
    drop((first, second));
    let served = async {
        for _ in 0..100 {
            if let Ok((200, _, _)) = get(local(port), "/", &[]).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(served.await, "a client is served once the others left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_exhausts_file_descriptors_backs_off_quietly_and_service_resumes() {
    let up = Upstream::start("up").await;
    let port = free_port();
    // 64 descriptors, and no connection cap below them: the flood runs the process out.
    let weir = Weir::start_with_fd_limit(
        &config(port, up.addr, "    limits: { max_connections: 100000 }\n"),
        64,
    )
    .await;
    let mut flood = Vec::new();
    for _ in 0..150 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(local(port))).await
        {
            flood.push(s);
        }
    }
    assert!(
        eventually(Duration::from_secs(3), || weir
            .logs()
            .contains("accept failed"))
        .await,
        "the exhaustion was reported: {}",
        weir.logs()
    );
    // A window in which the exhaustion lasts: count the lines it logs (a rate, so a
    // fixed window rather than a condition).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let warnings = weir.logs().matches("accept failed").count();
    assert!(
        warnings <= 5,
        "{warnings} warnings in about 2 s: the log must not flood\n{}",
        weir.logs()
    );
    drop(flood);
    let served = async {
        for _ in 0..150 {
            if let Ok((200, _, _)) = get(local(port), "/", &[]).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    assert!(
        served.await,
        "a normal client is served again once the flood ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_closes_a_silent_socket_after_ten_seconds_and_keeps_serving() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "")).await;
    let mut silent = TcpStream::connect(weir.admin).await.expect("connect");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(13),
        "{took:?}"
    );
    let (status, _, _) = get(weir.admin, "/ready", &[]).await.expect("admin answers");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_requests_and_oversized_heads_are_refused_and_counted() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "")).await;

    let mut garbage = TcpStream::connect(local(port)).await.expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.1\r\nho st: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = vec![0u8; 256];
    let n = garbage.read(&mut answer).await.expect("answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );

    // A head over the 60 KiB cap: refused without reading on.
    let mut huge = TcpStream::connect(local(port)).await.expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70 * 1024));
    let _ = huge.write_all(&head).await;
    let n = huge.read(&mut answer).await.expect("answer");
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 431"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );

    assert_eq!(downstream_errors(&weir, "malformed", 1.0).await, 1.0);
    assert_eq!(downstream_errors(&weir, "header_too_large", 1.0).await, 1.0);
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
    let (status, _, body) = get(local(port), "/", &[]).await.expect("a good client");
    assert_eq!((status, body.as_str()), (200, "up"));
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
    let weir = Weir::start(&config(port, up.addr, "")).await;
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
    let (status, _, _) = get(local(port), "/", &[]).await.expect("a good client");
    assert_eq!(
        status, 200,
        "a good client is served while they hold their heads"
    );
    let grown = peak_rss_kib(weir.child.id()).saturating_sub(baseline);
    // Each connection may hold its capped buffer (hyper grows it by doubling: up to twice
    // the cap) and some 32 KiB of its own; unbounded, it was about 400 KB each.
    let bound = CONNECTIONS * (2 * 60 + 32);
    assert!(
        grown <= bound,
        "peak RSS grew {grown} KiB for {CONNECTIONS} oversized heads (bound {bound} KiB)"
    );
    assert_eq!(up.hits(), 1, "only the good request reached the upstream");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_its_body_is_cut_off_after_stream_idle_without_a_route_timeout() {
    use tokio::net::TcpListener;
    // Headers and 5 of 100 promised bytes, then nothing, holding the connection open.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let up = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                .await;
            held.push(s);
        }
    });
    let port = free_port();
    let weir = Weir::start(&config(port, up, "    timeouts: { stream_idle: 300ms }\n")).await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let took = closed_after(&mut client, started).await.expect("cut off");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let labels = [("code", "200"), ("error", "timeout")];
    assert_eq!(
        metric_settles(&weir, "weir_http_requests_total", &labels, 1.0).await,
        1.0,
        "counted as a 200 whose body timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_its_body_gets_408_after_stream_idle_without_a_route_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        "    timeouts: { stream_idle: 300ms }\n",
    ))
    .await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let started = Instant::now();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), client.read(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("weir-error: client_timeout"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(
        metric_sum(
            &weir.metrics().await,
            "weir_http_requests_total",
            &[("code", "408"), ("error", "client_timeout")]
        ),
        1.0
    );
    let (status, _, body) = get(local(port), "/", &[]).await.expect("a good client");
    assert_eq!((status, body.as_str()), (200, "up"));
}
