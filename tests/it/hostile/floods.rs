//! Floods: more connections than allowed, a connection flood that exhausts the process's
//! file descriptors, and one HTTP/2 connection asking for a thousand streams at once.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::{a_good_client_is_served, closed_after, config, downstream_errors, local};
use crate::support::{eventually, free_port, Upstream, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_once_and_counted() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(
        port,
        up.addr,
        up.addr,
        "    limits: { max_connections: 2 }\n",
        "",
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
    // Two connections are all this listener takes: a client is served once they leave.
    drop((first, second));
    a_good_client_is_served(port, "up", Duration::from_secs(2)).await;
    assert_eq!(
        up.paths(),
        ["/good"],
        "only the good client reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_exhausts_file_descriptors_backs_off_quietly_and_service_resumes() {
    let up = Upstream::start("up").await;
    let port = free_port();
    // 64 descriptors, and no connection cap below them: the flood runs the process out.
    let mut weir = Weir::start_with_fd_limit(
        &config(
            port,
            up.addr,
            up.addr,
            "    limits: { max_connections: 100000 }\n",
            "",
        ),
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
    a_good_client_is_served(port, "up", Duration::from_secs(3)).await;
    assert_eq!(up.paths(), ["/good"], "the flood sent no request");
    assert!(
        weir.child.try_wait().expect("wait").is_none(),
        "weir still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http2_connection_gets_at_most_200_concurrent_streams() {
    let up = Upstream::start("up").await;
    up.state
        .delay_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let yaml = format!(
        "{}    connect_timeout: 5s\n",
        config(port, up.addr, up.addr, "", "")
    );
    let weir = Weir::start(&yaml).await;
    // One connection asking for 1,000 streams at once (bounded: 1,000 requests, 30 s); at
    // 200 at a time and 300 ms each, it lasts about 1.5 s.
    let h2load = tokio::task::spawn_blocking(move || {
        std::process::Command::new("timeout")
            .args(["30", "h2load", "-c1", "-m1000", "-n1000", "-t1"])
            .arg(format!("http://127.0.0.1:{port}/"))
            .output()
            .expect("h2load runs")
    });
    assert!(
        eventually(Duration::from_secs(5), || up.hits() > 0).await,
        "h2load's streams reach the upstream"
    );
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    let out = h2load.await.expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    let metrics = weir.metrics().await;
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("weir_http_requests_total") && !l.contains("error=\"none\""))
        .collect();
    assert!(
        text.contains("1000 succeeded"),
        "every request was answered: {text}\nweir's errors: {errors:?}\n{}",
        weir.logs()
    );
    let connections = up.connections();
    assert!(
        (1..=201).contains(&connections),
        "{connections} upstream connections for one client connection and a good client"
    );
    let paths = up.paths();
    assert_eq!(paths.len(), 1001, "each stream once, and the good client");
    assert_eq!(paths.iter().filter(|p| *p == "/good").count(), 1);
}
