//! Zipkin B3 (https://github.com/openzipkin/b3-propagation): the single `b3` header and
//! the `x-b3-*` headers.

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::hex::{parse_hex, ValueText};
use super::{Carried, Incoming, Outgoing, Parent};
use crate::telemetry::trace::{SpanId, TraceId};

static B3: HeaderName = HeaderName::from_static("b3");
static X_B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
static X_B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
static X_B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
static X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
static X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// Whether the request carries a valid B3 single header (`b3`), so B3 is written back in
/// that form even when another format's context won.
pub(super) fn uses_single_header(headers: &HeaderMap) -> bool {
    headers
        .get(&B3)
        .is_some_and(|value| parse_single(value.as_bytes()).is_some())
}

/// B3: the single `b3` header when it is valid (it takes precedence, per the B3 spec), else
/// the `x-b3-*` headers. A malformed `b3` leaves the multi headers to speak, as Brave does.
pub(super) fn read(headers: &HeaderMap) -> Option<Incoming> {
    headers
        .get(&B3)
        .and_then(|value| parse_single(value.as_bytes()))
        .or_else(|| read_multi(headers))
}

/// `{trace}-{span}[-{sampling}[-{parent span}]]`, or `{sampling}` alone.
fn parse_single(value: &[u8]) -> Option<Incoming> {
    let mut fields = value.split(|&byte| byte == b'-');
    let first = fields.next()?;
    let Some(span) = fields.next() else {
        let (sampled, debug) = parse_single_sampling(first)?;
        return Some(Incoming {
            parent: None,
            sampled: Some(sampled),
            debug,
            b3_single: true,
            from_w3c: false,
        });
    };
    let parent = parse_ids(first, span)?;
    let (sampled, debug) = match fields.next() {
        Some(state) => {
            let (sampled, debug) = parse_single_sampling(state)?;
            (Some(sampled), debug)
        }
        None => (None, false),
    };
    // The parent span id is only checked: weir parents its span on `span`.
    if let Some(parent_span) = fields.next() {
        parse_span_id(parent_span)?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Incoming {
        parent: Some(parent),
        sampled,
        debug,
        b3_single: true,
        from_w3c: false,
    })
}

