//! The collector's address, from the `endpoint` URL: where to connect, and the request
//! target and `host` header each export carries.

use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::Uri;

/// A usable `http://` collector URL, taken apart once.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    /// Name or address to connect to (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port (80 when the URL names none).
    pub port: u16,
    /// `host` header: the URL's host and port as written.
    pub host_header: HeaderValue,
    /// Request target: the URL's path and query (`/` when it has none).
    pub target: Uri,
}

impl Endpoint {
    /// Parses `url`; the error says why it cannot be used.
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("the endpoint is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err("https endpoints are not supported yet (use http://)".to_owned())
            }
            _ => return Err("the endpoint must be an http:// URL".to_owned()),
        }
        let authority = uri
            .authority()
            .ok_or_else(|| "the endpoint URL names no host".to_owned())?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err("the endpoint URL names no host".to_owned());
        }
        // Credentials in the URL are not part of the `host` header.
        let host_and_port = authority.as_str().rsplit('@').next().unwrap_or_default();
        let host_header = HeaderValue::from_str(host_and_port)
            .map_err(|_| "the endpoint's host is not a valid header value".to_owned())?;
        let target = match uri.path_and_query() {
            Some(path) if !path.path().is_empty() => path.clone(),
            _ => PathAndQuery::from_static("/"),
        };
        Ok(Endpoint {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            host_header,
            target: Uri::from(target),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> (String, u16, String, String) {
        let e = Endpoint::parse(url).expect("usable");
        let host_header = e.host_header.to_str().expect("ascii").to_owned();
        (e.host, e.port, host_header, e.target.to_string())
    }

    #[test]
    fn an_http_url_gives_host_port_host_header_and_target() {
        assert_eq!(
            parsed("http://otel-collector.observability:4318/v1/traces"),
            (
                "otel-collector.observability".to_owned(),
                4318,
                "otel-collector.observability:4318".to_owned(),
                "/v1/traces".to_owned()
            )
        );
    }

    #[test]
    fn the_port_defaults_to_80_and_the_target_to_slash() {
        assert_eq!(
            parsed("http://collector"),
            (
                "collector".to_owned(),
                80,
                "collector".to_owned(),
                "/".to_owned()
            )
        );
    }

    #[test]
    fn the_query_is_kept_and_credentials_stay_out_of_the_host_header() {
        let (_, _, host_header, target) =
            parsed("http://user:secret@collector:4318/v1/traces?tenant=a");
        assert_eq!(host_header, "collector:4318");
        assert_eq!(target, "/v1/traces?tenant=a");
    }

    #[test]
    fn an_ipv6_address_is_connected_to_without_brackets_and_sent_with_them() {
        assert_eq!(
            parsed("http://[::1]:4318/v1/traces"),
            (
                "::1".to_owned(),
                4318,
                "[::1]:4318".to_owned(),
                "/v1/traces".to_owned()
            )
        );
    }

    #[test]
    fn https_and_other_urls_are_refused_with_the_reason() {
        let https = Endpoint::parse("https://collector:4318/v1/traces").expect_err("refused");
        assert!(https.contains("https"), "{https}");
        for url in [
            "ftp://collector/",
            "collector:4318",
            "/v1/traces",
            "http://",
            "not a url",
        ] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
    }
}
