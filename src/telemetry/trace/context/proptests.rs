//! Properties over generated headers and ids: the parsers never panic, and whatever they
//! read is written back and read again unchanged.

use http::header::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::tests::{assert_reads_back, assert_uuid_v4, forward, EVERY_FORMATS};
use super::*;

/// Junk a parser may meet: any header bytes, or the formats' own alphabet.
fn junk() -> impl Strategy<Value = Vec<u8>> {
    let header_byte = prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff];
    prop_oneof![
        proptest::collection::vec(header_byte, 0..72),
        "[0-9a-fA-F\\-dtruefls]{0,70}".prop_map(String::into_bytes),
    ]
}

/// A header value: mostly near-valid for its header (`pattern`), so the parsers get past
/// their first checks, else junk.
fn header_value(pattern: &'static str) -> impl Strategy<Value = HeaderValue> {
    prop_oneof![
        1 => junk(),
        3 => pattern.prop_map(String::into_bytes),
    ]
    .prop_filter_map("a header value", |bytes| {
        HeaderValue::from_bytes(&bytes).ok()
    })
}

/// Every header the parsers read: each absent, present, or repeated.
fn trace_headers() -> impl Strategy<Value = HeaderMap> {
    let fields: [(&str, &str); 6] = [
        (
            "traceparent",
            concat!(
                "00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}",
                "|(cc|ff)-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-[a-z]{0,3})?",
            ),
        ),
        (
            "b3",
            "0|1|d|([0-9a-f]{16}|[0-9a-f]{32})-[0-9a-f]{16}(-(0|1|d)(-[0-9a-f]{16})?)?",
        ),
        ("x-b3-traceid", "[0-9a-f]{16}|[0-9a-f]{32}"),
        ("x-b3-spanid", "[0-9a-f]{16}"),
        ("x-b3-sampled", "0|1|true|False|d"),
        ("x-b3-flags", "0|1|2"),
    ];
    fields
        .map(|(name, pattern)| {
            prop_oneof![
                2 => Just(Vec::new()),
                3 => header_value(pattern).prop_map(|value| vec![value]),
                1 => proptest::collection::vec(header_value(pattern), 2),
            ]
            .prop_map(move |values| {
                values
                    .into_iter()
                    .map(|value| (name, value))
                    .collect::<Vec<_>>()
            })
        })
        .prop_map(|fields| {
            let mut headers = HeaderMap::new();
            for (name, value) in fields.into_iter().flatten() {
                headers.append(name, value);
            }
            headers
        })
}

/// Each listed-formats configuration.
fn formats() -> impl Strategy<Value = Formats> {
    proptest::sample::select(EVERY_FORMATS.to_vec())
}

/// Any valid outgoing context (a short trace id keeps only its low 64 bits).
fn nonzero_outgoing() -> impl Strategy<Value = Outgoing> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 8]>(),
        proptest::option::of(any::<[u8; 8]>()),
        any::<[bool; 4]>(),
    )
        .prop_map(
            |(trace, span, parent, [sampled, debug, b3_single, short])| {
                let mut trace_id = TraceId(trace);
                if short {
                    trace_id.0[..8].fill(0);
                }
                Outgoing {
                    trace_id,
                    span_id: SpanId(span),
                    parent: parent.map(SpanId),
                    sampled,
                    debug,
                    b3_single,
                    short_trace_id: short,
                }
            },
        )
        .prop_filter("non-zero ids", |out| {
            !out.trace_id.is_zero()
                && !out.span_id.is_zero()
                && !out.parent.is_some_and(|p| p.is_zero())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_header_values_read_without_panic_and_reinject_consistently(
        mut headers in trace_headers(),
        formats in formats(),
    ) {
        let first = extract(&headers, formats);
        let out = forward(&first);
        // Over the same headers: whatever junk is left must not change what is read.
        inject(&mut headers, formats, &out, first.from_w3c);
        let again = extract(&headers, formats);
        assert_reads_back(&again, &out);
        if let Some(caller) = first.parent {
            prop_assert_eq!(again.parent.map(|p| p.trace_id), Some(caller.trace_id));
        }
        prop_assert_eq!(again.sampled, Some(first.sampled.unwrap_or(false) || first.debug));
    }

    #[test]
    fn valid_ids_round_trip_through_every_format(
        out in nonzero_outgoing(),
        formats in formats(),
    ) {
        let mut headers = HeaderMap::new();
        inject(&mut headers, formats, &out, false);
        assert_reads_back(&extract(&headers, formats), &out);
    }

    #[test]
    fn any_existing_request_id_is_kept(value in header_value("[ -~]{0,40}")) {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", value.clone());
        ensure_request_id(&mut headers);
        let kept = headers.get("x-request-id").expect("an id");
        if value.is_empty() {
            assert_uuid_v4(kept.to_str().expect("ascii"));
        } else {
            prop_assert_eq!(kept, &value);
        }
    }
}
