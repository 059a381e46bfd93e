//! Header rewriting between downstream and upstream: hop-by-hop fields (RFC 9110 §7.6.1),
//! `x-forwarded-for` / `x-forwarded-proto`, and the request target form each HTTP version
//! needs.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{request, Version};

use crate::config::UpstreamProtocol;

/// Fields that describe one connection and never cross a proxy (RFC 9110 §7.6.1), plus the
/// obsolete `proxy-connection`. `te` is handled apart: `te: trailers` is kept for gRPC.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// Whether `name` is a hop-by-hop field (or `te`, when `with_te`). Standard names compare
/// as small integers, so a pass over a message's few names costs less than one hashed
/// removal.
fn is_connection_field(name: &HeaderName, with_te: bool) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || (with_te && name == header::TE)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Removes hop-by-hop fields, including those the `connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few names present is cheaper than five
    // hashed removals.
    if !headers.keys().any(|k| is_connection_field(k, false)) {
        return;
    }
    remove_hop_by_hop(headers);
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Remove only the fields present (most answers carry just `connection: keep-alive`):
    // each removal hashes, and a pass over the names does not.
    let mut present = [false; 5];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        let Ok(value) = value.to_str() else { continue };
        for token in value.split(',').map(str::trim) {
            if token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close")
                || token.is_empty()
            {
                continue; // Already removed below; the common case allocates nothing.
            }
            // `connection: host` must not take the request's target away (RFC 9110 §7.6.1:
            // a sender must not list fields that describe the message itself).
            if token.eq_ignore_ascii_case("host") {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.to_ascii_lowercase().as_bytes()) {
                named.push(name);
            }
        }
    }
    for name in &named {
        headers.remove(name);
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, here)| *here) {
        headers.remove(name);
    }
}

/// What a request forwarded upstream says about its client, worked out once per
/// connection.
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client's IP, for `x-forwarded-for`.
    pub client_ip: HeaderValue,
    /// `x-forwarded-client-cert` for a client that authenticated with mTLS
    /// (`URI=spiffe://...`, Envoy's format); `None` for a plaintext client.
    pub client_cert: Option<HeaderValue>,
}

impl Downstream {
    /// A client at `client_ip`, with its SPIFFE ID when it authenticated with mTLS.
    pub fn new(client_ip: HeaderValue, peer: Option<&str>) -> Self {
        Downstream {
            client_ip,
            client_cert: peer.and_then(|id| HeaderValue::from_str(&format!("URI={id}")).ok()),
        }
    }
}

/// Rewrites request parts for the upstream: strips hop-by-hop fields, keeps `te: trailers`,
/// appends the client to `x-forwarded-for`, sets `x-forwarded-proto` (`https` for a client
/// that came over TLS), replaces any `x-forwarded-client-cert` the client sent with the
/// identity weir verified (a client can claim none: Envoy's `SANITIZE_SET`), and puts the
/// target in the form the upstream's HTTP version needs (see [`set_target`]).
pub fn to_upstream(
    parts: &mut request::Parts,
    client: &Downstream,
    protocol: UpstreamProtocol,
    fallback_authority: &str,
) {
    strip_connection_fields(&mut parts.headers);
    append_forwarded_for(&mut parts.headers, &client.client_ip);
    let headers = &mut parts.headers;
    match &client.client_cert {
        None => {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
            // A pass over the few names present is cheaper than a hashed removal, and
            // almost no request carries the field.
            if headers.keys().any(|k| k == X_FORWARDED_CLIENT_CERT) {
                headers.remove(&X_FORWARDED_CLIENT_CERT);
            }
        }
        Some(cert) => {
            headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
            headers.insert(X_FORWARDED_CLIENT_CERT.clone(), cert.clone());
        }
    }
    set_target(parts, protocol, fallback_authority);
}

/// Removes every field that describes the client's connection rather than the request:
/// hop-by-hop fields and `te`, except `te: trailers`, which gRPC needs end to end.
pub fn strip_connection_fields(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| is_connection_field(k, true)) {
        return;
    }
    let wants_trailers = headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
    });
    remove_hop_by_hop(headers);
    headers.remove(header::TE);
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Puts the request target in the form the upstream's HTTP version needs: origin form and a
/// `host` field for HTTP/1.1; scheme and authority (and no `host`) for HTTP/2.
/// `fallback_authority` is used when the request names none.
pub fn set_target(
    parts: &mut request::Parts,
    protocol: UpstreamProtocol,
    fallback_authority: &str,
) {
    let authority = |parts: &request::Parts| -> Option<Authority> {
        parts.uri.authority().cloned().or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        })
    };
    match protocol {
        UpstreamProtocol::Http1 => {
            parts.version = Version::HTTP_11;
            // An absolute-form target (or HTTP/2's `:authority`) names the target; a `host`
            // field that says otherwise gives way (RFC 9112 §3.2.2).
            if let Some(authority) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
            // The common request, origin form with a `host` field, is already right.
            if !parts.headers.contains_key(header::HOST) {
                let host = authority(parts);
                let host = host.as_ref().map_or(fallback_authority, Authority::as_str);
                if let Ok(v) = HeaderValue::from_str(host) {
                    parts.headers.insert(header::HOST, v);
                }
            }
            if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
                parts.uri = Uri::from(origin_form(&parts.uri));
            }
        }
        UpstreamProtocol::Http2 => {
            let path = origin_form(&parts.uri);
            let authority = authority(parts);
            parts.version = Version::HTTP_2;
            let authority = authority.or_else(|| Authority::try_from(fallback_authority).ok());
            let mut uri = Uri::builder().scheme(Scheme::HTTP).path_and_query(path);
            if let Some(a) = authority {
                uri = uri.authority(a);
            }
            if let Ok(u) = uri.build() {
                parts.uri = u;
            }
            parts.headers.remove(header::HOST);
        }
    }
}

