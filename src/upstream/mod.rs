//! Upstreams: services, their endpoints, balancers and per-endpoint connection pools.

pub mod balancer;
pub mod circuit_breaker;
pub mod endpoint;
pub mod health;
pub mod limits;
pub mod outcome;
pub mod outlier;
pub mod pool;
pub mod service;

pub use endpoint::{Endpoint, InFlight};
pub use outcome::Outcome;
pub use pool::{Exchange, UpstreamError};
pub use service::Service;
