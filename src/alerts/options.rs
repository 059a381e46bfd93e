//! The two numbers an operator chooses for `weir alerts`: the success-rate SLO and the p99
//! latency threshold. Each is validated when parsed, so a rule file is never generated with an
//! alert that could not fire (a budget too large to burn 14.4x, a latency the histogram cannot
//! measure).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{format_duration, parse_duration};
use crate::telemetry::histogram::BUCKETS_SECONDS;

use super::burn::FASTEST_BURN;

/// Decimals an SLO target may have: 99.9999 % is already a budget of one request in a million.
const MAX_DECIMALS: usize = 4;

/// A success-rate objective such as 99.9 % of requests answered without a 5xx.
///
/// Kept as an exact decimal (hundredths of a thousandth of a percent) so that the error
/// budget is written into the rules as the operator would write it (`0.001`, not
/// `0.0010000000000000009`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SloTarget {
    /// The target in units of 10^-MAX_DECIMALS percent: 99.9 % is 999_000.
    units: u64,
}

/// Units of [`SloTarget`] in 100 %.
const HUNDRED_PERCENT: u64 = 100 * 10u64.pow(MAX_DECIMALS as u32);

impl SloTarget {
    /// The target as a percentage, as the operator would write it (`99.9`).
    pub fn percent_text(&self) -> String {
        decimal(self.units, MAX_DECIMALS)
    }

    /// The error budget as a ratio of requests (`0.001` for 99.9 %), as PromQL text.
    pub fn budget_text(&self) -> String {
        decimal(HUNDRED_PERCENT - self.units, MAX_DECIMALS + 2)
    }

    /// The error budget as a percentage (`0.1` for 99.9 %), as text.
    pub fn budget_percent_text(&self) -> String {
        decimal(HUNDRED_PERCENT - self.units, MAX_DECIMALS)
    }

    /// The error budget as a ratio of requests.
    fn budget(&self) -> f64 {
        (HUNDRED_PERCENT - self.units) as f64 / HUNDRED_PERCENT as f64
    }
}

impl Default for SloTarget {
    /// 99.9 %: three nines, the usual first objective for a request-serving service.
    fn default() -> Self {
        SloTarget { units: 999_000 }
    }
}

impl FromStr for SloTarget {
    type Err = InvalidOption;

    fn from_str(text: &str) -> Result<Self, InvalidOption> {
        const FORM: &str = "write the percentage of requests that must succeed, such as `99.9`";
        let s = text.trim();
        let number = s.strip_suffix('%').unwrap_or(s);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |d: &str| d.chars().all(|c| c.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(InvalidOption(format!("`{s}` is not a percentage; {FORM}")));
        }
        if fraction.len() > MAX_DECIMALS {
            return Err(InvalidOption(format!(
                "`{s}` has more than {MAX_DECIMALS} decimals; {FORM}"
            )));
        }
        let scaled = format!("{whole}{fraction:0<MAX_DECIMALS$}");
        let units = scaled
            .parse::<u64>()
            .ok()
            .filter(|&u| u < HUNDRED_PERCENT)
            .ok_or_else(|| {
                InvalidOption(format!(
                    "`{s}` leaves no error budget; the target must be below 100, such as `99.9`"
                ))
            })?;
        let target = SloTarget { units };
        // The fastest page fires at 14.4 times the budget: with a budget of 1/14.4 or more,
        // that is more failures than requests and the page could never fire.
        if target.budget() * FASTEST_BURN >= 1.0 {
            let lowest = 100.0 - 100.0 / FASTEST_BURN;
            return Err(InvalidOption(format!(
                "`{s}` is too low: its error budget of {}% burnt {FASTEST_BURN}x is more \
                 failures than requests, so the page alert could never fire; the target must \
                 be at least {lowest:.2}, such as `99.9`",
                target.budget_percent_text()
            )));
        }
        Ok(target)
    }
}

/// The p99 latency above which a service alerts: a positive duration the request-duration
/// histogram can measure (below its largest finite bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyThreshold(Duration);

impl LatencyThreshold {
    /// The threshold in seconds, as PromQL text (`0.5`).
    pub fn seconds_text(&self) -> String {
        self.0.as_secs_f64().to_string()
    }

    /// The threshold as weir writes durations (`500ms`).
    pub fn duration_text(&self) -> String {
        format_duration(self.0)
    }
}

