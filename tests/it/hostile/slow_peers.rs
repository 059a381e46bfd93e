//! Slow peers: sockets that send nothing, a head dribbled a byte at a time, connections
//! left idle, request bodies a client stops sending, and a response body an upstream stops
//! sending. Each is cut off by its timeout, not earlier and not much later, and counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::telemetry::prometheus_text::metric_sum;

use super::{a_good_client_is_served, closed_after, config, downstream_errors, local};
use crate::support::{free_port, get, metric_settles, Upstream, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_and_a_bare_http2_preface_are_closed_after_the_first_byte_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        up.addr,
        "    timeouts: { first_byte: 300ms }\n",
        "",
    ))
    .await;
    let mut silent = TcpStream::connect(local(port)).await.expect("connect");
    let mut preface = TcpStream::connect(local(port)).await.expect("connect");
    let started = Instant::now();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write");
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    for stream in [&mut silent, &mut preface] {
        let took = closed_after(stream, started).await.expect("closed");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
    assert_eq!(downstream_errors(&weir, "timeout", 2.0).await, 2.0);
    assert_eq!(
        up.paths(),
        ["/good"],
        "only the good client reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_dribbled_a_byte_at_a_time_is_cut_off_after_the_first_byte_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let limit = Duration::from_millis(500);
    let weir = Weir::start(&config(
        port,
        up.addr,
        up.addr,
        "    timeouts: { first_byte: 500ms }\n",
        "",
    ))
    .await;
    let mut slow = TcpStream::connect(local(port)).await.expect("connect");
    let started = Instant::now();
    // One byte every 50 ms (200 bytes, 10 s at most): every byte comes in time, the head
    // never does.
    let mut head = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 200 - head.len()));
    let mut cut_off = None;
    for (i, byte) in head.iter().enumerate() {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        if i == 5 {
            a_good_client_is_served(port, "up", Duration::ZERO).await;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = Some(started.elapsed());
                break;
            }
            Ok(Ok(n)) => panic!(
                "an answer instead of a close: {:?}",
                String::from_utf8_lossy(&probe[..n])
            ),
            Err(_) => {}
        }
    }
    let cut_off = cut_off.expect("the dribbling client was never cut off");
    // The watchdog looks at least every quarter limit; the probe adds up to 50 ms.
    assert!(
        cut_off >= limit && cut_off < limit + Duration::from_millis(700),
        "cut off after {cut_off:?}"
    );
    assert_eq!(downstream_errors(&weir, "timeout", 1.0).await, 1.0);
    assert_eq!(
        up.paths(),
        ["/good"],
        "only the good client reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        up.addr,
        "    timeouts: { idle: 300ms }\n",
        "",
    ))
    .await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let mut answer = vec![0u8; 1024];
    let n = client.read(&mut answer).await.expect("answer");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let answered = Instant::now();
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    let took = closed_after(&mut client, answered)
        .await
        .expect("closed when idle");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(downstream_errors(&weir, "timeout", 1.0).await, 1.0);
    assert_eq!(up.paths(), ["/", "/good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_closes_a_silent_socket_after_ten_seconds_and_keeps_serving() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut silent = TcpStream::connect(weir.admin).await.expect("connect");
    let started = Instant::now();
    let (status, _, _) = get(weir.admin, "/ready", &[]).await.expect("admin answers");
    assert_eq!(
        status, 200,
        "the admin port answers while the silent socket is open"
    );
    a_good_client_is_served(port, "up", Duration::ZERO).await;
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
    assert_eq!(up.paths(), ["/good"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_sending_its_body_gets_408_after_stream_idle_without_a_route_timeout() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        up.addr,
        "    timeouts: { stream_idle: 300ms }\n",
        "",
    ))
    .await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    let started = Instant::now();
    client
        .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    a_good_client_is_served(port, "up", Duration::ZERO).await;
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
    // The body streams: the upstream had the request (and its 10 bytes) when it broke off.
    let mut paths = up.paths();
    paths.sort();
    assert_eq!(paths, ["/good", "/upload"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_send_a_retryable_body_gets_408_within_the_route_timeout() {
    let up = Upstream::start("patient").await;
    let port = free_port();
    let route = "        timeout: 300ms\n        retries: { attempts: 1, on: [gateway-error] }\n";
    let _weir = Weir::start(&config(port, up.addr, up.addr, "", route)).await;
    let mut stream = TcpStream::connect(local(port)).await.unwrap();
    let started = Instant::now();
    // Promise 100 bytes, send 10, then wait: weir buffers a retryable body before sending.
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    a_good_client_is_served(port, "patient", Duration::ZERO).await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer: the body wait was not bounded");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("weir-error: client_timeout"), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert_eq!(
        up.paths(),
        ["/good"],
        "the slow upload never reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_its_body_is_cut_off_after_stream_idle_without_a_route_timeout() {
    // Headers and 5 of 100 promised bytes, then nothing, holding the connection open.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let staller = listener.local_addr().expect("address");
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            if let Ok(1..) = s.read(&mut buf).await {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                .await;
            held.push(s);
        }
    });
    let good = Upstream::start("good").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        staller,
        good.addr,
        "    timeouts: { stream_idle: 300ms }\n",
        "",
    ))
    .await;
    let mut client = TcpStream::connect(local(port)).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    a_good_client_is_served(port, "good", Duration::ZERO).await;
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
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the staller saw one request"
    );
    assert_eq!(good.paths(), ["/good"]);
}
