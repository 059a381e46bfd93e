//! Endpoint discovery. Static endpoints are set when a service is built; DNS and Kubernetes
//! EndpointSlices refresh them in the background.

pub mod dns;
pub mod kubernetes;
