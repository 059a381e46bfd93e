//! Upstreams: services, their endpoints, balancers, per-endpoint connection pools and the
//! exchanges that use them.

pub mod balancer;
pub mod circuit_breaker;
pub mod endpoint;
pub mod exchange;
pub mod h1;
pub mod health;
pub mod io;
pub mod limits;
pub mod outcome;
pub mod outlier;
pub mod pool;
pub mod response;
pub mod retry_budget;
pub mod service;
pub mod tls_origin;

pub use endpoint::{Endpoint, InFlight};
pub use exchange::{Exchange, Judged, RequestHolds, UpstreamFailure};
pub use outcome::Outcome;
pub use pool::UpstreamError;
pub use service::Service;
