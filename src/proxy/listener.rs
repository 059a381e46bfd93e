//! Accepting connections: each accepted socket is served as HTTP/1.1 or HTTP/2 (prior
//! knowledge), detected from its first bytes, until the server drains.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use super::accept::AcceptBackoff;
use super::client_timeouts::{self, ClientClock, ClientTimeouts, Watched};
use super::connection::{Connection, OpenConnection};
use super::detect::{Prefixed, SILENT_CLIENT};
use super::handler::handle;
use super::original_dst::original_destination;
use super::parse_error_answer::Tagged;
use super::parse_error_report::ParseErrorReport;
use super::tls_accept::{ClientStream, InboundTls};
use super::transparent::{divert, Diverted, RelayLimits};
use crate::config::{self, ListenerLimits};
use crate::route::RouteTable;
use crate::telemetry::metrics::{DownstreamErrorLabels, Metrics};

/// What a listener enforces on its connections, resolved from its configuration.
#[derive(Debug, Clone)]
pub struct ListenerPolicy {
    /// The listener's name, for logs.
    pub name: String,
    /// Connection, header and stream bounds.
    pub limits: ListenerLimits,
    /// First-byte, slow-head and idle timeouts.
    pub timeouts: ClientTimeouts,
    /// Bodies that move no byte this long are ended.
    pub stream_idle: Duration,
    /// Mutual TLS, when the listener has it.
    pub tls: Option<Arc<InboundTls>>,
    /// `weir_downstream_errors_total{kind="rejected"}`: connections over `max_connections`.
    rejected: Counter,
    /// `weir_downstream_errors_total{kind="timeout"}`: connections closed by a timeout.
    timed_out: Counter,
    /// Connections ended by a request head the HTTP layer refused (400, 414, 431): counted,
    /// logged and access-logged.
    parse_errors: ParseErrorReport,
}

impl ListenerPolicy {
    /// The policy of `listener`, with its metric handles resolved.
    pub fn new(listener: &config::Listener, metrics: &Metrics) -> Self {
        let counter = |kind: &str| {
            metrics
                .downstream_errors
                .get_or_create_owned(&DownstreamErrorLabels {
                    listener: listener.name.clone(),
                    kind: kind.to_string(),
                })
        };
        ListenerPolicy {
            name: listener.name.clone(),
            limits: listener.limits,
            timeouts: ClientTimeouts {
                first_byte: listener.timeouts.first_byte,
                idle: listener.timeouts.idle,
            },
            stream_idle: listener.timeouts.stream_idle,
            tls: None,
            rejected: counter("rejected"),
            timed_out: counter("timeout"),
            parse_errors: ParseErrorReport::new(&listener.name, counter),
        }
    }

    /// The next connection `listener` may serve, counted among its `open` ones; `None`
    /// once `stop` turns true. A failed accept backs off (see [`AcceptBackoff`]); a
    /// connection beyond `max_connections` is closed at once and counted.
    pub async fn next_connection(
        &self,
        listener: &TcpListener,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut AcceptBackoff,
        open: &Arc<AtomicU32>,
    ) -> Option<(TcpStream, SocketAddr, OpenConnection)> {
        loop {
            let accepted = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return None,
                accepted = listener.accept() => accepted,
            };
            let (stream, client) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    backoff.failed(&self.name, &e).await;
                    continue;
                }
            };
            backoff.succeeded();
            if open.load(Relaxed) >= self.limits.max_connections {
                self.rejected.inc();
                tracing::debug!(%client, listener = %self.name, "max_connections reached; connection closed");
                continue;
            }
            let _ = stream.set_nodelay(true);
            return Some((stream, client, OpenConnection::new(open)));
        }
    }

    /// Serves the listener's connections over `tls` (see [`InboundTls`]).
    pub fn with_tls(mut self, tls: Option<InboundTls>) -> Self {
        self.tls = tls.map(Arc::new);
        self
    }
}

/// What a reload can change under a running listener: what its connections are routed by
/// (`T`: a [`RouteTable`], or a tcp listener's forwarding) and its policy. The accept loop
/// reads the policy as each connection arrives and the connection keeps it; an HTTP
/// request reads the routing as it starts, so a long keep-alive or HTTP/2 connection
/// serves its next request by the configuration in force, and a request in flight finishes
/// by the one it started with.
#[derive(Debug)]
pub struct ListenerSlot<T> {
    /// Routes (or forwarding) in force; HTTP connections hold it to route each request.
    pub routing: Arc<ArcSwap<T>>,
    /// Limits, timeouts and TLS for new connections.
    pub policy: ArcSwap<ListenerPolicy>,
    /// Bumped when the listener's TLS settings (mode, `allow`) changed: the HTTP
    /// connections admitted under the old ones are drained (each finishes the request it
    /// is serving, HTTP/2 clients get GOAWAY) and their clients reconnect under the new
    /// ones, so a reload that revokes a peer is not undone by its open connection.
    pub tls_changed: watch::Sender<u64>,
}

