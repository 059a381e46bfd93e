//! TCP listeners: bytes forwarded both ways (plain and through two sidecars over mTLS), a
//! half-closed upload still answered, an idle connection closed, and what is counted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::mtls::TestMesh;
use crate::support::{free_port, metric_settles, Weir};

/// An echo server: every byte back, until the client closes its side.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    address
}

/// A server that reads everything until the client's end of stream, then answers with the
/// count and closes: only a proxy that passes the half-close on lets it answer.
async fn counting_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                if socket.read_to_end(&mut all).await.is_ok() {
                    let _ = socket
                        .write_all(format!("got {} bytes", all.len()).as_bytes())
                        .await;
                }
            });
        }
    });
    address
}

/// Sends `total` bytes of a pattern and reads them back concurrently; true when every byte
/// came back in order.
async fn echoed_intact(port: u16, total: usize) -> bool {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let pattern = |i: usize| (i % 251) as u8;
    let writer = tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let n = chunk.len().min(total - sent);
            for (j, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(sent + j);
            }
            write.write_all(&chunk[..n]).await.expect("write");
            sent += n;
        }
        write.shutdown().await.expect("half-close");
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0;
    let mut intact = true;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(20), read.read(&mut buf))
            .await
            .expect("bytes keep coming")
            .expect("read");
        if n == 0 {
            break;
        }
        intact &= buf[..n]
            .iter()
            .enumerate()
            .all(|(j, b)| *b == pattern(received + j));
        received += n;
    }
    writer.await.expect("writer");
    intact && received == total
}

