//! Known-good examples from the W3C Trace Context spec and the B3 README, malformed
//! inputs, what injection writes and removes, and request ids.

use http::header::HeaderValue;

use super::hex::{hex_digit, parse_hex};
use super::*;

const W3C: Formats = Formats {
    w3c: true,
    b3: false,
    b3_first: false,
};
const B3_ONLY: Formats = Formats {
    w3c: false,
    b3: true,
    b3_first: false,
};
const W3C_THEN_B3: Formats = Formats {
    w3c: true,
    b3: true,
    b3_first: false,
};
const B3_THEN_W3C: Formats = Formats {
    w3c: true,
    b3: true,
    b3_first: true,
};
pub(super) const EVERY_FORMATS: [Formats; 4] = [W3C, B3_ONLY, W3C_THEN_B3, B3_THEN_W3C];

/// The W3C Trace Context spec's example ids.
const W3C_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const W3C_SPAN: &str = "00f067aa0ba902b7";
/// The B3 README's example ids.
const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SPAN: &str = "e457b5a2e4d86bd1";
const B3_PARENT: &str = "05e3ac9a4f6e3b90";
const B3_SHORT_TRACE: &str = "463ac35c9f6413ad";

fn map(fields: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in fields {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    headers
}

fn trace_id(hex: &str) -> TraceId {
    TraceId(parse_hex(hex.as_bytes()).expect("32 hex digits"))
}

/// `B3_SHORT_TRACE`, left-padded into 128 bits.
fn short_trace_id() -> TraceId {
    trace_id(&format!("{}{B3_SHORT_TRACE}", "0".repeat(16)))
}

fn span_id(hex: &str) -> SpanId {
    SpanId(parse_hex(hex.as_bytes()).expect("16 hex digits"))
}

fn parent(trace: &str, span: &str) -> Option<Parent> {
    Some(Parent {
        trace_id: trace_id(trace),
        span_id: span_id(span),
        short_trace_id: false,
    })
}

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|value| value.to_str().expect("ascii"))
}

/// What a hop forwards after reading `incoming`: the caller's trace with a new span, or a
/// new trace carrying the caller's decision.
pub(super) fn forward(incoming: &Incoming) -> Outgoing {
    let (trace_id, parent, short_trace_id) = match incoming.parent {
        Some(p) => (p.trace_id, Some(p.span_id), p.short_trace_id),
        None => (TraceId::random(), None, false),
    };
    Outgoing {
        trace_id,
        span_id: SpanId::random(),
        parent,
        sampled: incoming.sampled.unwrap_or(false),
        debug: incoming.debug,
        b3_single: incoming.b3_single,
        short_trace_id,
    }
}

/// Re-reading injected headers gives back `out`'s context (B3's own flags only when B3
/// is what was read).
pub(super) fn assert_reads_back(read: &Incoming, out: &Outgoing) {
    let parent = read.parent.expect("a parent");
    assert_eq!(parent.trace_id, out.trace_id);
    assert_eq!(parent.span_id, out.span_id);
    assert_eq!(read.sampled, Some(out.sampled || out.debug));
    if read.from_w3c {
        // B3's form is kept whichever format won (see `extract`); its flags are B3's own.
        assert!(!read.debug && !parent.short_trace_id);
    } else {
        assert_eq!(read.debug, out.debug);
        assert_eq!(read.b3_single, out.b3_single);
        assert_eq!(parent.short_trace_id, out.short_trace_id);
    }
}

#[test]
fn formats_follow_the_list_order() {
    use Propagation::{W3c, B3};
    assert_eq!(Formats::new(&[W3c]), W3C);
    assert_eq!(Formats::new(&[B3]), B3_ONLY);
    assert_eq!(Formats::new(&[W3c, B3]), W3C_THEN_B3);
    assert_eq!(Formats::new(&[B3, W3c]), B3_THEN_W3C);
    assert_eq!(Formats::new(&[B3, W3c, B3]), B3_THEN_W3C);
    let none = Formats::new(&[]);
    assert!(!none.w3c && !none.b3);
    assert_eq!(extract(&map(&[("b3", "1")]), none), Incoming::default());
}

