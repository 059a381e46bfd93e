//! The proxy's server side: listeners, the request phases, header rewriting and the
//! response body that carries each request's logging phase.

pub mod accept;
pub mod attempts;
pub mod authorize;
pub mod client_timeouts;
pub mod connection;
pub mod detect;
pub mod finish;
pub mod handler;
pub mod listener;
pub mod opaque;
pub mod original_dst;
pub mod parse_error_answer;
pub mod parse_error_report;
pub mod passthrough;
pub mod relay;
pub mod response;
pub mod tcp;
pub mod tls_accept;
pub mod transparent;
pub mod upgrade;
