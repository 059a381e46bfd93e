//! W3C Trace Context (https://www.w3.org/TR/trace-context/): `traceparent` and
//! `tracestate`.

use http::header::{HeaderMap, HeaderName};

use super::hex::{parse_hex, ValueText};
use super::{Incoming, Outgoing, Parent};
use crate::telemetry::trace::{SpanId, TraceId};

static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// `00-{trace-id}-{parent-id}-{flags}`: the length of a version-00 `traceparent`, and the
/// least a higher version may have.
const TRACEPARENT_LEN: usize = 55;

/// W3C `traceparent`, or `None` when it is absent, repeated (invalid per the spec) or
/// malformed.
pub(super) fn read(headers: &HeaderMap) -> Option<Incoming> {
    let mut fields = headers.get_all(&TRACEPARENT).iter();
    let value = fields.next()?;
    if fields.next().is_some() {
        return None;
    }
    let (trace_id, span_id, flags) = parse_traceparent(value.as_bytes())?;
    Some(Incoming {
        parent: Some(Parent {
            trace_id,
            span_id,
            short_trace_id: false,
        }),
        sampled: Some(flags & 0x01 == 0x01),
        debug: false,
        b3_single: false,
        from_w3c: true,
    })
}

/// `version-traceid-parentid-flags`. For forward compatibility (the spec's "Versioning of
/// traceparent"), a version above `00` is read for its `00` fields when they are followed
/// by the end or a `-`.
fn parse_traceparent(value: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    let (fields, rest) = value.split_first_chunk::<TRACEPARENT_LEN>()?;
    let [version] = parse_hex::<1>(&fields[0..2])?;
    let ends_right = match version {
        0x00 => rest.is_empty(),
        0xff => false,
        _ => rest.first().is_none_or(|&next| next == b'-'),
    };
    if !ends_right || fields[2] != b'-' || fields[35] != b'-' || fields[52] != b'-' {
        return None;
    }
    let trace_id = TraceId(parse_hex(&fields[3..35])?);
    let span_id = SpanId(parse_hex(&fields[36..52])?);
    let [flags] = parse_hex::<1>(&fields[53..55])?;
    (!trace_id.is_zero() && !span_id.is_zero()).then_some((trace_id, span_id, flags))
}

/// Replaces `traceparent` with `out`, and drops `tracestate` unless it belongs to `out`'s
/// trace.
pub(super) fn write(headers: &mut HeaderMap, out: &Outgoing, keep_trace_state: bool) {
    let flags: &[u8] = if out.sampled || out.debug {
        b"01"
    } else {
        b"00"
    };
    let mut value = ValueText::new();
    value
        .text(b"00-")
        .hex(&out.trace_id.0)
        .text(b"-")
        .hex(&out.span_id.0)
        .text(b"-")
        .text(flags);
    value.set(headers, &TRACEPARENT);
    if !keep_trace_state {
        headers.remove(&TRACESTATE);
    }
}
