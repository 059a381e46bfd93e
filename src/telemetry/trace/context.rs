//! Trace context in request headers: W3C Trace Context (`traceparent`, `tracestate`), B3
//! multi-header (`x-b3-*`) and B3 single (`b3`), and `x-request-id`.
//!
//! Parsers never fail a request: anything malformed reads as "no context", and the request
//! starts a new trace.

mod b3;
mod hex;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
mod w3c;

use http::header::{HeaderMap, HeaderName};

use super::{SpanId, TraceId};
use crate::config::Propagation;
use hex::ValueText;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Which formats a listener reads and writes (`tracing.propagation`), and which it reads
/// first when a request carries both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// W3C Trace Context.
    pub w3c: bool,
    /// B3 (multi-header or single).
    pub b3: bool,
    /// B3 was listed before W3C.
    pub b3_first: bool,
}

impl Formats {
    /// The formats of a `propagation` list, in its order.
    pub fn new(list: &[Propagation]) -> Self {
        let position = |format| list.iter().position(|listed| *listed == format);
        let w3c = position(Propagation::W3c);
        let b3 = position(Propagation::B3);
        Formats {
            w3c: w3c.is_some(),
            b3: b3.is_some(),
            b3_first: matches!((b3, w3c), (Some(b3), Some(w3c)) if b3 < w3c),
        }
    }

    /// The listed formats, in the order `extract` reads them.
    fn read_order(self) -> impl Iterator<Item = Propagation> {
        let w3c = self.w3c.then_some(Propagation::W3c);
        let b3 = self.b3.then_some(Propagation::B3);
        let order = if self.b3_first { [b3, w3c] } else { [w3c, b3] };
        order.into_iter().flatten()
    }
}

/// The caller's span, as a request's headers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace, kept as it came (never replaced).
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: SpanId,
    /// A 64-bit B3 trace id (written back in 16 hex digits, as it came).
    pub short_trace_id: bool,
}

/// What a request's headers said about its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Incoming {
    /// The caller's span, when a listed format carried a valid one.
    pub parent: Option<Parent>,
    /// The caller's sampling decision; `None` defers it to weir.
    pub sampled: Option<bool>,
    /// B3's debug flag (`x-b3-flags: 1`, `b3: …-d`), which implies sampled.
    pub debug: bool,
    /// The context came in B3's single-header form, so B3 is written back that way.
    pub b3_single: bool,
    /// The context came from a valid `traceparent`, so `tracestate` belongs to it.
    pub from_w3c: bool,
}

/// Which trace fields a request carries, found in one pass over its field names: looking
/// up a name the request does not carry still hashes it, and most requests carry none of
/// these (or only some), so readers and writers skip what is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// `traceparent`.
    pub traceparent: bool,
    /// `tracestate`.
    pub tracestate: bool,
    /// B3's single header `b3`.
    pub b3: bool,
    /// Any `x-b3-*` header.
    pub x_b3: bool,
    /// `x-request-id`.
    pub request_id: bool,
}

impl Carried {
    /// The trace fields among `headers`' names.
    pub fn of(headers: &HeaderMap) -> Self {
        let mut carried = Carried::default();
        for name in headers.keys() {
            let name = name.as_str();
            match name.len() {
                2 => carried.b3 |= name == "b3",
                10 => carried.tracestate |= name == "tracestate",
                11 => carried.traceparent |= name == "traceparent",
                12 => carried.request_id |= name == "x-request-id",
                _ => {}
            }
            carried.x_b3 |= name.starts_with("x-b3-");
        }
        carried
    }
}

/// The trace phase's header work in one pass: keeps or adds `x-request-id`, reads the
/// caller's context, lets `choose` decide what to write from it, and writes that. Returns
/// what was read and what was written.
pub fn rewrite(
    headers: &mut HeaderMap,
    formats: Formats,
    choose: impl FnOnce(&Incoming) -> Outgoing,
) -> (Incoming, Outgoing) {
    let carried = Carried::of(headers);
    if !carried.request_id {
        insert_request_id(headers);
    } else {
        ensure_request_id(headers);
    }
    let incoming = extract_carried(headers, formats, carried);
    let out = choose(&incoming);
    inject_carried(headers, formats, &out, incoming.from_w3c, carried);
    (incoming, out)
}

