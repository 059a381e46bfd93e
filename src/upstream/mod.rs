//! Upstreams: services, their endpoints, balancers and per-endpoint connection pools.

pub mod balancer;
pub mod endpoint;
pub mod pool;
pub mod service;

pub use endpoint::{Endpoint, InFlight};
pub use pool::{Exchange, Pool, UpstreamError};
pub use service::{EndpointSet, Service};
