//! Routing: which route a request takes and which weighted backend serves it.

pub mod fault;
pub mod matcher;
pub mod mirror;
pub mod replay;
pub mod retry;
pub mod table;
pub mod unknown;

pub use table::{Route, RouteBackend, RouteTable};
