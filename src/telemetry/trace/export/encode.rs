//! [`FinishedSpan`]s → one OTLP `ExportTraceServiceRequest` (protobuf bytes): one resource
//! (this proxy), one instrumentation scope (`weir` and its version), the spans.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind as OtlpSpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, SpanFlags, Status};
use prost::Message;

use crate::telemetry::trace::{
    Attribute, AttributeValue, FinishedSpan, Resource, SpanEvent, SpanKind,
};

/// The instrumentation scope every span is reported under.
const SCOPE_NAME: &str = "weir";

/// W3C trace flags: only sampled spans are exported.
const SAMPLED: u32 = 0x01;

/// Builds export requests; holds the resource, converted once.
#[derive(Debug, Clone)]
pub(super) struct Encoder {
    resource: OtlpResource,
}

impl Encoder {
    /// For spans of this resource (`service.name`, `k8s.*`).
    pub(super) fn new(resource: &Resource) -> Self {
        Encoder {
            resource: OtlpResource {
                attributes: key_values(resource.attributes.clone()),
                ..Default::default()
            },
        }
    }

    /// One batch as the body of an OTLP/HTTP POST.
    pub(super) fn encode(&self, spans: Vec<FinishedSpan>) -> Bytes {
        Bytes::from(self.request(spans).encode_to_vec())
    }

    /// One batch as the OTLP message.
    pub(super) fn request(&self, spans: Vec<FinishedSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    spans: spans.into_iter().map(span).collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

fn span(finished: FinishedSpan) -> Span {
    let kind = match finished.kind {
        SpanKind::Server => OtlpSpanKind::Server,
        SpanKind::Client => OtlpSpanKind::Client,
    };
    let status = match finished.error {
        Some(message) => Status {
            message,
            code: StatusCode::Error as i32,
        },
        None => Status {
            message: String::new(),
            code: StatusCode::Unset as i32,
        },
    };
    Span {
        trace_id: finished.trace_id.0.to_vec(),
        span_id: finished.span_id.0.to_vec(),
        trace_state: finished.trace_state.unwrap_or_default(),
        parent_span_id: finished.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: flags(finished.parent.is_some()),
        name: finished.name,
        kind: kind as i32,
        start_time_unix_nano: finished.start_unix_nanos,
        end_time_unix_nano: finished.end_unix_nanos,
        attributes: key_values(finished.attributes),
        events: finished.events.into_iter().map(event).collect(),
        status: Some(status),
        ..Default::default()
    }
}

/// Sampled, and whether the parent is remote: a parent always comes from the request's
/// headers, so from another process (the caller, or the application beside this proxy).
fn flags(has_parent: bool) -> u32 {
    let mut flags = SAMPLED | SpanFlags::ContextHasIsRemoteMask as u32;
    if has_parent {
        flags |= SpanFlags::ContextIsRemoteMask as u32;
    }
    flags
}

fn event(event: SpanEvent) -> Event {
    Event {
        time_unix_nano: event.unix_nanos,
        name: event.name.to_owned(),
        attributes: key_values(event.attributes),
        dropped_attributes_count: 0,
    }
}

fn key_values(attributes: Vec<Attribute>) -> Vec<KeyValue> {
    attributes
        .into_iter()
        .map(|(key, value)| KeyValue {
            key: key.to_owned(),
            value: Some(any_value(value)),
            ..Default::default()
        })
        .collect()
}

fn any_value(value: AttributeValue) -> AnyValue {
    let value = match value {
        AttributeValue::Text(text) => any_value::Value::StringValue(text),
        AttributeValue::Static(text) => any_value::Value::StringValue(text.to_owned()),
        AttributeValue::Int(n) => any_value::Value::IntValue(n),
    };
    AnyValue { value: Some(value) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::export::test_support::{resource, span as test_span};

    fn string(value: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        })
    }

    fn key_value(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn a_span_with_every_field_set_decodes_to_the_same_values() {
        let finished = test_span(7);
        let body = Encoder::new(&resource()).encode(vec![finished.clone()]);
        let request = ExportTraceServiceRequest::decode(body).expect("valid protobuf");

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
        assert_eq!(s.name, "span 7");
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
                key_value(
                    "http.response.status_code",
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(503)),
                    })
                ),
            ]
        );
        assert_eq!(s.events.len(), 1);
        let e = &s.events[0];
        assert_eq!(e.name, "retry");
        assert_eq!(e.time_unix_nano, finished.events[0].unix_nanos);
        assert_eq!(
            e.attributes,
            [key_value(
                "weir.attempt",
                Some(AnyValue {
                    value: Some(any_value::Value::IntValue(2)),
                })
            )]
        );
        let status = s.status.as_ref().expect("status");
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "upstream answered 503");
    }

    #[test]
    fn a_root_client_span_without_error_has_no_parent_and_an_unset_status() {
        let mut finished = test_span(1);
        finished.parent = None;
        finished.trace_state = None;
        finished.kind = SpanKind::Client;
        finished.error = None;
        let request = Encoder::new(&Resource::default()).request(vec![finished]);
        let s = &request.resource_spans[0].scope_spans[0].spans[0];
        assert!(s.parent_span_id.is_empty());
        assert!(s.trace_state.is_empty());
        assert_eq!(s.kind, OtlpSpanKind::Client as i32);
        assert_eq!(s.flags, 0x01 | 0x100, "sampled, no remote parent");
        let status = s.status.as_ref().expect("status");
        assert_eq!(status.code, StatusCode::Unset as i32);
        assert!(status.message.is_empty());
    }

    #[test]
    fn a_batch_keeps_its_spans_in_order_under_one_resource_and_scope() {
        let spans: Vec<FinishedSpan> = (0..5).map(test_span).collect();
        let request = Encoder::new(&resource()).request(spans);
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
}
