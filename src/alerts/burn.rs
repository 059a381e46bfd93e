//! The burn-rate window pairs of the Google SRE workbook (chapter "Alerting on SLOs"), all
//! four: a page when 2 % of a 30-day budget is spent in an hour (14.4x over 1h) or 5 % in six
//! hours (6x over 6h), a ticket when 10 % is spent in a day (3x over 1d) or the budget is being
//! spent as fast as it is earned over three days (1x over 3d). Each long window is paired with
//! a short one, 1/12 of it, that must burn as fast too: the alert stops as soon as the failures
//! stop instead of for as long as the long window remembers them.
//!
//! One table, read by the recording rules (which windows to record) and the alerts.

use super::rules::Severity;

/// The highest burn rate alerted on; an SLO target whose budget cannot burn this fast is
/// refused, since its page could never fire.
pub(crate) const FASTEST_BURN: f64 = 14.4;

/// One window pair: the error ratio must exceed `factor` × budget over both.
pub(crate) struct Burn {
    /// Times the budget the error ratio must exceed.
    pub factor: f64,
    /// The window that measures the burn.
    pub long: &'static str,
    /// The window, a twelfth as long, that ends the alert soon after the failures do.
    pub short: &'static str,
}

/// An alert made of two window pairs, either of which fires it.
pub(crate) struct BurnAlert {
    /// The alert's name.
    pub name: &'static str,
    /// Page or ticket.
    pub severity: Severity,
    /// The two window pairs.
    pub burns: [Burn; 2],
}

/// The workbook's recommended page and ticket conditions.
pub(crate) const BURN_ALERTS: [BurnAlert; 2] = [
    BurnAlert {
        name: "WeirErrorBudgetBurnFast",
        severity: Severity::Page,
        burns: [
            Burn {
                factor: FASTEST_BURN,
                long: "1h",
                short: "5m",
            },
            Burn {
                factor: 6.0,
                long: "6h",
                short: "30m",
            },
        ],
    },
    BurnAlert {
        name: "WeirErrorBudgetBurnSlow",
        severity: Severity::Ticket,
        burns: [
            Burn {
                factor: 3.0,
                long: "1d",
                short: "2h",
            },
            Burn {
                factor: 1.0,
                long: "3d",
                short: "6h",
            },
        ],
    },
];

/// Every window a burn-rate alert reads, shortest first: the windows to record.
pub(crate) fn windows() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = BURN_ALERTS
        .iter()
        .flat_map(|a| a.burns.iter().flat_map(|b| [b.long, b.short]))
        .collect();
    all.sort_by_key(|w| minutes(w));
    all.dedup();
    all
}

/// A window such as `30m`, `6h` or `3d` in minutes.
fn minutes(window: &str) -> u64 {
    let (number, unit) = window.split_at(window.len() - 1);
    let n: u64 = number.parse().unwrap_or(0);
    match unit {
        "d" => n * 24 * 60,
        "h" => n * 60,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_every_burn_window_shortest_first() {
        assert_eq!(windows(), ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    }

    #[test]
    fn each_short_window_is_a_twelfth_of_its_long_one() {
        for alert in &BURN_ALERTS {
            for b in &alert.burns {
                assert_eq!(minutes(b.long), 12 * minutes(b.short), "{}", b.long);
            }
        }
    }
}
