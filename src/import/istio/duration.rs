//! Istio's durations (protobuf `Duration` as text: `10s`, `0.5s`, `100ms`, `1m`, `1h`).

use std::time::Duration;

use crate::import::report::Reports;
use crate::import::source::Obj;

/// The duration at `field`; `None` (with an error report) when it is not one.
pub fn read(field: &Obj<'_>, reports: &mut Reports) -> Option<Duration> {
    let text = field.text().unwrap_or_default();
    match crate::config::parse_duration(text.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            field.error(reports, format!("{text:?} is not a duration: {e}"));
            None
        }
    }
}
