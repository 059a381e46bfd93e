//! The errors weir answers with itself (DESIGN §5): one type, one place that derives the
//! status code and the `weir-error` code from it. Every error is made by a named
//! constructor below, so a call site cannot pair a code with the wrong status or invent a
//! message shape of its own.

use std::fmt;
use std::time::Duration;

use http::StatusCode;

use crate::config::format_duration;

/// Why weir answered a request itself instead of relaying an upstream response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No route of the listener matched the request.
    NoRoute,
    /// The chosen service had no endpoint that could take the request.
    NoHealthyEndpoint,
    /// The service's circuit breaker is open.
    CircuitOpen,
    /// A connection or request limit was reached.
    Overflow,
    /// The TCP connection to the endpoint could not be made.
    ConnectFailed,
    /// The endpoint closed or reset the connection before a complete response.
    UpstreamReset,
    /// The route timeout passed before response headers.
    Timeout,
    /// Fault injection aborted the request.
    FaultAbort,
    /// mTLS peer identity not allowed.
    IdentityDenied,
    /// The client's request was malformed or its body broke off (the client's fault).
    BadRequest,
    /// The client was too slow to send its request body (the client's fault).
    ClientTimeout,
    /// The client's request header block was too large (the client's fault).
    HeaderTooLarge,
    /// The client's request target was longer than the HTTP/1.1 parser takes (the client's
    /// fault).
    UriTooLong,
}

impl ErrorCode {
    /// Every code, in a fixed order (used to pre-resolve one metric handle per code).
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::NoRoute,
        ErrorCode::NoHealthyEndpoint,
        ErrorCode::CircuitOpen,
        ErrorCode::Overflow,
        ErrorCode::ConnectFailed,
        ErrorCode::UpstreamReset,
        ErrorCode::Timeout,
        ErrorCode::FaultAbort,
        ErrorCode::IdentityDenied,
        ErrorCode::BadRequest,
        ErrorCode::ClientTimeout,
        ErrorCode::HeaderTooLarge,
        ErrorCode::UriTooLong,
    ];

    /// The value of the `weir-error` header, the access log and the `error` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoRoute => "no_route",
            ErrorCode::NoHealthyEndpoint => "no_healthy_endpoint",
            ErrorCode::CircuitOpen => "circuit_open",
            ErrorCode::Overflow => "overflow",
            ErrorCode::ConnectFailed => "connect_failed",
            ErrorCode::UpstreamReset => "upstream_reset",
            ErrorCode::Timeout => "timeout",
            ErrorCode::FaultAbort => "fault_abort",
            ErrorCode::IdentityDenied => "identity_denied",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::ClientTimeout => "client_timeout",
            ErrorCode::HeaderTooLarge => "header_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
        }
    }

    /// The status weir answers with for this code (fault aborts use their configured one).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NoRoute => StatusCode::NOT_FOUND,
            ErrorCode::NoHealthyEndpoint | ErrorCode::CircuitOpen | ErrorCode::Overflow => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::ConnectFailed | ErrorCode::UpstreamReset => StatusCode::BAD_GATEWAY,
            ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::FaultAbort => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::IdentityDenied => StatusCode::FORBIDDEN,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::UriTooLong => StatusCode::URI_TOO_LONG,
        }
    }

    /// Position in [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error response weir makes: its code and the one-line explanation sent as the body.
/// Made only by the constructors below.
#[derive(Debug, Clone)]
pub struct ProxyError {
    code: ErrorCode,
    detail: String,
    status: StatusCode,
}

// === impl ProxyError ===

impl ProxyError {
    fn new(code: ErrorCode, detail: String) -> Self {
        ProxyError {
            code,
            detail,
            status: code.status(),
        }
    }

    /// 404 `no_route`: no route of `listener` matches the request.
    pub fn no_route(listener: &str, method: &http::Method, path: &str) -> Self {
        Self::new(
            ErrorCode::NoRoute,
            format!("no route of listener {listener} matches {method} {path}"),
        )
    }

    /// 503 `no_healthy_endpoint`: every backend of `route` has weight 0.
    pub fn no_backend(route: &str) -> Self {
        Self::new(
            ErrorCode::NoHealthyEndpoint,
            format!("route {route} has no backend with a non-zero weight"),
        )
    }

    /// 503 `no_healthy_endpoint`: `service` has no endpoint in rotation.
    pub fn no_endpoint(service: &str) -> Self {
        Self::new(
            ErrorCode::NoHealthyEndpoint,
            format!("service {service} has no endpoint available"),
        )
    }

    /// The fault injector's abort on `route`, answered with its configured `status`
    /// (`fault_abort`).
    pub fn fault_abort(route: &str, status: u16) -> Self {
        let mut err = Self::new(
            ErrorCode::FaultAbort,
            format!("fault injection aborted the request on route {route} with {status}"),
        );
        if let Ok(status) = StatusCode::from_u16(status) {
            err.status = status;
        }
        err
    }