impl<T> ListenerSlot<T> {
    /// A slot holding `routing` and `policy` until a reload replaces them.
    pub fn new(routing: Arc<T>, policy: ListenerPolicy) -> Arc<Self> {
        Arc::new(ListenerSlot {
            routing: Arc::new(ArcSwap::new(routing)),
            policy: ArcSwap::from_pointee(policy),
            tls_changed: watch::channel(0).0,
        })
    }
}

/// What a transparent listener knows of a connection at its accept.
struct Transparent {
    /// Where the client was going.
    destination: SocketAddr,
    /// The routes in force at the accept, which judge the connection.
    table: Arc<RouteTable>,
    /// The listener's TLS generation, which ends the connection's relays when it changes.
    tls_changes: watch::Receiver<u64>,
}

/// The HTTP server settings of a listener with `limits`.
fn http_builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        // Slow heads are cut off by `client_timeouts`, without a timer per request.
        .header_read_timeout(None)
        // A request head beyond the cap is refused with 431 without buffering more; hyper's
        // own default lets one connection buffer about 400 KB.
        .max_buf_size(limits.max_request_header_bytes as usize)
        .max_headers(limits.max_request_headers as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.max_request_header_bytes)
        // One connection's requests beyond it wait in the client, not as upstream
        // connections.
        .max_concurrent_streams(limits.max_concurrent_streams);
    builder
}

