//! How one attempt at an endpoint ended: the single vocabulary that the circuit breaker,
//! outlier detection and retries judge attempts by.

/// The end of one attempt, as far as resilience is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers arrived with this status.
    Response(u16),
    /// The TCP connection could not be made.
    ConnectFailed,
    /// The connection or stream was reset before a complete response.
    Reset,
    /// No response headers within the per-try or route timeout.
    Timeout,
    /// A connection for TCP forwarding was made: a success (no HTTP answer to judge).
    Connected,
}

impl Outcome {
    /// A failure for the circuit breaker (Hystrix): a 5xx, a connect failure, a reset or a
    /// timeout. A 4xx is the client's fault, not the service's.
    pub fn is_failure(self) -> bool {
        match self {
            Outcome::Response(status) => status >= 500,
            Outcome::Connected => false,
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout => true,
        }
    }

    /// Counts toward `consecutive_5xx` (Envoy treats locally originated failures as 5xx).
    pub fn is_5xx(self) -> bool {
        self.is_failure()
    }

    /// Counts toward `consecutive_gateway_errors`: 502, 503, 504, and the failures weir
    /// itself reports as 502/504 (connect failure, reset, timeout).
    pub fn is_gateway_error(self) -> bool {
        match self {
            Outcome::Response(status) => matches!(status, 502..=504),
            Outcome::Connected => false,
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_hystrix_and_envoy() {
        assert!(!Outcome::Response(200).is_failure());
        assert!(
            !Outcome::Response(404).is_failure(),
            "a 4xx is not a failure"
        );
        assert!(Outcome::Response(500).is_failure());
        assert!(
            Outcome::ConnectFailed.is_failure()
                && Outcome::Reset.is_failure()
                && Outcome::Timeout.is_failure()
        );
        assert!(Outcome::Response(500).is_5xx() && !Outcome::Response(500).is_gateway_error());
        assert!(Outcome::Response(503).is_gateway_error());
        assert!(Outcome::ConnectFailed.is_gateway_error());
    }
}