impl Default for LatencyThreshold {
    /// 500 ms: well above a healthy in-cluster call, well below a client's patience.
    fn default() -> Self {
        LatencyThreshold(Duration::from_millis(500))
    }
}

impl FromStr for LatencyThreshold {
    type Err = InvalidOption;

    fn from_str(text: &str) -> Result<Self, InvalidOption> {
        let d = parse_duration(text).map_err(InvalidOption)?;
        let largest = BUCKETS_SECONDS[BUCKETS_SECONDS.len() - 1];
        if d.is_zero() {
            return Err(InvalidOption(format!(
                "`{}` is zero; the threshold must be a positive duration such as `500ms`",
                text.trim()
            )));
        }
        if d.as_secs_f64() >= largest {
            return Err(InvalidOption(format!(
                "`{}` is not below {largest}s, the largest finite bucket of \
                 weir_http_request_duration_seconds: a p99 that high cannot be measured, so \
                 the alert could never fire",
                text.trim()
            )));
        }
        Ok(LatencyThreshold(d))
    }
}

/// Why a `weir alerts` option was refused: a sentence naming the value and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOption(String);

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidOption {}

/// `units` × 10^-`scale` as a decimal without trailing zeros: (1, 3) is `0.001`.
fn decimal(units: u64, scale: usize) -> String {
    let digits = format!("{units:0>width$}", width = scale + 1);
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(text: &str) -> Result<SloTarget, String> {
        text.parse::<SloTarget>().map_err(|e| e.to_string())
    }

    #[test]
    fn slo_targets_keep_the_budget_exact() {
        for (text, percent, budget) in [
            ("99.9", "99.9", "0.001"),
            ("99.95", "99.95", "0.0005"),
            ("99.90", "99.9", "0.001"),
            ("99", "99", "0.01"),
            ("99.9999", "99.9999", "0.000001"),
            ("99.5%", "99.5", "0.005"),
            ("95", "95", "0.05"),
        ] {
            let t = slo(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (t.percent_text(), t.budget_text()),
                (percent.into(), budget.into())
            );
        }
        assert_eq!(SloTarget::default(), slo("99.9").expect("valid"));
    }

    #[test]
    fn slo_targets_that_cannot_alert_are_refused_with_the_fix() {
        for (text, says) in [
            ("abc", "`abc` is not a percentage; write the percentage"),
            ("", "`` is not a percentage"),
            ("-5", "`-5` is not a percentage"),
            ("1e2", "`1e2` is not a percentage"),
            (".9", "`.9` is not a percentage"),
            ("99.99999", "`99.99999` has more than 4 decimals"),
            (
                "100",
                "`100` leaves no error budget; the target must be below 100",
            ),
            ("250", "`250` leaves no error budget"),
            ("99999999999999999999", "leaves no error budget"),
            (
                "90",
                "`90` is too low: its error budget of 10% burnt 14.4x is more failures than \
                 requests, so the page alert could never fire; the target must be at least 93.06",
            ),
            ("93.05", "`93.05` is too low"),
        ] {
            let err = slo(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(slo("93.06").is_ok(), "the lowest target that can page");
    }

    #[test]
    fn latency_thresholds_are_weir_durations_the_histogram_can_measure() {
        let t: LatencyThreshold = "250ms".parse().expect("valid");
        assert_eq!(
            (t.seconds_text(), t.duration_text()),
            ("0.25".into(), "250ms".into())
        );
        let t: LatencyThreshold = "1.5s".parse().expect("valid");
        assert_eq!(t.seconds_text(), "1.5");
        assert_eq!(LatencyThreshold::default().seconds_text(), "0.5");
        for (text, says) in [
            ("500", "has no unit; did you mean `500s`?"),
            ("fast", "is not a duration"),
            ("0s", "`0s` is zero"),
            ("30s", "`30s` is not below 30s, the largest finite bucket"),
            ("1m", "`1m` is not below 30s"),
        ] {
            let err = text
                .parse::<LatencyThreshold>()
                .expect_err(text)
                .to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn decimals_drop_trailing_zeros_only() {
        assert_eq!(decimal(1, 3), "0.001");
        assert_eq!(decimal(10, 3), "0.01");
        assert_eq!(decimal(999_000, 4), "99.9");
        assert_eq!(decimal(1_000_000, 4), "100");
        assert_eq!(decimal(0, 2), "0");
    }
}