#[test]
fn reads_the_w3c_spec_examples() {
    let sampled = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let read = extract(&map(&[("traceparent", &sampled)]), W3C);
    assert_eq!(
        read,
        Incoming {
            parent: parent(W3C_TRACE, W3C_SPAN),
            sampled: Some(true),
            debug: false,
            b3_single: false,
            from_w3c: true,
        }
    );
    let unsampled = format!("00-{W3C_TRACE}-{W3C_SPAN}-00");
    let read = extract(&map(&[("traceparent", &unsampled)]), W3C);
    assert_eq!(read.sampled, Some(false));
    // Unknown flag bits are ignored; bit 0 is still sampled.
    let other_flags = format!("00-{W3C_TRACE}-{W3C_SPAN}-03");
    let read = extract(&map(&[("traceparent", &other_flags)]), W3C);
    assert_eq!(read.sampled, Some(true));
}

#[test]
fn reads_the_00_fields_of_a_higher_w3c_version() {
    for value in [
        format!("cc-{W3C_TRACE}-{W3C_SPAN}-01"),
        format!("cc-{W3C_TRACE}-{W3C_SPAN}-01-what-the-future-will-be-like"),
        format!("01-{W3C_TRACE}-{W3C_SPAN}-00-"),
    ] {
        let read = extract(&map(&[("traceparent", &value)]), W3C);
        assert_eq!(read.parent, parent(W3C_TRACE, W3C_SPAN), "{value}");
    }
    let glued = format!("cc-{W3C_TRACE}-{W3C_SPAN}-01x");
    assert_eq!(
        extract(&map(&[("traceparent", &glued)]), W3C),
        Incoming::default()
    );
}

#[test]
fn malformed_traceparent_is_no_context() {
    let upper_trace = W3C_TRACE.to_ascii_uppercase();
    let zero_trace = "0".repeat(32);
    let zero_span = "0".repeat(16);
    for value in [
        String::new(),
        "junk".to_owned(),
        format!("00-{upper_trace}-{W3C_SPAN}-01"),
        format!("00-{W3C_TRACE}-{}-01", W3C_SPAN.to_ascii_uppercase()),
        format!("00-{W3C_TRACE}-{W3C_SPAN}-0A"),
        format!("0A-{W3C_TRACE}-{W3C_SPAN}-01"),
        format!("ff-{W3C_TRACE}-{W3C_SPAN}-01"),
        format!("00-{zero_trace}-{W3C_SPAN}-01"),
        format!("00-{W3C_TRACE}-{zero_span}-01"),
        format!("00-{W3C_TRACE}-{W3C_SPAN}-01-"),
        format!("00-{W3C_TRACE}-{W3C_SPAN}-1"),
        format!("00-{W3C_TRACE}-{W3C_SPAN}-011"),
        format!("00-{}-{W3C_SPAN}-01", &W3C_TRACE[1..]),
        format!("00-{W3C_TRACE}0-{W3C_SPAN}-01"),
        format!("00_{W3C_TRACE}_{W3C_SPAN}_01"),
        format!("0-{W3C_TRACE}-{W3C_SPAN}-01"),
        format!(" 00-{W3C_TRACE}-{W3C_SPAN}-01"),
        format!("00-{W3C_TRACE}-{W3C_SPAN}-xy"),
        format!("00-{}g-{W3C_SPAN}-01", &W3C_TRACE[1..]),
    ] {
        let read = extract(&map(&[("traceparent", &value)]), W3C);
        assert_eq!(read, Incoming::default(), "{value:?}");
    }
}

#[test]
fn two_traceparent_fields_are_invalid() {
    let value = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let headers = map(&[("traceparent", &value), ("traceparent", &value)]);
    assert_eq!(extract(&headers, W3C), Incoming::default());
}

