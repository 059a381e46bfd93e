//! The telemetry a running weir starts once and keeps across reloads: the access-log
//! writer and the span exporter, and the OTLP resource that names this proxy's spans.

use std::sync::Arc;

use crate::config::{Config, Node};
use crate::telemetry::access_log::{self, AccessLog};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::export::{Exporter, SpanSink};
use crate::telemetry::trace::tracer::Tracer;
use crate::telemetry::trace::{Attribute, AttributeValue, Resource};

/// Starts the access-log writer when `logging.access_log` is on. If its thread cannot be
/// started, weir serves without the access log rather than not at all.
pub(super) fn start_access_log(
    config: &Config,
    metrics: &Metrics,
) -> (Option<AccessLog>, Option<access_log::Writer>) {
    if !config.logging.access_log {
        return (None, None);
    }
    match AccessLog::start(config.logging.format, metrics.access_log_dropped.clone()) {
        Ok((log, writer)) => (Some(log), Some(writer)),
        Err(e) => {
            tracing::warn!("cannot start the access-log writer ({e}); the access log is off");
            (None, None)
        }
    }
}

/// Starts the span exporter when `tracing.otlp` names a collector. Its sink outlives
/// reloads: a reload may change sampling and propagation, not the collector.
pub(super) fn start_exporter(
    config: &Config,
    metrics: &Metrics,
) -> (Option<SpanSink>, Option<Exporter>) {
    match config.tracing.as_ref().and_then(|t| t.otlp.as_ref()) {
        Some(otlp) => {
            let resource = resource(&config.node, |name| std::env::var(name).ok());
            let (sink, exporter) = Exporter::start(otlp, resource, metrics.trace_spans.clone());
            (Some(sink), Some(exporter))
        }
        None => (None, None),
    }
}

/// The tracer of `config` (when it has `tracing`), recording into `sink`.
pub(super) fn tracer(config: &Config, sink: Option<&SpanSink>) -> Option<Arc<Tracer>> {
    let tracing_config = config.tracing.as_ref()?;
    Some(Arc::new(Tracer::new(tracing_config, sink.cloned())))
}

/// The OTLP resource of this proxy's spans: `service.name` from `node.service` (`weir` when
/// unset), the namespace from `node.namespace` or `POD_NAMESPACE`, the pod from `POD_NAME`
/// (the Downward API variables `weir inject` sets).
fn resource(node: &Node, env: impl Fn(&str) -> Option<String>) -> Resource {
    let text = |s: String| AttributeValue::Text(s);
    let mut attributes: Vec<Attribute> = vec![(
        "service.name",
        text(match node.service.as_str() {
            "" => "weir".to_string(),
            s => s.to_string(),
        }),
    )];
    let namespace = Some(node.namespace.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| env("POD_NAMESPACE"));
    if let Some(namespace) = namespace {
        attributes.push(("k8s.namespace.name", text(namespace)));
    }
    if let Some(pod) = env("POD_NAME").filter(|p| !p.is_empty()) {
        attributes.push(("k8s.pod.name", text(pod)));
    }
    if !node.workload.is_empty() {
        attributes.push(("k8s.deployment.name", text(node.workload.clone())));
    }
    Resource { attributes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(resource: &'a Resource, key: &str) -> Option<&'a str> {
        resource.attributes.iter().find_map(|(k, v)| match v {
            AttributeValue::Text(t) if *k == key => Some(t.as_str()),
            _ => None,
        })
    }

    #[test]
    fn spans_name_the_node_and_the_pod_from_the_downward_api() {
        let node = Node {
            service: "reviews".into(),
            namespace: String::new(),
            workload: "reviews-v2".into(),
        };
        let env = |name: &str| match name {
            "POD_NAMESPACE" => Some("shop".to_string()),
            "POD_NAME" => Some("reviews-v2-7d9f".to_string()),
            _ => None,
        };
        let r = resource(&node, env);
        assert_eq!(text(&r, "service.name"), Some("reviews"));
        assert_eq!(text(&r, "k8s.namespace.name"), Some("shop"));
        assert_eq!(text(&r, "k8s.pod.name"), Some("reviews-v2-7d9f"));
        assert_eq!(text(&r, "k8s.deployment.name"), Some("reviews-v2"));

        // The configured namespace wins over the environment; an unnamed node is `weir`.
        let node = Node {
            namespace: "billing".into(),
            ..Node::default()
        };
        let r = resource(&node, env);
        assert_eq!(text(&r, "service.name"), Some("weir"));
        assert_eq!(text(&r, "k8s.namespace.name"), Some("billing"));
        let r = resource(&Node::default(), |_| None);
        assert_eq!(r.attributes.len(), 1, "{r:?}");
    }
}
