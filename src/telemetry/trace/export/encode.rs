//! [`FinishedSpan`]s → one OTLP `ExportTraceServiceRequest` (protobuf bytes): one resource
//! (this proxy), one instrumentation scope (`weir` and its version), the spans.
//!
//! The protobuf is written directly from the spans, field by field, with the field numbers
//! of the OTLP definitions (`opentelemetry/proto/trace/v1/trace.proto` and friends): building
//! the generated message types first would copy every attribute key and value into its own
//! `String` and cost a sampled request as much again as proxying it. The tests decode what
//! this writes with those generated types (`opentelemetry-proto`), and the integration tests
//! with Python's reference definitions, so the two cannot drift.

use bytes::Bytes;

use crate::telemetry::trace::span::{SpanError, Value};
use crate::telemetry::trace::{AttributeValue, FinishedSpan, Resource, SpanKind};

/// The instrumentation scope every span is reported under.
const SCOPE_NAME: &str = "weir";

/// `Span.flags`: the W3C sampled flag (only sampled spans are exported), and that whether
/// the parent is remote is known (`SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK`) ...
const SAMPLED_AND_REMOTE_KNOWN: u32 = 0x01 | 0x100;
/// ... and, for a span with a parent, that it is remote (`SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`):
/// a parent always comes from the request's headers, so from another process.
const PARENT_IS_REMOTE: u32 = 0x200;

/// Protobuf wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Builds export requests; holds the resource, encoded once.
#[derive(Debug, Clone)]
pub(super) struct Encoder {
    /// The `Resource` message's bytes (its attributes).
    resource: Vec<u8>,
}

impl Encoder {
    /// For spans of this resource (`service.name`, `k8s.*`).
    pub(super) fn new(resource: &Resource) -> Self {
        let mut out = Vec::new();
        for (key, value) in &resource.attributes {
            let value = match value {
                AttributeValue::Text(text) => Value::Str(text),
                AttributeValue::Static(text) => Value::Str(text),
                AttributeValue::Int(n) => Value::Int(*n),
            };
            message(&mut out, 1, &KeyValue(key, value));
        }
        Encoder { resource: out }
    }

    /// One batch as the body of an OTLP/HTTP POST: `ExportTraceServiceRequest {
    /// resource_spans: [ResourceSpans { resource, scope_spans: [ScopeSpans { scope, spans
    /// }] }] }`. Each span is written once into a scratch buffer, whose length is then
    /// known; the enclosing messages' lengths follow from the spans'.
    pub(super) fn encode(&self, spans: Vec<FinishedSpan>) -> Bytes {
        let mut body = Vec::with_capacity(spans.len() * 512);
        let mut span = Vec::with_capacity(1024);
        for s in &spans {
            span.clear();
            write_span(&mut span, s);
            bytes_field(&mut body, 2, &span); // ScopeSpans.spans
        }
        let scope_spans = message_len(1, &Scope) + body.len();
        let resource_spans = len_field_len(1, self.resource.len()) + len_field_len(2, scope_spans);
        let mut out = Vec::with_capacity(len_field_len(1, resource_spans));
        tag(&mut out, 1, LEN); // ExportTraceServiceRequest.resource_spans
        varint(&mut out, resource_spans as u64);
        bytes_field(&mut out, 1, &self.resource); // ResourceSpans.resource
        tag(&mut out, 2, LEN); // ResourceSpans.scope_spans
        varint(&mut out, scope_spans as u64);
        message(&mut out, 1, &Scope); // ScopeSpans.scope
        out.extend_from_slice(&body);
        Bytes::from(out)
    }
}

/// A protobuf message that can say its encoded length and write itself.
trait Message {
    /// Bytes [`Message::write`] appends.
    fn len(&self) -> usize;
    /// Appends the message's fields.
    fn write(&self, out: &mut Vec<u8>);
}

#[inline]
fn varint_len(v: u64) -> usize {
    // 7 bits per byte; 0 still takes one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        // Tags and most lengths: one byte.
        out.push(v as u8);
        return;
    }
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

#[inline]
fn tag_len(field: u32) -> usize {
    varint_len(u64::from(field << 3))
}

