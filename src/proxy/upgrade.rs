//! Protocol upgrades (RFC 9110 §7.8), WebSocket above all: which requests may switch
//! protocols through a route, the fields that carry the request upstream and the `101` back,
//! and the tunnel that relays the new protocol's bytes both ways once both sides switched.
//!
//! Only an HTTP/1.1 client can ask (HTTP/2 has no `Upgrade`), only for the protocols its
//! route lists (`upgrades`, `[websocket]` by default), and only to an HTTP/1.1 service.
//! Any other `upgrade` field is dropped as hop-by-hop and the request is served as plain
//! HTTP, which RFC 9110 allows a server to do.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::finish::{Ending, Finish};
use crate::upstream::h1::Switched;

/// A request that asks to switch protocols, as its route allows.
#[derive(Debug)]
pub struct Switch {
    /// The `upgrade` value sent upstream.
    pub protocol: HeaderValue,
    /// The client's side of the switch, which hyper hands over once a `101` is written.
    pub client: OnUpgrade,
}

/// The `upgrade` value to send upstream when `req` asks to switch to protocols its route
/// allows (`allowed`, the route's `upgrades`).
pub fn requested<B>(allowed: &[String], req: &Request<B>) -> Option<HeaderValue> {
    // hyper marks the requests that ask to switch (it leaves the client's side of the
    // switch in their extensions): every other request is told apart without a header
    // lookup.
    if allowed.is_empty() || req.extensions().get::<OnUpgrade>().is_none() {
        return None;
    }
    asks_to_switch(allowed, req)
}

/// The `upgrade` value of a request that asks to switch to protocols in `allowed`:
/// HTTP/1.1, `connection: upgrade`, one `upgrade` field, and every protocol it lists
/// allowed.
fn asks_to_switch<B>(allowed: &[String], req: &Request<B>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let asks = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| lists(v, "upgrade"));
    if !asks {
        return None;
    }
    let mut fields = req.headers().get_all(header::UPGRADE).iter();
    let value = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let text = value.to_str().ok()?;
    let allowed = text.split(',').map(str::trim).all(|protocol| {
        // A protocol may carry a version (`websocket/13`); the route names the protocol.
        let name = protocol.split('/').next().unwrap_or_default();
        allowed.iter().any(|u| u.eq_ignore_ascii_case(name))
    });
    allowed.then(|| value.clone())
}

/// Puts the switch request back on a request whose hop-by-hop fields were stripped.
pub fn ask_upstream(headers: &mut HeaderMap, upgrade: &HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, upgrade.clone());
}

/// The fields of the `101` the client gets: the upstream's, without its hop-by-hop fields,
/// and the switch itself (`connection: upgrade` and the upstream's `upgrade`).
pub fn answer_client(headers: &mut HeaderMap) {
    let protocol = headers.get(header::UPGRADE).cloned();
    crate::headers::strip_hop_by_hop(headers);
    if let Some(protocol) = protocol {
        headers.insert(header::UPGRADE, protocol);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Whether a comma-separated field value lists `token` (case-insensitive).
fn lists(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides finished; bytes relayed client→upstream and upstream→client.
    Closed(u64, u64),
    /// No byte moved either way for the idle limit.
    Idle,
    /// A side failed.
    Failed(io::Error),
}

/// Relays bytes both ways between `client` and `upstream` until both have finished (a side
/// that ends has its peer's write side shut), one fails, or no byte moves for `idle`.
pub async fn relay<C, U>(client: C, upstream: U, idle: Duration) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut client = Active::new(client, &last, start);
    let mut upstream = Active::new(upstream, &last, start);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        let quiet_until = start + Duration::from_millis(last.load(Relaxed)) + idle;
        tokio::select! {
            copied = &mut copy => return match copied {
                Ok((up, down)) => TunnelEnd::Closed(up, down),
                Err(e) => TunnelEnd::Failed(e),
            },
            _ = tokio::time::sleep_until(quiet_until) => {
                let moved_at = start + Duration::from_millis(last.load(Relaxed));
                if Instant::now() >= moved_at + idle {
                    return TunnelEnd::Idle;
                }
            }
        }
    }
}

/// A stream that notes when it last read a byte (millisecond resolution, from `start`).
struct Active<'a, T> {
    io: T,
    last: &'a AtomicU64,
    start: Instant,
}