#[test]
fn reads_the_b3_readme_multi_header_example() {
    let headers = map(&[
        ("X-B3-TraceId", B3_TRACE),
        ("X-B3-ParentSpanId", B3_PARENT),
        ("X-B3-SpanId", B3_SPAN),
        ("X-B3-Sampled", "1"),
    ]);
    assert_eq!(
        extract(&headers, B3_ONLY),
        Incoming {
            parent: parent(B3_TRACE, B3_SPAN),
            sampled: Some(true),
            debug: false,
            b3_single: false,
            from_w3c: false,
        }
    );
    // No sampling header defers the decision.
    let deferred = map(&[("x-b3-traceid", B3_TRACE), ("x-b3-spanid", B3_SPAN)]);
    let read = extract(&deferred, B3_ONLY);
    assert_eq!(read.parent, parent(B3_TRACE, B3_SPAN));
    assert_eq!(read.sampled, None);
}

#[test]
fn a_64_bit_b3_trace_id_is_left_padded_and_marked_short() {
    let headers = map(&[("x-b3-traceid", B3_SHORT_TRACE), ("x-b3-spanid", B3_SPAN)]);
    let read = extract(&headers, B3_ONLY).parent.expect("a parent");
    assert_eq!(read.trace_id, short_trace_id());
    assert!(read.short_trace_id);
    // A 128-bit id whose high half is zero is still written back in 32 digits.
    let padded = format!("{}{B3_SHORT_TRACE}", "0".repeat(16));
    let headers = map(&[("x-b3-traceid", &padded), ("x-b3-spanid", B3_SPAN)]);
    assert!(
        !extract(&headers, B3_ONLY)
            .parent
            .expect("a parent")
            .short_trace_id
    );
}

#[test]
fn b3_multi_sampling_and_debug() {
    let ids = [("x-b3-traceid", B3_TRACE), ("x-b3-spanid", B3_SPAN)];
    let read = |extra: &[(&str, &str)]| {
        let fields: Vec<_> = ids.iter().chain(extra).copied().collect();
        let read = extract(&map(&fields), B3_ONLY);
        (read.sampled, read.debug)
    };
    assert_eq!(read(&[("x-b3-sampled", "0")]), (Some(false), false));
    assert_eq!(read(&[("x-b3-sampled", "true")]), (Some(true), false));
    assert_eq!(read(&[("x-b3-sampled", "False")]), (Some(false), false));
    assert_eq!(read(&[("x-b3-flags", "1")]), (Some(true), true));
    assert_eq!(read(&[("x-b3-flags", "0")]), (None, false));
    // Debug is an emphasized accept: it overrides a deny.
    let debug_deny = [("x-b3-flags", "1"), ("x-b3-sampled", "0")];
    assert_eq!(read(&debug_deny), (Some(true), true));
    // The first value wins.
    let twice = [("x-b3-sampled", "1"), ("x-b3-sampled", "0")];
    assert_eq!(read(&twice), (Some(true), false));
}

#[test]
fn b3_sampling_without_ids_is_a_decision_without_context() {
    let decision = |fields: &[(&str, &str)]| {
        let read = extract(&map(fields), B3_ONLY);
        assert_eq!(read.parent, None);
        (read.sampled, read.debug, read.b3_single)
    };
    assert_eq!(
        decision(&[("x-b3-sampled", "0")]),
        (Some(false), false, false)
    );
    assert_eq!(
        decision(&[("x-b3-sampled", "1")]),
        (Some(true), false, false)
    );
    assert_eq!(decision(&[("x-b3-flags", "1")]), (Some(true), true, false));
    assert_eq!(decision(&[("b3", "0")]), (Some(false), false, true));
    assert_eq!(decision(&[("b3", "1")]), (Some(true), false, true));
    assert_eq!(decision(&[("b3", "d")]), (Some(true), true, true));
    // A parent span id alone says nothing.
    let parent_only = map(&[("x-b3-parentspanid", B3_PARENT)]);
    assert_eq!(extract(&parent_only, B3_ONLY), Incoming::default());
}