/// A length-delimited field of `n` bytes, whole.
#[inline]
fn len_field_len(field: u32, n: usize) -> usize {
    tag_len(field) + varint_len(n as u64) + n
}

#[inline]
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    tag(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[inline]
fn message(out: &mut Vec<u8>, field: u32, m: &impl Message) {
    tag(out, field, LEN);
    varint(out, m.len() as u64);
    m.write(out);
}

#[inline]
fn message_len(field: u32, m: &impl Message) -> usize {
    len_field_len(field, m.len())
}

/// `AnyValue`: `string_value` (1) or `int_value` (3).
struct AnyValue<'a>(Value<'a>);

impl Message for AnyValue<'_> {
    fn len(&self) -> usize {
        match self.0 {
            Value::Str(s) => len_field_len(1, s.len()),
            Value::Int(n) => tag_len(3) + varint_len(n as u64),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self.0 {
            Value::Str(s) => bytes_field(out, 1, s.as_bytes()),
            Value::Int(n) => {
                tag(out, 3, VARINT);
                varint(out, n as u64);
            }
        }
    }
}

/// A `KeyValue` field, written straight through: the attributes are most of a span.
#[inline]
fn key_value(out: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    let any_len = AnyValue(value).len();
    let kv_len = len_field_len(1, key.len()) + len_field_len(2, any_len);
    out.reserve(len_field_len(field, kv_len));
    tag(out, field, LEN);
    varint(out, kv_len as u64);
    bytes_field(out, 1, key.as_bytes());
    tag(out, 2, LEN);
    varint(out, any_len as u64);
    AnyValue(value).write(out);
}

/// `KeyValue`: `key` (1), `value` (2).
struct KeyValue<'a>(&'a str, Value<'a>);

impl Message for KeyValue<'_> {
    fn len(&self) -> usize {
        len_field_len(1, self.0.len()) + message_len(2, &AnyValue(self.1))
    }

    fn write(&self, out: &mut Vec<u8>) {
        bytes_field(out, 1, self.0.as_bytes());
        message(out, 2, &AnyValue(self.1));
    }
}

/// `InstrumentationScope`: `name` (1), `version` (2).
struct Scope;

impl Message for Scope {
    fn len(&self) -> usize {
        len_field_len(1, SCOPE_NAME.len()) + len_field_len(2, env!("CARGO_PKG_VERSION").len())
    }

    fn write(&self, out: &mut Vec<u8>) {
        bytes_field(out, 1, SCOPE_NAME.as_bytes());
        bytes_field(out, 2, env!("CARGO_PKG_VERSION").as_bytes());
    }
}

/// `Span`'s fields.
fn write_span(out: &mut Vec<u8>, s: &FinishedSpan) {
    bytes_field(out, 1, &s.trace_id.0);
    bytes_field(out, 2, &s.span_id.0);
    if let Some(state) = &s.trace_state {
        bytes_field(out, 3, state.as_bytes());
    }
    if let Some(parent) = &s.parent {
        bytes_field(out, 4, &parent.0);
    }
    // `name`: `METHOD ROUTE`, or the method alone when no route matched.
    let method = s.method.as_str();
    let route = s.route();
    tag(out, 5, LEN);
    varint(
        out,
        (method.len() + route.map_or(0, |r| 1 + r.len())) as u64,
    );
    out.extend_from_slice(method.as_bytes());
    if let Some(route) = route {
        out.push(b' ');
        out.extend_from_slice(route.as_bytes());
    }
    tag(out, 6, VARINT);
    out.push(match s.kind {
        SpanKind::Server => 2, // SPAN_KIND_SERVER
        SpanKind::Client => 3, // SPAN_KIND_CLIENT
    });
    tag(out, 7, FIXED64);
    out.extend_from_slice(&s.start_unix_nanos.to_le_bytes());
    tag(out, 8, FIXED64);
    out.extend_from_slice(&s.end_unix_nanos.to_le_bytes());
    s.attributes(|key, value| key_value(out, 9, key, value));
    for (i, retry) in s.retries.iter().enumerate() {
        message(out, 11, &Event(retry, i));
    }
    message(out, 15, &Status(s.error()));
    let flags = match s.parent {
        Some(_) => SAMPLED_AND_REMOTE_KNOWN | PARENT_IS_REMOTE,
        None => SAMPLED_AND_REMOTE_KNOWN,
    };
    tag(out, 16, FIXED32);
    out.extend_from_slice(&flags.to_le_bytes());
}