/// Accepts connections on `listener` until `stop` turns true, then drains: idle
/// connections close at once, in-flight requests get up to `grace` to finish (HTTP/2 clients
/// receive GOAWAY). Returns whether every connection closed within the grace period.
///
/// `policy` bounds what clients may make it hold: beyond `max_connections` the newest
/// connection is closed at once; a connection that keeps weir waiting longer than its
/// timeouts allow is closed (see [`client_timeouts`]); both are counted.
pub async fn serve(
    listener: TcpListener,
    slot: Arc<ListenerSlot<RouteTable>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let mut policy = slot.policy.load_full();
    let mut builder = Arc::new(http_builder(&policy.limits));
    let mut drain = GracefulShutdown::new();
    // Connections admitted under TLS settings a reload replaced, draining.
    let mut superseded = Vec::new();
    let mut tls_changes = slot.tls_changed.subscribe();
    let open = Arc::new(AtomicU32::new(0));
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            Ok(()) = tls_changes.changed() => {
                let old = std::mem::replace(&mut drain, GracefulShutdown::new());
                superseded.push(tokio::spawn(old.shutdown()));
                continue;
            }
            accepted = policy.next_connection(&listener, &mut stop, &mut backoff, &open) => accepted,
        };
        let Some((stream, client, counted)) = accepted else {
            break;
        };
        // A reload may have replaced the policy while the loop waited.
        let current = slot.policy.load_full();
        if !Arc::ptr_eq(&current, &policy) {
            policy = current;
            builder = Arc::new(http_builder(&policy.limits));
        }
        // A transparent listener routes by where the client was going; the connection is
        // judged by the table in force at its accept. Other listeners pay one load here.
        let transparent = {
            let table = slot.routing.load();
            match &table.unknown {
                None => None,
                Some(_) => original_destination(&stream).map(|destination| Transparent {
                    destination,
                    table: Arc::clone(&table),
                    tls_changes: slot.tls_changed.subscribe(),
                }),
            }
        };
        let destination = transparent.as_ref().map(|t| t.destination);
        let clock = ClientClock::new();
        let drain = drain.watcher();
        let builder = builder.clone();
        let routes = slot.routing.clone();
        let policy = policy.clone();
        let timed_out = policy.timed_out.clone();
        let timeouts = policy.timeouts;
        // The watchdog is a task of its own, so a request's wake-ups of the connection never
        // poll its timer. It closes the connection by aborting the serving task; the serving
        // task stops it when the connection ends first.
        let watchdog_slot: Arc<OnceLock<AbortHandle>> = Arc::default();
        let serving = tokio::spawn({
            let watchdog_slot = watchdog_slot.clone();
            let clock = clock.clone();
            async move {
                // Stage one: TLS and the peer's identity, when the listener has TLS.
                let (stream, peer) = match &policy.tls {
                    None => (ClientStream::Plain(stream), None),
                    // A permissive transparent listener takes a silent client for plaintext
                    // (a server-first protocol), as its detection of HTTP does.
                    Some(tls) => match tls.accept(stream, destination.map(|_| SILENT_CLIENT)).await
                    {
                        Ok((stream, peer)) => (stream, Some(peer)),
                        Err(e) => {
                            tracing::debug!(%client, error = %e.0, "TLS handshake failed");
                            return;
                        }
                    },
                };
                // Stage two, on a transparent listener: a destination no route claims,
                // or bytes that are not HTTP, are relayed (or refused) outside the
                // watchdog's HTTP timeouts.
                let (stream, counted) = match transparent {
                    None => (Prefixed::new(stream, Vec::new()), counted),
                    Some(Transparent {
                        destination,
                        table,
                        tls_changes,
                    }) => {
                        let limits = RelayLimits {
                            idle: policy.timeouts.idle,
                            tls_changes,
                        };
                        match divert(
                            stream,
                            client,
                            destination,
                            table,
                            peer.as_ref(),
                            limits,
                            counted,
                        )
                        .await
                        {
                            Diverted::Http(stream, counted) => (stream, counted),
                            Diverted::Taken => return,
                        }
                    }
                };
                // The connection's state holds its count, so a tunnel (a WebSocket) that
                // outlives hyper's part of the connection still counts against
                // `max_connections`.
                let conn = Arc::new(
                    Connection::new(routes, client, clock.clone(), policy.stream_idle)
                        .counted(counted)
                        .with_peer(peer)
                        .with_destination(destination),
                );
                let state = conn.clone();
                let service = service_fn(move |req| handle(conn.clone(), req));
                let io = TokioIo::new(Tagged::new(Watched::new(stream, clock.clone()), clock));
                let served = builder
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                if let Err(e) = drain.watch(served).await {
                    policy.parse_errors.connection_ended(&state, &*e);
                    tracing::debug!(%client, error = %e, "connection ended with an error");
                }
                if let Some(watchdog) = watchdog_slot.get() {
                    watchdog.abort();
                }
            }
        });
        let connection = serving.abort_handle();
        let watchdog = tokio::spawn(async move {
            let open = || !connection.is_finished();
            if let Some(why) = client_timeouts::expired(&clock, timeouts, open).await {
                connection.abort();
                timed_out.inc();
                tracing::debug!(%client, reason = why.as_str(), "connection closed");
            }
        });
        let _ = watchdog_slot.set(watchdog.abort_handle());
    }
    drop(listener);
    tokio::time::timeout(grace, async {
        drain.shutdown().await;
        for draining in superseded {
            let _ = draining.await;
        }
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::snapshot::Snapshot;
    use crate::telemetry::metrics::Metrics;

    /// An upstream that answers every request `ok` and counts the requests it saw.
    async fn upstream() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
                            pending.drain(..end + 4);
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if socket.write_all(ok).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (address, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_dribbling_its_head_is_cut_off_and_others_are_served() {
        let (up, seen) = upstream().await;
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [\"{up}\"] }}\n"
        );
        let config = crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config;
        let snapshot = Snapshot::build(config, &Metrics::new(), None).expect("builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (_stop, stop) = watch::channel(false);
        let limit = Duration::from_millis(300);
        let mut policy = ListenerPolicy::new(&snapshot.config.listeners[0], &Metrics::new());
        policy.timeouts.first_byte = limit;
        let slot = ListenerSlot::new(snapshot.listeners[0].clone(), policy);
        tokio::spawn(serve(listener, slot, stop, Duration::from_secs(1)));

        let mut slow = TcpStream::connect(address).await.expect("connect");
        let started = Instant::now();
        let head = b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut cut_off = None;
        for byte in head {
            if slow.write_all(&[*byte]).await.is_err() {
                cut_off = Some(started.elapsed());
                break;
            }
            let mut probe = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(50), slow.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut_off = Some(started.elapsed());
                    break;
                }
                Ok(Ok(n)) => panic!(
                    "unexpected answer: {:?}",
                    String::from_utf8_lossy(&probe[..n])
                ),
                Err(_) => {}
            }
        }
        let cut_off = cut_off.expect("the dribbling client was never cut off");
        // The limit runs from the accept, which may come a moment before `connect` returns
        // here.
        assert!(
            cut_off >= limit - Duration::from_millis(20)
                && cut_off < limit + Duration::from_millis(700),
            "cut off after {cut_off:?}"
        );
        assert_eq!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing reached the upstream"
        );

        let mut good = TcpStream::connect(address).await.expect("connect");
        good.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut answer = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(3), good.read(&mut answer))
            .await
            .expect("an answer in time")
            .expect("read");
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