#[test]
fn reads_the_b3_readme_single_header_examples() {
    let single = |value: &str| extract(&map(&[("b3", value)]), B3_ONLY);
    let with_parent = single(&format!("{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}"));
    assert_eq!(
        with_parent,
        Incoming {
            parent: parent(B3_TRACE, B3_SPAN),
            sampled: Some(true),
            debug: false,
            b3_single: true,
            from_w3c: false,
        }
    );
    let sampled = single(&format!("{B3_TRACE}-{B3_SPAN}-1"));
    assert_eq!(
        (sampled.parent, sampled.sampled),
        (parent(B3_TRACE, B3_SPAN), Some(true))
    );
    let debug = single(&format!("{B3_TRACE}-{B3_SPAN}-d"));
    assert_eq!((debug.sampled, debug.debug), (Some(true), true));
    let deferred = single(&format!("{B3_TRACE}-{B3_SPAN}"));
    assert_eq!(
        (deferred.parent, deferred.sampled),
        (parent(B3_TRACE, B3_SPAN), None)
    );
    let short = single(&format!("{B3_SHORT_TRACE}-{B3_SPAN}-0"));
    let short_parent = short.parent.expect("a parent");
    assert!(short_parent.short_trace_id);
    assert_eq!(short.sampled, Some(false));
}

#[test]
fn the_b3_single_header_takes_precedence_over_multi() {
    let single = format!("{B3_TRACE}-{B3_SPAN}-0");
    let other_trace = "11111111111111111111111111111111";
    let mut headers = map(&[
        ("b3", &single),
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", B3_PARENT),
        ("x-b3-sampled", "1"),
    ]);
    let read = extract(&headers, B3_ONLY);
    assert_eq!(
        (read.parent, read.b3_single),
        (parent(B3_TRACE, B3_SPAN), true)
    );
    // A malformed single header leaves the multi headers to speak.
    headers.insert("b3", HeaderValue::from_static("junk"));
    let read = extract(&headers, B3_ONLY);
    assert_eq!(read.parent, parent(other_trace, B3_PARENT));
    assert!(!read.b3_single);
}

#[test]
fn malformed_b3_is_no_context() {
    let upper = B3_TRACE.to_ascii_uppercase();
    let zeros16 = "0".repeat(16);
    let zeros32 = "0".repeat(32);
    let multi_cases: &[&[(&str, &str)]] = &[
        &[("x-b3-traceid", &upper), ("x-b3-spanid", B3_SPAN)],
        &[
            ("x-b3-traceid", B3_TRACE),
            ("x-b3-spanid", "E457B5A2E4D86BD1"),
        ],
        &[("x-b3-traceid", &B3_TRACE[1..]), ("x-b3-spanid", B3_SPAN)],
        &[("x-b3-traceid", &B3_TRACE[..20]), ("x-b3-spanid", B3_SPAN)],
        &[("x-b3-traceid", B3_TRACE), ("x-b3-spanid", &B3_TRACE[..20])],
        &[("x-b3-traceid", &zeros32), ("x-b3-spanid", B3_SPAN)],
        &[("x-b3-traceid", &zeros16), ("x-b3-spanid", B3_SPAN)],
        &[("x-b3-traceid", B3_TRACE), ("x-b3-spanid", &zeros16)],
        &[("x-b3-traceid", B3_TRACE)],
        &[("x-b3-spanid", B3_SPAN), ("x-b3-sampled", "1")],
        &[
            ("x-b3-traceid", B3_TRACE),
            ("x-b3-spanid", B3_SPAN),
            ("x-b3-sampled", "2"),
        ],
        &[
            ("x-b3-traceid", B3_TRACE),
            ("x-b3-spanid", B3_SPAN),
            ("x-b3-sampled", "d"),
        ],
        &[
            ("x-b3-traceid", B3_TRACE),
            ("x-b3-spanid", B3_SPAN),
            ("x-b3-flags", "3"),
        ],
        &[("x-b3-traceid", "junk"), ("x-b3-spanid", "junk")],
        &[("x-b3-sampled", "yes")],
    ];
    for fields in multi_cases {
        assert_eq!(
            extract(&map(fields), B3_ONLY),
            Incoming::default(),
            "{fields:?}"
        );
    }
    for value in [
        String::new(),
        "junk".to_owned(),
        "true".to_owned(),
        "D".to_owned(),
        "-".to_owned(),
        "0-".to_owned(),
        B3_TRACE.to_owned(),
        format!("{upper}-{B3_SPAN}-1"),
        format!("{B3_TRACE}-{B3_SPAN}-"),
        format!("{B3_TRACE}-{B3_SPAN}-true"),
        format!("{B3_TRACE}-{B3_SPAN}-1-"),
        format!("{B3_TRACE}-{B3_SPAN}-1-{zeros16}"),
        format!("{B3_TRACE}-{B3_SPAN}-1-{B3_PARENT}-1"),
        format!("{B3_TRACE}-{B3_SPAN}-{B3_PARENT}"),
        format!("{zeros32}-{B3_SPAN}-1"),
        format!("{B3_TRACE}-{zeros16}-1"),
        format!("{B3_TRACE}{B3_SPAN}"),
    ] {
        assert_eq!(
            extract(&map(&[("b3", &value)]), B3_ONLY),
            Incoming::default(),
            "{value:?}"
        );
    }
}