    /// 503 `circuit_open`: the service's breaker refused; `refusal` says why.
    pub fn circuit_open(refusal: &dyn fmt::Display) -> Self {
        Self::new(ErrorCode::CircuitOpen, refusal.to_string())
    }

    /// 503 `overflow`: a limit of `service` was reached; `overflow` names it.
    pub fn overflow(service: &str, overflow: &dyn fmt::Display) -> Self {
        Self::new(
            ErrorCode::Overflow,
            format!("service {service}: {overflow}"),
        )
    }

    /// 502 `connect_failed`: no connection to `endpoint` of `service`.
    pub fn connect_failed(endpoint: &str, service: &str, why: &dyn fmt::Display) -> Self {
        Self::new(
            ErrorCode::ConnectFailed,
            format!("could not connect to endpoint {endpoint} of service {service}: {why}"),
        )
    }

    /// 502 `upstream_reset`: `endpoint` of `service` broke the exchange before a complete
    /// response.
    pub fn upstream_reset(endpoint: &str, service: &str, why: &dyn fmt::Display) -> Self {
        Self::new(
            ErrorCode::UpstreamReset,
            format!("endpoint {endpoint} of service {service}: {why}"),
        )
    }

    /// 504 `timeout`: `endpoint` of `service` did not answer within the per-try timeout.
    pub fn per_try_timeout(endpoint: &str, service: &str, after: Duration) -> Self {
        Self::new(
            ErrorCode::Timeout,
            format!(
                "endpoint {endpoint} of service {service} did not answer within per_try_timeout {}",
                format_duration(after)
            ),
        )
    }

    /// 504 `timeout`: the route timeout passed while `endpoint` of `service` had not
    /// answered.
    pub fn route_timeout(route: &str, timeout: Duration, endpoint: &str, service: &str) -> Self {
        Self::new(
            ErrorCode::Timeout,
            format!(
                "route {route} timed out after {} waiting for endpoint {endpoint} of service {service}",
                format_duration(timeout)
            ),
        )
    }

    /// 408 `client_timeout`: the client did not send its request body on `route` in time.
    pub fn client_timeout(route: &str) -> Self {
        Self::new(
            ErrorCode::ClientTimeout,
            format!("the client did not send its request body on route {route} in time"),
        )
    }

    /// 400 `bad_request`: the client's request head is one weir will not forward (two
    /// `host` fields, say); `why` says what is wrong.
    pub fn bad_request(why: &str) -> Self {
        Self::new(ErrorCode::BadRequest, format!("bad request: {why}"))
    }

    /// 403 `identity_denied`: the peer's identity (none for a plaintext client) is not in
    /// the `allow` list of `listener`.
    pub fn identity_denied(peer: Option<&str>, listener: &str) -> Self {
        let message = match peer {
            Some(id) => format!("peer identity {id} is not allowed by listener {listener}"),
            None => format!(
                "a plaintext client has no peer identity; listener {listener} allows only the identities it lists"
            ),
        };
        Self::new(ErrorCode::IdentityDenied, message)
    }

    /// 400 `bad_request`: the client's request body was malformed or broke off.
    pub fn bad_request_body(why: &dyn fmt::Display) -> Self {
        Self::new(
            ErrorCode::BadRequest,
            format!("the client's request body failed: {why}"),
        )
    }

    /// The stable code (`weir-error`, access log, `error` metric label).
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The status weir answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "weir: {}", self.detail)
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_the_design_statuses() {
        assert_eq!(ErrorCode::NoRoute.status(), 404);
        assert_eq!(ErrorCode::NoHealthyEndpoint.status(), 503);
        assert_eq!(ErrorCode::ConnectFailed.status(), 502);
        assert_eq!(ErrorCode::UpstreamReset.status(), 502);
        assert_eq!(ErrorCode::Timeout.status(), 504);
        assert_eq!(ErrorCode::IdentityDenied.status(), 403);
        assert_eq!(ErrorCode::BadRequest.status(), 400);
        assert_eq!(ErrorCode::ClientTimeout.status(), 408);
        assert_eq!(ErrorCode::HeaderTooLarge.status(), 431);
        assert_eq!(ErrorCode::UriTooLong.status(), 414);
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn constructors_fix_code_status_and_text() {
        let e = ProxyError::fault_abort("r", 418);
        assert_eq!(
            (e.code(), e.status().as_u16()),
            (ErrorCode::FaultAbort, 418)
        );
        let e = ProxyError::client_timeout("upload");
        assert_eq!(
            (e.code(), e.status().as_u16()),
            (ErrorCode::ClientTimeout, 408)
        );
        assert_eq!(
            e.to_string(),
            "weir: the client did not send its request body on route upload in time"
        );
        let e = ProxyError::per_try_timeout("127.0.0.1:1", "s", Duration::from_millis(250));
        assert_eq!(
            e.to_string(),
            "weir: endpoint 127.0.0.1:1 of service s did not answer within per_try_timeout 250ms"
        );
    }
}