/// `Span.Event` of the `i`-th retry: `time_unix_nano` (1), `name` (2), `attributes` (3).
struct Event<'a>(&'a crate::telemetry::trace::RetryEvent, usize);

impl Event<'_> {
    /// The attempt the retry starts: the first retry is attempt 2.
    fn attempt(&self) -> i64 {
        self.1 as i64 + 2
    }
}

impl Message for Event<'_> {
    fn len(&self) -> usize {
        let mut n = tag_len(1) + 8 + len_field_len(2, "retry".len());
        self.0.attributes(self.attempt(), |key, value| {
            n += message_len(3, &KeyValue(key, value))
        });
        n
    }

    fn write(&self, out: &mut Vec<u8>) {
        tag(out, 1, FIXED64);
        out.extend_from_slice(&self.0.unix_nanos.to_le_bytes());
        bytes_field(out, 2, b"retry");
        self.0.attributes(self.attempt(), |key, value| {
            message(out, 3, &KeyValue(key, value))
        });
    }
}

/// `Status`: `message` (2) and `code` (3: `STATUS_CODE_ERROR` = 2); an empty message for
/// an unset status.
struct Status(Option<SpanError>);

impl Status {
    /// The message: weir's error code, or `HTTP 503` for an upstream's 5xx (written into
    /// `buf`); empty for an unset status.
    fn text<'b>(&self, buf: &'b mut [u8; 8]) -> &'b [u8] {
        match self.0 {
            None => &[],
            Some(SpanError::Weir(code)) => code.as_bytes(),
            Some(SpanError::Status(status)) => {
                buf[..5].copy_from_slice(b"HTTP ");
                let digits = [status / 100 % 10, status / 10 % 10, status % 10];
                for (slot, d) in buf[5..].iter_mut().zip(digits) {
                    *slot = b'0' + d as u8;
                }
                &buf[..]
            }
        }
    }
}