#[test]
fn reads_formats_in_the_listed_order() {
    let traceparent = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let both = map(&[
        ("traceparent", &traceparent),
        ("x-b3-traceid", B3_TRACE),
        ("x-b3-spanid", B3_SPAN),
    ]);
    let read = extract(&both, W3C_THEN_B3);
    assert_eq!(
        (read.parent, read.from_w3c),
        (parent(W3C_TRACE, W3C_SPAN), true)
    );
    let read = extract(&both, B3_THEN_W3C);
    assert_eq!(
        (read.parent, read.from_w3c),
        (parent(B3_TRACE, B3_SPAN), false)
    );
    // An unlisted format is not read.
    let b3_only = map(&[("x-b3-traceid", B3_TRACE), ("x-b3-spanid", B3_SPAN)]);
    assert_eq!(extract(&b3_only, W3C), Incoming::default());
    let w3c_only = map(&[("traceparent", &traceparent)]);
    assert_eq!(extract(&w3c_only, B3_ONLY), Incoming::default());
}

#[test]
fn the_callers_b3_single_form_is_kept_when_w3c_wins() {
    let traceparent = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let b3 = format!("{W3C_TRACE}-{W3C_SPAN}-1");
    let both = map(&[("traceparent", &traceparent), ("b3", &b3)]);
    let read = extract(&both, W3C_THEN_B3);
    assert!(read.from_w3c && read.b3_single, "{read:?}");
    // Without B3 listed, its form is not weir's concern.
    assert!(!extract(&both, W3C).b3_single);
}

#[test]
fn a_malformed_first_format_falls_through_to_the_next() {
    let traceparent = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let headers = map(&[
        ("traceparent", "00-junk"),
        ("x-b3-traceid", B3_TRACE),
        ("x-b3-spanid", B3_SPAN),
    ]);
    assert_eq!(
        extract(&headers, W3C_THEN_B3).parent,
        parent(B3_TRACE, B3_SPAN)
    );
    let headers = map(&[("traceparent", &traceparent), ("b3", "junk")]);
    assert_eq!(
        extract(&headers, B3_THEN_W3C).parent,
        parent(W3C_TRACE, W3C_SPAN)
    );
}

#[test]
fn a_full_context_beats_an_earlier_decision_only() {
    let traceparent = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let headers = map(&[("traceparent", &traceparent), ("x-b3-sampled", "0")]);
    let read = extract(&headers, B3_THEN_W3C);
    assert_eq!(read.parent, parent(W3C_TRACE, W3C_SPAN));
    assert_eq!(read.sampled, Some(true));
    // Without a context anywhere, the decision stands.
    let headers = map(&[("traceparent", "junk"), ("x-b3-sampled", "0")]);
    let read = extract(&headers, W3C_THEN_B3);
    assert_eq!((read.parent, read.sampled), (None, Some(false)));
}