impl<'a, T> Active<'a, T> {
    fn new(io: T, last: &'a AtomicU64, start: Instant) -> Self {
        Active { io, last, start }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = this.start.elapsed().as_millis() as u64;
            this.last.store(now, Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Relays a switched exchange on a task of its own: once hyper hands over the client's
/// connection (after writing the `101`), bytes flow both ways until both sides end or
/// nothing moves for the listener's `stream_idle`. The request is counted and logged
/// (status 101, the tunnel's whole duration) when the tunnel closes; until then it holds
/// its exchange: the endpoint's in-flight count, the service's request slot and the
/// listener's connection count.
pub fn tunnel(client: OnUpgrade, upstream: Switched, finish: Finish) {
    let idle = finish.stream_idle();
    tokio::spawn(async move {
        let end = match client.await {
            Ok(client) => relay(TokioIo::new(client), upstream, idle).await,
            Err(e) => TunnelEnd::Failed(io::Error::other(e)),
        };
        match &end {
            TunnelEnd::Closed(up, down) => {
                tracing::debug!(up, down, "tunnel closed")
            }
            TunnelEnd::Idle => {
                tracing::debug!(?idle, "tunnel closed: no byte moved for stream_idle")
            }
            TunnelEnd::Failed(e) => tracing::debug!(error = %e, "tunnel failed"),
        }
        finish.complete(Ending::Complete, None);
    });
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn request(version: Version, fields: &[(&str, &str)]) -> Request<()> {
        let mut req = Request::new(());
        *req.version_mut() = version;
        for (name, value) in fields {
            req.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        req
    }

    fn websocket_only() -> Vec<String> {
        vec!["websocket".to_string()]
    }

    #[test]
    fn an_allowed_protocol_is_requested_with_its_value() {
        let req = request(
            Version::HTTP_11,
            &[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "WebSocket/13"),
            ],
        );
        let value = asks_to_switch(&websocket_only(), &req).expect("allowed");
        assert_eq!(value, "WebSocket/13");
    }

    #[test]
    fn what_the_route_does_not_allow_is_not_requested() {
        let allowed = websocket_only();
        let cases: [(Version, &[(&str, &str)]); 6] = [
            // `upgrade` without `connection: upgrade` is not a request to switch.
            (Version::HTTP_11, &[("upgrade", "websocket")]),
            (
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "h2c")],
            ),
            // Every listed protocol must be allowed.
            (
                Version::HTTP_11,
                &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
            ),
            (
                Version::HTTP_11,
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("upgrade", "websocket"),
                ],
            ),
            // HTTP/1.0 has no upgrade; HTTP/2 forbids the field.
            (
                Version::HTTP_10,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
            ),
            (
                Version::HTTP_2,
                &[("connection", "upgrade"), ("upgrade", "websocket")],
            ),
        ];
        for (version, fields) in cases {
            assert_eq!(
                requested(&allowed, &request(version, fields)),
                None,
                "{fields:?}"
            );
        }
        let asks = request(
            Version::HTTP_11,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        );
        assert_eq!(requested(&[], &asks), None, "a route with `upgrades: []`");
        assert_eq!(
            requested(&allowed, &asks),
            None,
            "a request hyper did not mark as asking to switch"
        );
    }

    #[test]
    fn the_client_gets_the_switch_and_no_other_hop_by_hop_field() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("secret"));
        headers.insert("sec-websocket-accept", HeaderValue::from_static("k"));
        answer_client(&mut headers);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert_eq!(headers["sec-websocket-accept"], "k");
        assert!(headers.get("x-private").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_relays_both_ways_and_closes_when_quiet() {
        let (client, mut client_far) = duplex(1024);
        let (upstream, mut upstream_far) = duplex(1024);
        let idle = Duration::from_secs(300);
        let tunnel = tokio::spawn(relay(client, upstream, idle));
        // Traffic both ways, spaced by less than the idle limit, keeps it open.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(200)).await;
            client_far.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            upstream_far.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"ping");
            upstream_far.write_all(b"pong").await.expect("write");
            client_far.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"pong");
        }
        assert!(
            !tunnel.is_finished(),
            "600 s of traffic kept the tunnel open"
        );
        let quiet_from = Instant::now();
        let end = tunnel.await.expect("joined");
        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        let quiet = quiet_from.elapsed();
        assert!(
            quiet >= idle - Duration::from_millis(1) && quiet <= idle + Duration::from_millis(5),
            "closed after {quiet:?} of quiet"
        );
        // Both far ends see the close.
        let mut rest = Vec::new();
        client_far.read_to_end(&mut rest).await.expect("read");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_side_that_ends_is_passed_on_and_the_tunnel_closes() {
        let (client, mut client_far) = duplex(1024);
        let (upstream, mut upstream_far) = duplex(1024);
        let tunnel = tokio::spawn(relay(client, upstream, Duration::from_secs(300)));
        client_far.write_all(b"last words").await.expect("write");
        client_far.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        upstream_far
            .read_to_end(&mut got)
            .await
            .expect("the client's end reaches upstream");
        assert_eq!(got, b"last words");
        upstream_far.write_all(b"bye").await.expect("write");
        drop(upstream_far);
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"bye");
        let end = tunnel.await.expect("joined");
        assert!(matches!(end, TunnelEnd::Closed(10, 3)), "{end:?}");
    }
}