impl Message for Status {
    fn len(&self) -> usize {
        match self.0 {
            None => 0,
            Some(_) => {
                let mut buf = [0u8; 8];
                len_field_len(2, self.text(&mut buf).len()) + tag_len(3) + 1
            }
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        if self.0.is_some() {
            let mut buf = [0u8; 8];
            bytes_field(out, 2, self.text(&mut buf));
            tag(out, 3, VARINT);
            varint(out, 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind as OtlpSpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use prost::Message as _;

    use super::*;
    use crate::telemetry::trace::export::test_support::{resource, span as test_span};

    fn string(value: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        })
    }

    fn int(value: i64) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        })
    }

    fn key_value(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value,
            ..Default::default()
        }
    }

    fn decode(encoder: &Encoder, spans: Vec<FinishedSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(encoder.encode(spans)).expect("valid protobuf")
    }

    #[test]
    fn varints_take_the_bytes_protobuf_gives_them() {
        for (v, n) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!((out.len(), varint_len(v)), (n, n), "{v}");
        }
    }

    #[test]
    fn a_span_with_every_field_set_decodes_with_the_reference_types() {
        let finished = test_span(7);
        let request = decode(&Encoder::new(&resource()), vec![finished.clone()]);

        assert_eq!(request.resource_spans.len(), 1);
        let resource_spans = &request.resource_spans[0];
        let otlp_resource = resource_spans.resource.as_ref().expect("resource");
        assert_eq!(
            otlp_resource.attributes,
            [
                key_value("service.name", string("reviews")),
                key_value("k8s.namespace.name", string("shop")),
            ]
        );
        assert_eq!(resource_spans.scope_spans.len(), 1);
        let scope_spans = &resource_spans.scope_spans[0];
        let scope = scope_spans.scope.as_ref().expect("scope");
        assert_eq!(scope.name, "weir");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(scope_spans.spans.len(), 1);

        let s = &scope_spans.spans[0];
        assert_eq!(s.trace_id, finished.trace_id.0);
        assert_eq!(s.span_id, finished.span_id.0);
        assert_eq!(
            Some(s.parent_span_id.as_slice()),
            finished.parent.as_ref().map(|p| &p.0[..])
        );
        assert_eq!(s.trace_state, "vendor=value");
        assert_eq!(s.name, "GET span 7");
        assert_eq!(s.kind, OtlpSpanKind::Server as i32);
        assert_eq!(s.start_time_unix_nano, finished.start_unix_nanos);
        assert_eq!(s.end_time_unix_nano, finished.end_unix_nanos);
        assert_eq!(
            s.flags,
            0x01 | 0x100 | 0x200,
            "sampled, parent known to be remote"
        );
        assert_eq!(
            s.attributes,
            [
                key_value("http.request.method", string("GET")),
                key_value("url.path", string("/reviews/7")),
                key_value("http.response.status_code", int(503)),
                key_value("server.address", string("reviews.shop")),
                key_value("server.port", int(9080)),
                key_value("client.address", string("10.0.0.7")),
                key_value("network.peer.address", string("10.0.0.7")),
                key_value("weir.route", string("span 7")),
                key_value("weir.service", string("reviews-v1")),
                key_value("weir.endpoint", string("10.1.0.1:8080")),
                key_value("weir.retries", int(1)),
                key_value(
                    "weir.peer.identity",
                    string("spiffe://cluster.local/ns/shop/sa/front")
                ),
            ]
        );
        assert_eq!(s.events.len(), 1);
        let e = &s.events[0];
        assert_eq!(e.name, "retry");
        assert_eq!(e.time_unix_nano, finished.retries[0].unix_nanos);
        assert_eq!(
            e.attributes,
            [
                key_value("weir.attempt", int(2)),
                key_value("weir.endpoint", string("10.1.0.2:8080")),
                key_value("weir.retry_reason", string("retriable_status")),
                key_value("http.response.status_code", int(503)),
            ]
        );
        let status = s.status.as_ref().expect("status");
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "HTTP 503");
    }

    #[test]
    fn a_root_client_span_without_error_has_no_parent_and_an_unset_status() {
        let mut finished = test_span(1);
        finished.parent = None;
        finished.trace_state = None;
        finished.kind = SpanKind::Client;
        finished.status = 200;
        finished.retries.clear();
        let request = decode(&Encoder::new(&Resource::default()), vec![finished]);
        let s = &request.resource_spans[0].scope_spans[0].spans[0];
        assert!(s.parent_span_id.is_empty());
        assert!(s.trace_state.is_empty());
        assert_eq!(s.kind, OtlpSpanKind::Client as i32);
        assert_eq!(s.flags, 0x01 | 0x100, "sampled, no remote parent");
        let status = s.status.as_ref().expect("status");
        assert_eq!(status.code, StatusCode::Unset as i32);
        assert!(status.message.is_empty());
        assert!(s.events.is_empty());
    }

    #[test]
    fn weirs_own_error_is_the_status_message_and_an_unrouted_span_is_named_by_its_method() {
        let mut finished = test_span(2);
        finished.names = None;
        finished.error = Some("no_route");
        finished.status = 404;
        let request = decode(&Encoder::new(&resource()), vec![finished]);
        let s = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.name, "GET");
        let status = s.status.as_ref().expect("status");
        assert_eq!(
            (status.code, status.message.as_str()),
            (StatusCode::Error as i32, "no_route")
        );
    }

    #[test]
    fn a_batch_keeps_its_spans_in_order_under_one_resource_and_scope() {
        let spans: Vec<FinishedSpan> = (0..5).map(test_span).collect();
        let request = decode(&Encoder::new(&resource()), spans);
        assert_eq!(request.resource_spans.len(), 1);
        assert_eq!(request.resource_spans[0].scope_spans.len(), 1);
        let ids: Vec<Vec<u8>> = request.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.span_id.clone())
            .collect();
        let expected: Vec<Vec<u8>> = (0..5).map(|n| test_span(n).span_id.0.to_vec()).collect();
        assert_eq!(ids, expected);
    }

    #[test]
    fn long_values_take_multi_byte_lengths() {
        let mut finished = test_span(3);
        let path = format!("/{}", "a".repeat(20_000));
        finished.path = path.as_str().into();
        let request = decode(&Encoder::new(&resource()), vec![finished]);
        let s = &request.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.attributes[1], key_value("url.path", string(&path)));
    }
}