fn example_out() -> Outgoing {
    Outgoing {
        trace_id: trace_id(B3_TRACE),
        span_id: span_id(B3_SPAN),
        parent: Some(span_id(B3_PARENT)),
        sampled: true,
        debug: false,
        b3_single: false,
        short_trace_id: false,
    }
}

#[test]
fn injects_traceparent_replacing_the_old_one() {
    let mut headers = map(&[
        ("traceparent", "old"),
        ("traceparent", "older"),
        ("tracestate", "vendor=1"),
        ("x-b3-sampled", "0"),
    ]);
    inject(&mut headers, W3C, &example_out(), true);
    let expected = format!("00-{B3_TRACE}-{B3_SPAN}-01");
    assert_eq!(headers.get_all("traceparent").iter().count(), 1);
    assert_eq!(text(&headers, "traceparent"), Some(expected.as_str()));
    assert_eq!(text(&headers, "tracestate"), Some("vendor=1"));
    // Formats not listed are left alone.
    assert_eq!(text(&headers, "x-b3-sampled"), Some("0"));

    let unsampled = Outgoing {
        sampled: false,
        ..example_out()
    };
    inject(&mut headers, W3C, &unsampled, false);
    let expected = format!("00-{B3_TRACE}-{B3_SPAN}-00");
    assert_eq!(text(&headers, "traceparent"), Some(expected.as_str()));
    assert_eq!(text(&headers, "tracestate"), None);
}

#[test]
fn injects_b3_multi_headers() {
    let mut headers = map(&[("b3", "0"), ("x-b3-flags", "1"), ("x-b3-traceid", "old")]);
    inject(&mut headers, B3_ONLY, &example_out(), false);
    assert_eq!(text(&headers, "x-b3-traceid"), Some(B3_TRACE));
    assert_eq!(text(&headers, "x-b3-spanid"), Some(B3_SPAN));
    assert_eq!(text(&headers, "x-b3-parentspanid"), Some(B3_PARENT));
    assert_eq!(text(&headers, "x-b3-sampled"), Some("1"));
    assert_eq!(text(&headers, "x-b3-flags"), None);
    assert_eq!(text(&headers, "b3"), None);
    assert_eq!(text(&headers, "traceparent"), None);

    let root_debug_short = Outgoing {
        trace_id: short_trace_id(),
        parent: None,
        debug: true,
        short_trace_id: true,
        ..example_out()
    };
    inject(&mut headers, B3_ONLY, &root_debug_short, false);
    assert_eq!(text(&headers, "x-b3-traceid"), Some(B3_SHORT_TRACE));
    assert_eq!(text(&headers, "x-b3-parentspanid"), None);
    assert_eq!(text(&headers, "x-b3-flags"), Some("1"));
    assert_eq!(text(&headers, "x-b3-sampled"), None);
}

#[test]
fn injects_the_b3_single_header() {
    let mut headers = map(&[
        ("x-b3-traceid", B3_TRACE),
        ("x-b3-spanid", B3_SPAN),
        ("x-b3-parentspanid", B3_PARENT),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
    ]);
    let debug = Outgoing {
        debug: true,
        b3_single: true,
        ..example_out()
    };
    inject(&mut headers, B3_ONLY, &debug, false);
    // The longest value weir writes.
    let expected = format!("{B3_TRACE}-{B3_SPAN}-d-{B3_PARENT}");
    assert_eq!(text(&headers, "b3"), Some(expected.as_str()));
    assert_eq!(headers.len(), 1, "{headers:?}");

    let short_unsampled_root = Outgoing {
        trace_id: short_trace_id(),
        parent: None,
        sampled: false,
        b3_single: true,
        short_trace_id: true,
        ..example_out()
    };
    inject(&mut headers, B3_ONLY, &short_unsampled_root, false);
    let expected = format!("{B3_SHORT_TRACE}-{B3_SPAN}-0");
    assert_eq!(text(&headers, "b3"), Some(expected.as_str()));
}

