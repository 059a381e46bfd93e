//! Durations as text, in the syntax the configuration writes them (`250ms`, `10s`, `1m`,
//! `1h`, `500us`, `1.5s`, `1m30s`): the one parser, and the one place a `Duration` becomes
//! text for people, whether in a configuration dump, an error message, a log line or the
//! demo's summary. Every form printed here parses back with [`parse_duration`].

use std::time::Duration;

const NANOS_PER_HOUR: u128 = 3_600_000_000_000;
const NANOS_PER_MINUTE: u128 = 60_000_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_MICRO: u128 = 1_000;

/// The units, longest spelling first so that `ms` is not read as `m` followed by `s`.
const UNITS: &[(&str, u128)] = &[
    ("ms", NANOS_PER_MILLI),
    ("us", NANOS_PER_MICRO),
    ("µs", NANOS_PER_MICRO),
    ("ns", 1),
    ("h", NANOS_PER_HOUR),
    ("m", NANOS_PER_MINUTE),
    ("s", NANOS_PER_SECOND),
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

/// Prints a duration exactly, in the form a person would write it in the configuration:
/// whole hours or minutes as `1h` or `2m`, otherwise the largest of `s`, `ms`, `us` and `ns`
/// that the duration reaches, with as many decimals as it needs (`1.5s`, `250ms`, `1.5ms`).
///
/// This is the form for everything a person configured or may copy back into a file:
/// configuration dumps, validation and error messages, log fields.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (unit, per) in [("h", NANOS_PER_HOUR), ("m", NANOS_PER_MINUTE)] {
        if nanos % per == 0 {
            return format!("{}{unit}", nanos / per);
        }
    }
    for (unit, per, decimals) in [
        ("s", NANOS_PER_SECOND, 9),
        ("ms", NANOS_PER_MILLI, 6),
        ("us", NANOS_PER_MICRO, 3),
    ] {
        if nanos >= per {
            let (whole, fraction) = (nanos / per, nanos % per);
            if fraction == 0 {
                return format!("{whole}{unit}");
            }
            let fraction = format!("{fraction:0decimals$}");
            return format!("{whole}.{}{unit}", fraction.trim_end_matches('0'));
        }
    }
    format!("{nanos}ns")
}

/// Prints a duration as whole seconds, rounded up (`30s`; `1s` for 1ms): for a countdown,
/// where "back in 0s" before the time has come would be wrong.
pub fn format_whole_seconds_rounded_up(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!("{secs}s")
}

/// Prints a measured time in seconds with always one decimal (`15.0s`, `3.3s`), so that
/// times measured in one run read alike.
pub fn format_seconds_one_decimal(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Prints a time in seconds with one decimal, left out for whole seconds (`7.5s`, `15s`):
/// for a clock that counts up to a duration a person typed.
pub fn format_seconds_one_decimal_unless_whole(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format_seconds_one_decimal(d)
    }
}

/// Prints a measured latency with about three significant digits (`0.85ms`, `41.8ms`,
/// `1.20s`): enough to compare percentiles, no more.
pub fn format_latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn format_duration_prints_exactly_in_the_largest_unit_a_person_would_write() {
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::from_micros(500), "500us"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(1250), "1.25s"),
            (Duration::from_nanos(1_000_000_001), "1.000000001s"),
            (Duration::from_secs(15), "15s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(300), "5m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_millis(3_600_500), "3600.5s"),
        ];
        for (d, text) in table {
            assert_eq!(format_duration(d), text, "{d:?}");
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn whole_seconds_round_up() {
        let table = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(1), "1s"),
            (Duration::from_secs(12), "12s"),
            (Duration::from_millis(11_001), "12s"),
            (Duration::from_secs(300), "300s"),
        ];
        for (d, text) in table {
            assert_eq!(format_whole_seconds_rounded_up(d), text, "{d:?}");
        }
    }

    #[test]
    fn seconds_with_one_decimal() {
        let table = [
            (Duration::ZERO, "0.0s", "0s"),
            (Duration::from_millis(500), "0.5s", "0.5s"),
            (Duration::from_millis(3_333), "3.3s", "3.3s"),
            (Duration::from_secs(3), "3.0s", "3s"),
            (Duration::from_millis(7_500), "7.5s", "7.5s"),
            (Duration::from_millis(9_003), "9.0s", "9.0s"),
            (Duration::from_secs(15), "15.0s", "15s"),
            (Duration::from_millis(15_004), "15.0s", "15.0s"),
        ];
        for (d, always, unless_whole) in table {
            assert_eq!(format_seconds_one_decimal(d), always, "{d:?}");
            assert_eq!(
                format_seconds_one_decimal_unless_whole(d),
                unless_whole,
                "{d:?}"
            );
            for text in [always, unless_whole] {
                assert!(parse_duration(text).is_ok(), "{text}");
            }
        }
    }

    #[test]
    fn latencies_keep_about_three_significant_digits() {
        let table = [
            (Duration::from_micros(850), "0.85ms"),
            (Duration::from_micros(9_994), "9.99ms"),
            (Duration::from_millis(10), "10.0ms"),
            (Duration::from_micros(41_800), "41.8ms"),
            (Duration::from_millis(100), "100.0ms"),
            (Duration::from_millis(1_200), "1.20s"),
        ];
        for (d, text) in table {
            assert_eq!(format_latency(d), text, "{d:?}");
            assert!(parse_duration(text).is_ok(), "{text}");
        }
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