fn tcp_listener(name: &str, port: u16, service: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    address: 127.0.0.1:{port}\n    protocol: tcp\n{extra}    routes:\n      - name: {name}\n        backends: [{{ service: {service} }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_is_forwarded_both_ways_and_a_half_closed_upload_is_answered() {
    let echo = echo_server().await;
    let counting = counting_server().await;
    let (echo_port, counting_port, idle_port) = (free_port(), free_port(), free_port());
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n{}{}{}services:\n  - {{ name: echo, endpoints: [\"{echo}\"] }}\n  - {{ name: counting, endpoints: [\"{counting}\"] }}\n",
        tcp_listener("echo", echo_port, "echo", ""),
        tcp_listener("counting", counting_port, "counting", ""),
        tcp_listener("quiet", idle_port, "echo", "    timeouts: { idle: 1s }\n"),
    );
    let weir = Weir::start(&yaml).await;

    assert!(
        echoed_intact(echo_port, 5 * 1024 * 1024).await,
        "5 MB echoed"
    );

    let mut upload = TcpStream::connect(("127.0.0.1", counting_port))
        .await
        .expect("connect");
    upload.write_all(&vec![7u8; 100_000]).await.expect("write");
    upload.shutdown().await.expect("half-close");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), upload.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert_eq!(answer, "got 100000 bytes");

    // A connection that moves nothing is closed after the listener's idle timeout.
    let mut quiet = TcpStream::connect(("127.0.0.1", idle_port))
        .await
        .expect("connect");
    let opened = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut rest))
        .await
        .expect("closed by weir")
        .expect("read");
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "{:?}",
        opened.elapsed()
    );

    let labels = [("listener", "echo"), ("service", "echo")];
    assert_eq!(
        metric_settles(&weir, "weir_tcp_connections_total", &labels, 1.0).await,
        1.0
    );
    let metrics = weir.metrics().await;
    for direction in ["upstream", "downstream"] {
        let bytes = weir::telemetry::prometheus_text::metric_sum(
            &metrics,
            "weir_tcp_bytes_total",
            &[("listener", "echo"), ("direction", direction)],
        );
        assert_eq!(bytes, 5.0 * 1024.0 * 1024.0, "{direction}\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_through_two_sidecars_over_mtls_carries_50_mb_intact_and_half_closes() {
    let echo = echo_server().await;
    let counting = counting_server().await;
    let mesh = TestMesh::new();
    let (client_port, server_port) = (free_port(), free_port());
    let (client_counting_port, server_counting_port) = (free_port(), free_port());
    // The server side: a strict tcp listener in front of the echo server.
    let server_yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n{}{}services:\n  - {{ name: echo, endpoints: [\"{echo}\"] }}\n  - {{ name: counting, endpoints: [\"{counting}\"] }}\n",
        mesh.server_identity(),
        tcp_listener(
            "inbound",
            server_port,
            "echo",
            &format!("    tls: {{ mode: strict, allow: [\"{}\"] }}\n", mesh.client_id())
        ),
        tcp_listener(
            "inbound-counting",
            server_counting_port,
            "counting",
            "    tls: { mode: strict }\n"
        ),
    );
    let server = Weir::start(&server_yaml).await;
    // The client side: plaintext in, mTLS to the server sidecar.
    let client_yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n{}{}services:\n  - {{ name: remote, endpoints: [\"127.0.0.1:{server_port}\"], tls: {{ identity: \"{id}\" }} }}\n  - {{ name: remote-counting, endpoints: [\"127.0.0.1:{server_counting_port}\"], tls: {{ identity: \"{id}\" }} }}\n",
        mesh.client_identity(),
        tcp_listener("outbound", client_port, "remote", ""),
        tcp_listener("outbound-counting", client_counting_port, "remote-counting", ""),
        id = mesh.server_id(),
    );
    let client = Weir::start(&client_yaml).await;

    assert!(
        echoed_intact(client_port, 50 * 1024 * 1024).await,
        "50 MB echoed byte for byte\nclient sidecar:\n{}\nserver sidecar:\n{}",
        client.logs(),
        server.logs()
    );
    // A half-closed upload through both sidecars still gets its answer: the close travels
    // as TLS close_notify and the other direction stays open.
    let mut upload = TcpStream::connect(("127.0.0.1", client_counting_port))
        .await
        .expect("connect");
    upload.write_all(&vec![7u8; 100_000]).await.expect("write");
    upload.shutdown().await.expect("half-close");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), upload.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert_eq!(answer, "got 100000 bytes");
    let handshakes = metric_settles(
        &client,
        "weir_tls_handshakes_total",
        &[("listener", "remote"), ("side", "client")],
        1.0,
    )
    .await;
    assert_eq!(handshakes, 1.0, "{}", client.metrics().await);
    let allowed = metric_settles(
        &server,
        "weir_tls_peer_requests_total",
        &[("peer_identity", mesh.client_id()), ("decision", "allow")],
        1.0,
    )
    .await;
    assert_eq!(allowed, 1.0, "{}", server.metrics().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permissive_tcp_listener_serves_a_protocol_whose_server_speaks_first() {
    // A server that greets first, then echoes (SMTP, MySQL and FTP work this way).
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let greeter = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                if socket.write_all(b"220 hello\r\n").await.is_ok() {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                }
            });
        }
    });
    let mesh = TestMesh::new();
    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n{}services:\n  - {{ name: greeter, endpoints: [\"{greeter}\"] }}\n",
        mesh.server_identity(),
        tcp_listener("smtp", port, "greeter", "    tls: { mode: permissive }\n"),
    );
    let _weir = Weir::start(&yaml).await;
    let mut client = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut greeting = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut greeting))
        .await
        .expect("the greeting arrives though the client said nothing")
        .expect("read");
    assert_eq!(&greeting, b"220 hello\r\n");
    client.write_all(b"EHLO x\r\n").await.expect("write");
    let mut echo = [0u8; 8];
    client.read_exact(&mut echo).await.expect("read");
    assert_eq!(&echo, b"EHLO x\r\n");
}

/// A transparent listener forwards bytes that are not HTTP to the service claiming their
/// destination, over the mTLS it terminated; a reload that revokes the peer closes that
/// tunnel, as it drains the listener's HTTP connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transparent_listener_tunnels_bytes_and_a_revoking_reload_closes_the_tunnel() {
    let mesh = TestMesh::new();
    let echo = echo_server().await;
    let (server_port, client_port) = (free_port(), free_port());
    // A connection dialled straight at the listener has the listener's own address as its
    // destination, which `0.0.0.0:PORT` claims: no iptables needed.
    let server_yaml = |allowed: &str| {
        format!(
            "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: in\n    address: 127.0.0.1:{server_port}\n    transparent: true\n    direction: inbound\n    tls: {{ mode: strict, allow: [\"{allowed}\"] }}\nservices:\n  - {{ name: app, endpoints: [\"{echo}\"], addresses: [\"0.0.0.0:{server_port}\"] }}\n",
            mesh.server_identity()
        )
    };
    let server = Weir::start(&server_yaml(mesh.client_id())).await;
    let _client = Weir::start(&format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: out\n    address: 127.0.0.1:{client_port}\n    protocol: tcp\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"127.0.0.1:{server_port}\"], tls: {{ identity: \"{}\" }} }}\n",
        mesh.client_identity(),
        mesh.server_id()
    ))
    .await;
    let mut tunnel = tokio::net::TcpStream::connect(("127.0.0.1", client_port))
        .await
        .expect("connect");
    let hello = b"\x00\x01 not http";
    tunnel.write_all(hello).await.expect("write");
    let mut back = vec![0u8; hello.len()];
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut back))
        .await
        .expect("echoed in time")
        .expect("echoed");
    assert_eq!(
        &back, hello,
        "the bytes went to the claiming service and back"
    );

    crate::reload::write(
        &server,
        &server_yaml("spiffe://cluster.local/ns/shop/sa/nobody"),
    );
    let (status, body) = crate::reload::post_reload(&server).await;
    assert_eq!(status, 200, "{body}");
    let mut rest = [0u8; 16];
    let ended = tokio::time::timeout(Duration::from_secs(5), tunnel.read(&mut rest)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "the revoked peer's tunnel stays open: {ended:?}\nserver log:\n{}",
        server.logs()
    );
    // A new tunnel from the revoked peer is refused: its bytes never reach the service.
    let mut again = tokio::net::TcpStream::connect(("127.0.0.1", client_port))
        .await
        .expect("connect");
    let _ = again.write_all(hello).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), again.read(&mut rest)).await;
    assert!(
        matches!(refused, Ok(Ok(0)) | Ok(Err(_))),
        "a revoked peer's bytes were answered: {refused:?}"
    );
}