/// The single header's sampling state: `(sampled, debug)`.
fn parse_single_sampling(state: &[u8]) -> Option<(bool, bool)> {
    match state {
        b"1" => Some((true, false)),
        b"0" => Some((false, false)),
        b"d" => Some((true, true)),
        _ => None,
    }
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled` and `x-b3-flags` (the first value of each,
/// per the B3 spec; `x-b3-flags` is `1` for debug, and `0` is read as its absence).
/// `x-b3-parentspanid` is not read: weir parents its span on the span id.
fn read_multi(headers: &HeaderMap) -> Option<Incoming> {
    let value = |name: &HeaderName| headers.get(name).map(HeaderValue::as_bytes);
    let debug = match value(&X_B3_FLAGS) {
        None | Some(b"0") => false,
        Some(b"1") => true,
        Some(_) => return None,
    };
    let sampled = match value(&X_B3_SAMPLED) {
        None => None,
        Some(sampled) => Some(parse_sampled(sampled)?),
    };
    let parent = match (value(&X_B3_TRACE_ID), value(&X_B3_SPAN_ID)) {
        (Some(trace), Some(span)) => Some(parse_ids(trace, span)?),
        (None, None) => None,
        _ => return None,
    };
    // Debug is an emphasized accept.
    let sampled = if debug { Some(true) } else { sampled };
    if parent.is_none() && sampled.is_none() {
        return None;
    }
    Some(Incoming {
        parent,
        sampled,
        debug,
        b3_single: false,
        from_w3c: false,
    })
}

/// `x-b3-sampled`: `1` or `0`, or the legacy `true` / `false` the B3 spec lets a lenient
/// reader accept, in any letter case (as Brave reads them: older tracers wrote booleans as
/// their language prints them, e.g. Python's `True`).
fn parse_sampled(value: &[u8]) -> Option<bool> {
    match value {
        b"1" => Some(true),
        b"0" => Some(false),
        _ if value.eq_ignore_ascii_case(b"true") => Some(true),
        _ if value.eq_ignore_ascii_case(b"false") => Some(false),
        _ => None,
    }
}

/// A B3 trace id (32 or 16 lower-hex digits; a 64-bit one is left-padded with zeros) and
/// span id (16 lower-hex digits), neither all zeros.
fn parse_ids(trace: &[u8], span: &[u8]) -> Option<Parent> {
    let (trace_id, short_trace_id) = match trace.len() {
        32 => (TraceId(parse_hex(trace)?), false),
        16 => {
            let low: [u8; 8] = parse_hex(trace)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            (TraceId(id), true)
        }
        _ => return None,
    };
    if trace_id.is_zero() {
        return None;
    }
    Some(Parent {
        trace_id,
        span_id: parse_span_id(span)?,
        short_trace_id,
    })
}

/// 16 lower-hex digits, not all zeros.
fn parse_span_id(hex: &[u8]) -> Option<SpanId> {
    let id = SpanId(parse_hex(hex)?);
    (!id.is_zero()).then_some(id)
}

/// Replaces the B3 headers with `out`, in the form `out` asks for (the other form's
/// headers are removed, so a receiver never sees two contexts).
/// `carried` says which B3 fields the request had, so only those are removed.
pub(super) fn write(headers: &mut HeaderMap, out: &Outgoing, carried: Carried) {
    if out.b3_single {
        write_single(headers, out, carried.x_b3);
    } else {
        write_multi(headers, out, carried);
    }
}

/// `b3: {trace}-{span}-{1|0|d}[-{parent}]`.
fn write_single(headers: &mut HeaderMap, out: &Outgoing, had_multi: bool) {
    let sampling: &[u8] = match (out.debug, out.sampled) {
        (true, _) => b"d",
        (false, true) => b"1",
        (false, false) => b"0",
    };
    let mut value = ValueText::new();
    value
        .hex(trace_id_digits(out))
        .text(b"-")
        .hex(&out.span_id.0)
        .text(b"-")
        .text(sampling);
    if let Some(parent) = &out.parent {
        value.text(b"-").hex(&parent.0);
    }
    value.set(headers, &B3);
    if !had_multi {
        return;
    }
    for name in [
        &X_B3_TRACE_ID,
        &X_B3_SPAN_ID,
        &X_B3_PARENT_SPAN_ID,
        &X_B3_SAMPLED,
        &X_B3_FLAGS,
    ] {
        headers.remove(name);
    }
}

/// `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid` (when `out` has a parent), and
/// `x-b3-sampled` or, for debug, `x-b3-flags`.
fn write_multi(headers: &mut HeaderMap, out: &Outgoing, carried: Carried) {
    ValueText::new()
        .hex(trace_id_digits(out))
        .set(headers, &X_B3_TRACE_ID);
    ValueText::new()
        .hex(&out.span_id.0)
        .set(headers, &X_B3_SPAN_ID);
    match &out.parent {
        Some(parent) => ValueText::new()
            .hex(&parent.0)
            .set(headers, &X_B3_PARENT_SPAN_ID),
        None if carried.x_b3 => {
            headers.remove(&X_B3_PARENT_SPAN_ID);
        }
        None => {}
    }
    // Debug implies accept, so the B3 spec sends `x-b3-flags: 1` instead of `x-b3-sampled`.
    if out.debug {
        headers.insert(X_B3_FLAGS.clone(), HeaderValue::from_static("1"));
        if carried.x_b3 {
            headers.remove(&X_B3_SAMPLED);
        }
    } else {
        let sampled = if out.sampled { "1" } else { "0" };
        headers.insert(X_B3_SAMPLED.clone(), HeaderValue::from_static(sampled));
        if carried.x_b3 {
            headers.remove(&X_B3_FLAGS);
        }
    }
    if carried.b3 {
        headers.remove(&B3);
    }
}

/// The trace id's bytes as B3 writes them: the low 64 bits for a short id.
fn trace_id_digits(out: &Outgoing) -> &[u8] {
    if out.short_trace_id {
        &out.trace_id.0[8..]
    } else {
        &out.trace_id.0
    }
}