/// Reads the first valid context among `formats`.
///
/// A format that carries only a sampling decision (B3's `x-b3-sampled: 0` or `b3: 0`) does
/// not stop the search: a later format's full context wins, and the decision is used only
/// when no listed format names a parent.
pub fn extract(headers: &HeaderMap, formats: Formats) -> Incoming {
    extract_carried(headers, formats, Carried::of(headers))
}

/// [`extract`], reading only the formats the request carries.
fn extract_carried(headers: &HeaderMap, formats: Formats, carried: Carried) -> Incoming {
    let mut decision_only = None;
    for format in formats.read_order() {
        let read = match format {
            Propagation::W3c if carried.traceparent => w3c::read(headers),
            Propagation::B3 if carried.b3 || carried.x_b3 => b3::read(headers),
            _ => None,
        };
        match read {
            Some(mut context) if context.parent.is_some() => {
                // The caller's B3 form is kept whichever format's context won.
                context.b3_single |= formats.b3 && carried.b3 && b3::uses_single_header(headers);
                return context;
            }
            Some(decision) => {
                decision_only.get_or_insert(decision);
            }
            None => {}
        }
    }
    decision_only.unwrap_or_default()
}

/// The context written on the upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The trace (the caller's, or a new one).
    pub trace_id: TraceId,
    /// The span the upstream's span will be a child of.
    pub span_id: SpanId,
    /// The parent of `span_id`, for B3's `x-b3-parentspanid`.
    pub parent: Option<SpanId>,
    /// Whether the trace is sampled.
    pub sampled: bool,
    /// B3 debug.
    pub debug: bool,
    /// Write B3 as the single `b3` header instead of `x-b3-*`.
    pub b3_single: bool,
    /// Write a 64-bit B3 trace id.
    pub short_trace_id: bool,
}

/// Replaces the trace headers of `formats` with `out`. `keep_trace_state` says whether the
/// request's `tracestate` belongs to `out`'s trace (else it is removed).
pub fn inject(headers: &mut HeaderMap, formats: Formats, out: &Outgoing, keep_trace_state: bool) {
    let carried = Carried::of(headers);
    inject_carried(headers, formats, out, keep_trace_state, carried);
}

/// [`inject`], removing only fields the request carries.
fn inject_carried(
    headers: &mut HeaderMap,
    formats: Formats,
    out: &Outgoing,
    keep_trace_state: bool,
    carried: Carried,
) {
    if formats.w3c {
        w3c::write(headers, out, keep_trace_state || !carried.tracestate);
    }
    if formats.b3 {
        b3::write(headers, out, carried);
    }
}

/// Keeps the request's `x-request-id`, or adds a random UUID v4.
///
/// An empty `x-request-id` correlates nothing, so it is replaced like a missing one.
pub fn ensure_request_id(headers: &mut HeaderMap) {
    if headers.get(&X_REQUEST_ID).is_some_and(|id| !id.is_empty()) {
        return;
    }
    insert_request_id(headers);
}

/// Sets `x-request-id` to a random UUID v4.
fn insert_request_id(headers: &mut HeaderMap) {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&crate::rand::next_u64().to_be_bytes());
    bytes[8..].copy_from_slice(&crate::rand::next_u64().to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant 10xx (RFC 9562)
    let mut uuid = ValueText::new();
    uuid.hex(&bytes[..4])
        .text(b"-")
        .hex(&bytes[4..6])
        .text(b"-")
        .hex(&bytes[6..8])
        .text(b"-")
        .hex(&bytes[8..10])
        .text(b"-")
        .hex(&bytes[10..]);
    uuid.set(headers, &X_REQUEST_ID);
}
