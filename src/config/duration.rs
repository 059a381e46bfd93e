//! Durations as the configuration writes them: `250ms`, `10s`, `1m`, `1h`, `500us`, `1m30s`.

use std::time::Duration;

/// The units, longest spelling first so that `ms` is not read as `m` followed by `s`.
const UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("us", 1_000),
    ("µs", 1_000),
    ("ns", 1),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
];

/// What every duration error ends with: the accepted form.
pub(crate) const FORM: &str =
    "write a number followed by a unit (h, m, s, ms, us or ns), such as `250ms`, `10s` or `1m`";

/// The longest duration accepted: one year.
const MAX_NANOS: u128 = 365 * 24 * 3600 * 1_000_000_000;

/// Parses a duration such as `250ms`, `1.5s` or `1m30s`.
///
/// The error is a complete sentence saying what is wrong and showing the accepted form.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("the duration is empty; {FORM}"));
    }
    if s.starts_with('-') {
        return Err(format!(
            "`{s}` is negative; durations cannot be negative, {FORM}"
        ));
    }
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!(
            "`{s}` has no unit; did you mean `{s}s`? {}",
            capitalize(FORM)
        ));
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        if number.is_empty() {
            return Err(format!("`{s}` is not a duration; {FORM}"));
        }
        let Some(&(unit, per)) = UNITS.iter().find(|(u, _)| after.starts_with(u)) else {
            let unit: String = after.chars().take_while(|c| c.is_alphabetic()).collect();
            return Err(if unit.is_empty() {
                format!("`{s}` is not a duration; {FORM}")
            } else {
                format!("`{s}` has an unknown unit `{unit}`; {FORM}")
            });
        };
        rest = &after[unit.len()..];
        let nanos = scaled(number, per).ok_or_else(|| {
            format!("`{s}` is not a duration (bad number `{number}`, or finer than 1ns, or too large); {FORM}")
        })?;
        total = total
            .checked_add(nanos)
            .ok_or_else(|| format!("`{s}` is too large for a duration"))?;
    }
    // Deadlines are computed as now + duration; a year is beyond any sensible setting and
    // keeps that sum far from overflowing.
    if total > MAX_NANOS {
        return Err(format!(
            "`{s}` is longer than a year (8760h); use a shorter duration"
        ));
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("`{s}` is too large for a duration"))?;
    // The remainder is below 1e9, so it always fits.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits with at most one `.`) times `per` nanoseconds, exactly.
fn scaled(number: &str, per: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') || frac.len() > 18 {
        return None;
    }
    let int_value: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = int_value.checked_mul(per)?;
    if !frac.is_empty() {
        let frac_value: u128 = frac.parse().ok()?;
        let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
        let part = frac_value.checked_mul(per)?;
        if part % scale != 0 {
            return None;
        }
        nanos = nanos.checked_add(part / scale)?;
    }
    Some(nanos)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::format_duration;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_a_bare_number_and_suggests_seconds() {
        let err = parse_duration("10").expect_err("no unit");
        assert!(err.contains("no unit"), "{err}");
        assert!(err.contains("`10s`"), "{err}");
    }

    #[test]
    fn rejects_negatives_garbage_and_unknown_units() {
        assert!(parse_duration("-5s")
            .expect_err("negative")
            .contains("negative"));
        assert!(parse_duration("soon")
            .expect_err("garbage")
            .contains("not a duration"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("5d")
            .expect_err("unit")
            .contains("unknown unit `d`"));
        assert!(parse_duration("").expect_err("empty").contains("empty"));
        assert!(parse_duration("1.0000000001s").is_err());
        assert!(parse_duration("1..5s").is_err());
        assert!(parse_duration("99999999999999999999999999999999999999h").is_err());
        assert_eq!(
            parse_duration("8760h"),
            Ok(Duration::from_secs(365 * 24 * 3600))
        );
        assert!(parse_duration("8761h").is_err_and(|e| e.contains("longer than a year")));
    }

    proptest! {
        #[test]
        fn round_trips_with_format_duration(nanos in 0u64..=MAX_NANOS as u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn round_trips_whole_units(n in 1u64..8_760, unit in 0usize..5) {
            let d = match unit {
                0 => Duration::from_secs(n * 3600),
                1 => Duration::from_secs(n * 60),
                2 => Duration::from_secs(n),
                3 => Duration::from_millis(n),
                _ => Duration::from_micros(n),
            };
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_duration(&s);
        }
    }
}
