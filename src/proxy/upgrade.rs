//! Protocol upgrades (RFC 9110 §7.8), WebSocket above all: which requests may switch
//! protocols through a route, the fields that carry the request upstream and the `101` back,
//! and the tunnel that relays the new protocol's bytes both ways once both sides switched
//! (see [`super::relay`]).
//!
//! Only an HTTP/1.1 client can ask (HTTP/2 has no `Upgrade`), only for the protocols its
//! route lists (`upgrades`, `[websocket]` by default), and only to an HTTP/1.1 service.
//! Any other `upgrade` field is dropped as hop-by-hop and the request is served as plain
//! HTTP, which RFC 9110 allows a server to do.

use std::io;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::finish::{Ending, Finish};
use super::relay::{relay, TunnelEnd};
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
            Ok(client) => relay(TokioIo::new(client), upstream, idle).await.end,
            Err(e) => TunnelEnd::Failed(io::Error::other(e)),
        };
        match &end {
            TunnelEnd::Closed => tracing::debug!("tunnel closed"),
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
}
