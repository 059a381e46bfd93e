//! Telemetry: the metrics registry, lock-free histograms, process metrics and access logs.
//! It is called by the request path and never calls back into it.

pub mod access_log;
pub mod histogram;
pub mod metrics;
pub mod process;
