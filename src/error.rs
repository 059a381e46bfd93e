//! The errors weir answers with itself (DESIGN §5): one type, one place that derives the
//! status code and the `weir-error` code from it.

use std::fmt;

use http::StatusCode;

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
}

impl ErrorCode {
    /// Every code, in a fixed order (used to pre-resolve one metric handle per code).
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::NoRoute,
        ErrorCode::NoHealthyEndpoint,
        ErrorCode::CircuitOpen,
        ErrorCode::Overflow,
        ErrorCode::ConnectFailed,
        ErrorCode::UpstreamReset,
        ErrorCode::Timeout,
        ErrorCode::FaultAbort,
        ErrorCode::IdentityDenied,
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
#[derive(Debug, Clone)]
pub struct ProxyError {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// One line naming the service, endpoint and cause.
    pub detail: String,
    /// A status other than the code's own (fault aborts answer with their configured one).
    pub status: Option<StatusCode>,
}

impl ProxyError {
    /// An error with a human explanation (without the `weir: ` prefix).
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        ProxyError {
            code,
            detail: detail.into(),
            status: None,
        }
    }

    /// An error answered with a specific status (fault injection's abort status).
    pub fn with_status(code: ErrorCode, status: u16, detail: impl Into<String>) -> Self {
        ProxyError {
            code,
            detail: detail.into(),
            status: StatusCode::from_u16(status).ok(),
        }
    }

    /// The status weir answers with.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.status())
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
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
