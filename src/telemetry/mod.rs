//! Telemetry: the metrics registry, lock-free histograms, process metrics and access logs,
//! and a reader of the metrics text they produce.
//! It is called by the request path and never calls back into it.

pub mod access_log;
pub mod histogram;
pub mod metrics;
pub mod process;
pub mod prometheus_text;
pub mod series;
pub mod trace;
