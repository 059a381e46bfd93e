//! Access-log lines, byte for byte: the text and JSON layouts `tracing-subscriber` gives weir's
//! other log lines, written by hand so that a request pays for a few buffer appends instead of
//! the `tracing` machinery and per-field `format!`.
//!
//! Text: `2026-01-02T03:04:05.123456Z  INFO weir::access: request client=… error=…`.
//! JSON: `{"timestamp":…,"level":"INFO","message":"request","client":…,"target":"weir::access"}`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};

use super::AccessRecord;
use crate::config::LogFormat;

/// Appends the line for `r` (ending in `\n`), stamped with `now`.
pub fn line(out: &mut BytesMut, format: LogFormat, r: &AccessRecord<'_>, now: SystemTime) {
    match format {
        LogFormat::Text => text(out, r, now),
        LogFormat::Json => json(out, r, now),
    }
}

/// The text layout: timestamp, level, target, message, then `key=value` fields.
fn text(out: &mut BytesMut, r: &AccessRecord<'_>, now: SystemTime) {
    timestamp(out, now);
    out.put_slice(b"  INFO weir::access: request client=");
    text_value(out, r.client);
    let fields: [(&[u8], &str); 7] = [
        (b" peer=", r.peer),
        (b" listener=", r.listener),
        (b" route=", r.route),
        (b" service=", r.service),
        (b" endpoint=", r.endpoint),
        (b" method=", r.method),
        (b" path=", r.path),
    ];
    for (key, value) in fields {
        out.put_slice(key);
        text_value(out, value);
    }
    out.put_slice(b" status=");
    integer(out, u64::from(r.status));
    out.put_slice(b" duration_ms=");
    millis(out, r.duration);
    out.put_slice(b" error=");
    text_value(out, r.error);
    out.put_u8(b'\n');
}

/// The JSON layout: one object, the keys in the order `tracing-subscriber` writes them.
fn json(out: &mut BytesMut, r: &AccessRecord<'_>, now: SystemTime) {
    out.put_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.put_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"client\":\"");
    json_string(out, r.client);
    let fields: [(&[u8], &str); 7] = [
        (b"\",\"peer\":\"", r.peer),
        (b"\",\"listener\":\"", r.listener),
        (b"\",\"route\":\"", r.route),
        (b"\",\"service\":\"", r.service),
        (b"\",\"endpoint\":\"", r.endpoint),
        (b"\",\"method\":\"", r.method),
        (b"\",\"path\":\"", r.path),
    ];
    for (key, value) in fields {
        out.put_slice(key);
        json_string(out, value);
    }
    out.put_slice(b"\",\"status\":");
    integer(out, u64::from(r.status));
    out.put_slice(b",\"duration_ms\":");
    millis(out, r.duration);
    out.put_slice(b",\"error\":\"");
    json_string(out, r.error);
    out.put_slice(b"\",\"target\":\"weir::access\"}\n");
}

/// A text field value as is, except that control characters are escaped (`\n`, `\u{1b}`)
/// so that a line is always one line.
fn text_value(out: &mut BytesMut, s: &str) {
    escaped(out, s, is_control, |b, out| match b {
        b'\n' => out.put_slice(b"\\n"),
        b'\r' => out.put_slice(b"\\r"),
        b'\t' => out.put_slice(b"\\t"),
        _ => {
            out.put_slice(b"\\u{");
            hex_byte(out, b);
            out.put_u8(b'}');
        }
    });
}

/// The inside of a JSON string (RFC 8259 §7): quote, backslash and control characters
/// escaped; other characters, UTF-8 included, as they are.
fn json_string(out: &mut BytesMut, s: &str) {
    let special = |b: u8| is_control(b) || b == b'"' || b == b'\\';
    escaped(out, s, special, |b, out| match b {
        b'"' => out.put_slice(b"\\\""),
        b'\\' => out.put_slice(b"\\\\"),
        b'\n' => out.put_slice(b"\\n"),
        b'\r' => out.put_slice(b"\\r"),
        b'\t' => out.put_slice(b"\\t"),
        _ => {
            out.put_slice(b"\\u00");
            hex_byte(out, b);
        }
    });
}

/// ASCII control characters, DEL included.
fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Copies `s`, writing each byte for which `special` holds through `escape`; runs of plain
/// bytes are copied at once. Special bytes are ASCII, so runs split only between characters.
fn escaped(
    out: &mut BytesMut,
    s: &str,
    special: impl Fn(u8) -> bool,
    escape: impl Fn(u8, &mut BytesMut),
) {
    let bytes = s.as_bytes();
    // Most values need no escape: one branch-free scan, then one copy.
    if !bytes.iter().fold(false, |any, &b| any | special(b)) {
        out.put_slice(bytes);
        return;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if special(b) {
            out.put_slice(&bytes[plain..i]);
            escape(b, out);
            plain = i + 1;
        }
    }
    out.put_slice(&bytes[plain..]);
}