/// The path and query of `uri`, `/` when it has none.
fn origin_form(uri: &Uri) -> PathAndQuery {
    uri.path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    match headers.get(&X_FORWARDED_FOR) {
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), client_ip.clone());
        }
        Some(existing) => {
            let mut joined = Vec::with_capacity(existing.len() + 2 + client_ip.len());
            joined.extend_from_slice(existing.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(client_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_client() -> Downstream {
        Downstream::new(HeaderValue::from_static("10.0.0.9"), None)
    }

    #[test]
    fn a_client_cannot_claim_a_certificate_and_an_mtls_client_is_named() {
        let mut p = Request::get("http://x/")
            .header(
                "x-forwarded-client-cert",
                "URI=spiffe://cluster.local/ns/ops/sa/admin",
            )
            .header("x-forwarded-proto", "https")
            .body(())
            .expect("request")
            .into_parts()
            .0;
        to_upstream(&mut p, &plain_client(), UpstreamProtocol::Http1, "e:1");
        assert!(
            p.headers.get("x-forwarded-client-cert").is_none(),
            "{:?}",
            p.headers
        );
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        let mtls = Downstream::new(
            HeaderValue::from_static("10.0.0.9"),
            Some("spiffe://cluster.local/ns/shop/sa/frontend"),
        );
        let mut p = Request::get("http://x/")
            .header(
                "x-forwarded-client-cert",
                "URI=spiffe://cluster.local/ns/ops/sa/admin",
            )
            .body(())
            .expect("request")
            .into_parts()
            .0;
        to_upstream(&mut p, &mtls, UpstreamProtocol::Http1, "e:1");
        let certs: Vec<_> = p
            .headers
            .get_all("x-forwarded-client-cert")
            .iter()
            .collect();
        assert_eq!(certs, ["URI=spiffe://cluster.local/ns/shop/sa/frontend"]);
        assert_eq!(p.headers["x-forwarded-proto"], "https");
    }
    use http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> request::Parts {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn hop_by_hop_fields_and_those_named_by_connection_are_removed() {
        let mut p = parts(
            "/x",
            &[
                ("connection", "keep-alive, X-Secret"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("upgrade", "h2c"),
                ("te", "gzip"),
                ("x-app", "kept"),
            ],
        );
        to_upstream(&mut p, &plain_client(), UpstreamProtocol::Http1, "svc");
        for gone in ["connection", "keep-alive", "x-secret", "upgrade", "te"] {
            assert!(
                !p.headers.contains_key(gone),
                "{gone} must not be forwarded"
            );
        }
        assert_eq!(p.headers["x-app"], "kept");
    }

    #[test]
    fn te_trailers_survives_for_grpc() {
        let mut p = parts("/svc/Method", &[("te", "trailers")]);
        to_upstream(&mut p, &plain_client(), UpstreamProtocol::Http2, "svc:80");
        assert_eq!(p.headers["te"], "trailers");
    }

    #[test]
    fn forwarded_headers_are_appended_and_set() {
        let mut p = parts(
            "/",
            &[
                ("x-forwarded-for", "1.2.3.4"),
                ("x-forwarded-proto", "https"),
            ],
        );
        to_upstream(&mut p, &plain_client(), UpstreamProtocol::Http1, "svc");
        assert_eq!(p.headers["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
    }

    #[test]
    fn target_form_follows_the_upstream_version() {
        let mut p = parts("http://reviews:9080/r?q=1", &[]);
        to_upstream(&mut p, &plain_client(), UpstreamProtocol::Http1, "fallback");
        assert_eq!(p.uri, "/r?q=1");
        assert_eq!(p.headers["host"], "reviews:9080");

        let mut p = parts("/r", &[("host", "reviews:9080")]);
        to_upstream(&mut p, &plain_client(), UpstreamProtocol::Http2, "fallback");
        assert_eq!(p.uri, "http://reviews:9080/r");
        assert_eq!(p.version, Version::HTTP_2);
    }
}
