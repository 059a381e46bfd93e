//! Certificate lifetimes as text: `--valid` (`24h`, `90d`, `10y`) in, expiry dates out.
//!
//! The configuration's durations stop at a year; a CA lives for years, so lifetimes have
//! their own small syntax: whole numbers with the units `y` (365 days), `d`, `h`, `m` and
//! `s`, one or several (`1d12h`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest lifetime accepted: a hundred years.
pub const MAX_LIFETIME: Duration = Duration::from_secs(100 * YEAR);

const YEAR: u64 = 365 * DAY;
const DAY: u64 = 24 * 3600;

const UNITS: &[(char, u64)] = &[('y', YEAR), ('d', DAY), ('h', 3600), ('m', 60), ('s', 1)];

const FORM: &str =
    "write whole numbers with a unit (y, d, h, m or s), such as `24h`, `90d` or `10y`";

/// Parses a lifetime such as `24h`, `90d`, `10y` or `1d12h`: more than zero, at most 100
/// years. The error is a sentence that shows the accepted form.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("the lifetime is empty; {FORM}"));
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{s}` has no unit; did you mean `{s}h`? {FORM}"));
    }
    let mut rest = s;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let Some(unit) = after.chars().next() else {
            return Err(format!("`{s}` ends without a unit; {FORM}"));
        };
        let Some(&(_, per)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(if number.is_empty() {
                format!("`{s}` is not a lifetime; {FORM}")
            } else {
                format!("`{s}` has an unknown unit `{unit}`; {FORM}")
            });
        };
        if number.is_empty() {
            return Err(format!("`{s}` is not a lifetime; {FORM}"));
        }
        rest = &after[unit.len_utf8()..];
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(per))
            .and_then(|secs| total.checked_add(secs))
            .filter(|&t| t <= MAX_LIFETIME.as_secs())
            .ok_or_else(|| format!("`{s}` is longer than 100 years; use a shorter lifetime"))?;
    }
    if total == 0 {
        return Err(format!(
            "`{s}` is zero; a certificate must be valid for some time, such as `24h`"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// A point in time as a person reads it in UTC: `2035-05-30 10:00:00 UTC`.
pub fn format_utc(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{secs} seconds since 1970 (UTC)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_whole_units_from_seconds_to_years() {
        let table = [
            ("24h", 24 * 3600),
            ("30m", 1800),
            ("90s", 90),
            ("1d", DAY),
            ("90d", 90 * DAY),
            ("10y", 10 * YEAR),
            ("1d12h", DAY + 12 * 3600),
            (" 1h ", 3600),
            ("100y", 100 * YEAR),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_lifetime(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_lifetime_with_the_form() {
        for (text, says) in [
            ("", "empty"),
            ("24", "did you mean `24h`?"),
            ("0h", "zero"),
            ("0y0d", "zero"),
            ("5w", "unknown unit `w`"),
            ("1.5h", "unknown unit `.`"),
            ("-1h", "not a lifetime"),
            ("h", "not a lifetime"),
            ("1h30", "ends without a unit"),
            ("101y", "longer than 100 years"),
            ("99999999999999999999y", "longer than 100 years"),
        ] {
            let err = parse_lifetime(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
            "2033-05-18 03:33:20 UTC"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,16}") {
            let _ = parse_lifetime(&s);
        }
    }
}