/// Two lower-case hex digits.
fn hex_byte(out: &mut BytesMut, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(HEX[usize::from(b >> 4)]);
    out.put_u8(HEX[usize::from(b & 0xf)]);
}

/// "00" to "99": integers are written two digits per division.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The decimal digits of `n` at the end of `digits`, zero-padded to `width`; returns where
/// they start.
fn digits(mut n: u64, width: usize, digits: &mut [u8; 20]) -> usize {
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else if n > 0 || i == digits.len() {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    digits.len().saturating_sub(width).min(i)
}

/// A decimal integer, without going through `fmt`.
fn integer(out: &mut BytesMut, n: u64) {
    padded(out, n, 1);
}

/// A decimal integer left-padded with zeros to `width` (at most 20) digits.
fn padded(out: &mut BytesMut, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let start = digits(n, width, &mut buf);
    out.put_slice(&buf[start..]);
}

/// Milliseconds with exactly three decimals, from whole microseconds (`0.623`, `1500.000`):
/// never a float artefact such as `0.6232740000000001`.
fn millis(out: &mut BytesMut, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    integer(out, us / 1000);
    out.put_u8(b'.');
    padded(out, us % 1000, 3);
}

/// RFC 3339 UTC with microseconds (`2026-01-02T03:04:05.123456Z`), as `tracing-subscriber`
/// stamps weir's other lines. Times before 1970 are written as 1970.
fn timestamp(out: &mut BytesMut, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    // Lines come many per second: the date and time up to the second are written once a
    // second per thread and copied after that.
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != since.as_secs() || cached.1.is_empty() {
            let mut prefix = BytesMut::with_capacity(20);
            date_time(&mut prefix, since.as_secs());
            *cached = (since.as_secs(), prefix.to_vec());
        }
        out.put_slice(&cached.1);
    });
    padded(out, u64::from(since.subsec_micros()), 6);
    out.put_u8(b'Z');
}

/// RFC 3339 UTC to the second (`2026-01-02T03:04:05Z`), for admin answers that say when
/// something happened.
pub fn rfc3339_seconds(at: SystemTime) -> String {
    let mut out = BytesMut::with_capacity(20);
    date_time(
        &mut out,
        at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
    );
    out.truncate(out.len() - 1);
    out.put_u8(b'Z');
    String::from_utf8_lossy(&out).into_owned()
}

