//! Routing: which route a request takes and which weighted backend serves it.

pub mod matcher;
pub mod table;

pub use table::{Route, RouteBackend, RouteTable};
