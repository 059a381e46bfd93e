//! Accepting connections: each accepted socket is served as HTTP/1.1 or HTTP/2 (prior
//! knowledge), detected from its first bytes, until the server drains.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::handler::{handle, Connection};
use crate::route::RouteTable;

/// How long a client may take to send request headers before the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP server settings shared by every listener.
fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
    builder
}

/// Accepts connections on `listener` until `stop` turns true, then drains: idle
/// connections close at once, in-flight requests get up to `grace` to finish (HTTP/2 clients
/// receive GOAWAY). Returns whether every connection closed within the grace period.
pub async fn serve(
    listener: TcpListener,
    table: Arc<RouteTable>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let builder = Arc::new(http_builder());
    let drain = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Connection::new(table.clone(), client));
        let service = service_fn(move |req| handle(conn.clone(), req));
        let served = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let watched = drain.watch(served);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(%client, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::time::timeout(grace, drain.shutdown()).await.is_ok()
}