thread_local! {
    /// The second last stamped on this thread, and its text up to the decimal point.
    static SECOND: std::cell::RefCell<(u64, Vec<u8>)> = const { std::cell::RefCell::new((0, Vec::new())) };
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the epoch.
fn date_time(out: &mut BytesMut, secs: u64) {
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    padded(out, year, 4);
    out.put_u8(b'-');
    padded(out, month, 2);
    out.put_u8(b'-');
    padded(out, day, 2);
    out.put_u8(b'T');
    padded(out, of_day / 3600, 2);
    out.put_u8(b':');
    padded(out, of_day / 60 % 60, 2);
    out.put_u8(b':');
    padded(out, of_day % 60, 2);
    out.put_u8(b'.');
}

/// Year, month and day of the `days`-th day after 1970-01-01 (proleptic Gregorian; Howard
/// Hinnant's `civil_from_days`, for non-negative days).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Uri};

    /// 2026-01-02T03:04:05.123456Z.
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_767_323_045, 123_456_789)
    }

    fn render(format: LogFormat, r: &AccessRecord<'_>) -> String {
        let mut out = BytesMut::new();
        line(&mut out, format, r, at());
        String::from_utf8(out.to_vec()).expect("utf-8")
    }

    fn record<'a>(method: &'a Method, uri: &'a Uri) -> AccessRecord<'a> {
        AccessRecord {
            client: "10.0.0.7:51234",
            peer: "spiffe://cluster.local/ns/shop/sa/frontend",
            listener: "main",
            route: "reviews",
            service: "reviews-v1",
            endpoint: "127.0.0.1:9080",
            method: method.as_str(),
            path: uri.path(),
            status: 502,
            duration: Duration::from_nanos(623_274_999),
            error: "connect_failed",
        }
    }

    #[test]
    fn text_line_reads_like_tracing_output() {
        let (m, u) = (Method::GET, Uri::from_static("/reviews/1?x=1"));
        assert_eq!(
            render(LogFormat::Text, &record(&m, &u)),
            "2026-01-02T03:04:05.123456Z  INFO weir::access: request client=10.0.0.7:51234 \
             peer=spiffe://cluster.local/ns/shop/sa/frontend listener=main route=reviews service=reviews-v1 endpoint=127.0.0.1:9080 method=GET \
             path=/reviews/1 status=502 duration_ms=623.274 error=connect_failed\n"
        );
    }

    #[test]
    fn text_line_shows_empty_fields_empty_and_escapes_control_characters() {
        let (m, u) = (Method::POST, Uri::from_static("/"));
        let mut r = record(&m, &u);
        (r.route, r.service, r.endpoint, r.error) = ("a b\n\u{1b}[31m\t\"q\"", "", "", "");
        r.status = 404;
        r.duration = Duration::ZERO;
        let text = render(LogFormat::Text, &r);
        assert!(
            text.ends_with(
                " route=a b\\n\\u{1b}[31m\\t\"q\" service= endpoint= method=POST path=/ \
                 status=404 duration_ms=0.000 error=\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches('\n').count(), 1);
    }

    #[test]
    fn json_line_has_tracing_keys_in_tracing_order() {
        let (m, u) = (Method::GET, Uri::from_static("/reviews/1"));
        let mut r = record(&m, &u);
        r.duration = Duration::from_micros(623);
        assert_eq!(
            render(LogFormat::Json, &r),
            r#"{"timestamp":"2026-01-02T03:04:05.123456Z","level":"INFO","message":"request","client":"10.0.0.7:51234","peer":"spiffe://cluster.local/ns/shop/sa/frontend","listener":"main","route":"reviews","service":"reviews-v1","endpoint":"127.0.0.1:9080","method":"GET","path":"/reviews/1","status":502,"duration_ms":0.623,"error":"connect_failed","target":"weir::access"}"#
                .to_string()
                + "\n"
        );
    }

    #[test]
    fn json_strings_are_escaped_so_every_line_parses_back() {
        // A request target may carry quotes and backslashes; names from the configuration
        // may carry anything.
        let (m, u) = (Method::GET, Uri::from_static("/a\"b\\c{x}"));
        let mut r = record(&m, &u);
        r.route = "q\"\\\n\r\t\u{0}\u{1f}\u{7f}é→";
        r.client = "[::1]:8080";
        let text = render(LogFormat::Json, &r);
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(
            text.contains(r#""path":"/a\"b\\c{x}""#),
            "quote and backslash escaped: {text}"
        );
        assert!(
            text.contains(r#""route":"q\"\\\n\r\t\u0000\u001f\u007fé→""#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["path"], "/a\"b\\c{x}");
        assert_eq!(v["route"], r.route);
        assert_eq!(v["client"], "[::1]:8080");
        assert_eq!(v["status"], 502);
        assert_eq!(v["duration_ms"], 623.274);
        assert_eq!(v["target"], "weir::access");
    }

    #[test]
    fn durations_have_exactly_three_decimals_from_whole_microseconds() {
        let ms = |d: Duration| {
            let mut out = BytesMut::new();
            millis(&mut out, d);
            String::from_utf8(out.to_vec()).expect("utf-8")
        };
        assert_eq!(ms(Duration::from_nanos(623_274)), "0.623");
        assert_eq!(ms(Duration::from_nanos(999)), "0.000");
        assert_eq!(ms(Duration::from_micros(1)), "0.001");
        assert_eq!(ms(Duration::from_micros(10_050)), "10.050");
        assert_eq!(ms(Duration::from_secs(90)), "90000.000");
        assert_eq!(ms(Duration::MAX), "18446744073709551.615");
    }

    #[test]
    fn admin_times_are_rfc3339_utc_to_the_second() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_767_323_045_678);
        assert_eq!(rfc3339_seconds(at), "2026-01-02T03:04:05Z");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let ts = |secs: u64, nanos: u32| {
            let mut out = BytesMut::new();
            timestamp(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
            String::from_utf8(out.to_vec()).expect("utf-8")
        };
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(ts(951_868_799, 999_999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(ts(1_735_603_200, 1_000), "2024-12-31T00:00:00.000001Z");
        assert_eq!(
            ts(1_767_323_045, 123_456_789),
            "2026-01-02T03:04:05.123456Z"
        );
    }

    #[test]
    fn integers_are_written_without_fmt() {
        for n in [0, 7, 10, 499, 65_535, u64::MAX] {
            let mut out = BytesMut::new();
            integer(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn integers_match_fmt_at_every_width() {
        for n in [
            0,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1_000,
            12_345,
            1_000_000,
            u64::MAX,
        ] {
            for width in [1, 2, 3, 6, 20] {
                let mut out = BytesMut::new();
                padded(&mut out, n, width);
                assert_eq!(out, format!("{n:0width$}").as_bytes(), "{n} at {width}");
            }
        }
    }
}