#[test]
fn examples_round_trip_through_extract_inject_extract() {
    let traceparent = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let b3_single_debug = format!("{B3_TRACE}-{B3_SPAN}-d-{B3_PARENT}");
    let cases: [(&[(&str, &str)], Formats); 5] = [
        (&[("traceparent", &traceparent)], W3C_THEN_B3),
        (
            &[
                ("x-b3-traceid", B3_SHORT_TRACE),
                ("x-b3-spanid", B3_SPAN),
                ("x-b3-sampled", "0"),
            ],
            B3_ONLY,
        ),
        (
            &[
                ("x-b3-traceid", B3_TRACE),
                ("x-b3-spanid", B3_SPAN),
                ("x-b3-flags", "1"),
            ],
            B3_THEN_W3C,
        ),
        (&[("b3", &b3_single_debug)], B3_ONLY),
        (&[("b3", "0")], W3C_THEN_B3),
    ];
    for (fields, formats) in cases {
        let mut headers = map(fields);
        let first = extract(&headers, formats);
        let out = forward(&first);
        inject(&mut headers, formats, &out, first.from_w3c);
        let again = extract(&headers, formats);
        assert_reads_back(&again, &out);
        if let Some(caller) = first.parent {
            assert_eq!(again.parent.map(|p| p.trace_id), Some(caller.trace_id));
        }
        assert_eq!(again.sampled, first.sampled.or(Some(false)), "{fields:?}");
    }
}

#[test]
fn keeps_an_existing_request_id() {
    let mut headers = map(&[("x-request-id", "caller's id")]);
    ensure_request_id(&mut headers);
    assert_eq!(text(&headers, "x-request-id"), Some("caller's id"));
}

pub(super) fn assert_uuid_v4(id: &str) {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
    assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
    assert!(
        id.bytes().all(|b| b == b'-' || hex_digit(b).is_some()),
        "{id}"
    );
    assert!(groups[2].starts_with('4'), "version 4: {id}");
    assert!(
        matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
        "variant 10xx: {id}"
    );
}

#[test]
fn generates_distinct_v4_request_ids() {
    let mut ids = Vec::new();
    for start in [HeaderMap::new(), map(&[("x-request-id", "")])] {
        let mut headers = start;
        ensure_request_id(&mut headers);
        let id = text(&headers, "x-request-id").expect("an id").to_owned();
        assert_uuid_v4(&id);
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn one_pass_finds_the_trace_fields_a_request_carries() {
    let headers = map(&[
        ("host", "a"),
        ("tracestate", "k=v"),
        ("x-b3-sampled", "0"),
        ("b3", "0"),
    ]);
    assert_eq!(
        Carried::of(&headers),
        Carried {
            traceparent: false,
            tracestate: true,
            b3: true,
            x_b3: true,
            request_id: false,
        }
    );
    assert_eq!(Carried::of(&map(&[("host", "a")])), Carried::default());
}

#[test]
fn rewrite_reads_decides_and_writes_in_one_pass() {
    let traceparent = format!("00-{W3C_TRACE}-{W3C_SPAN}-01");
    let mut headers = map(&[
        ("traceparent", &traceparent),
        ("tracestate", "k=v"),
        ("x-request-id", "r-1"),
    ]);
    let (incoming, out) = rewrite(&mut headers, W3C_THEN_B3, |incoming| {
        let mut out = forward(incoming);
        out.sampled = true;
        out
    });
    assert_eq!(incoming.parent, parent(W3C_TRACE, W3C_SPAN));
    assert_eq!(text(&headers, "x-request-id"), Some("r-1"));
    assert_eq!(
        text(&headers, "tracestate"),
        Some("k=v"),
        "kept with its trace"
    );
    assert_reads_back(&extract(&headers, W3C_THEN_B3), &out);
    assert_reads_back(&extract(&headers, B3_ONLY), &out);

    // A tracestate without a valid traceparent belongs to no trace: it goes.
    let mut orphan = map(&[("tracestate", "k=v")]);
    let (incoming, _) = rewrite(&mut orphan, W3C, forward);
    assert_eq!(incoming.parent, None);
    assert_eq!(text(&orphan, "tracestate"), None);
    assert_eq!(text(&orphan, "x-request-id").map(str::len), Some(36));
}
