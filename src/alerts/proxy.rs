//! Alerts on the sidecar itself rather than a service: its certificate, its configuration
//! reloads, its span export. Each names the sidecar (`instance`) to look at.

use super::counter::increased;
use super::rules::{Alert, Group, Rule, Severity};
use super::targets::Targets;

/// How close to expiry the workload certificate pages: long enough to renew it by hand.
const EXPIRY_HOURS: u32 = 6;

/// The window the reload and span counters are watched over.
const WINDOW: &str = "10m";

/// The sidecar alerts: always the reload alert, the certificate alert when there is an
/// `identity`, the span alert when spans are exported.
pub(crate) fn group(targets: &Targets) -> Group {
    let mut rules = Vec::new();
    if targets.identity {
        rules.push(Rule::Alert(certificate_expiry()));
    }
    rules.push(Rule::Alert(reload_failed()));
    if targets.span_export {
        rules.push(Rule::Alert(spans_dropped()));
    }
    Group {
        name: "weir-proxy",
        rules,
    }
}

fn certificate_expiry() -> Alert {
    Alert {
        name: "WeirCertificateExpiringSoon",
        expr: format!(
            "weir_tls_certificate_expiry_timestamp_seconds - time() < {EXPIRY_HOURS} * 3600\n"
        ),
        for_: None,
        severity: Severity::Page,
        summary: "Certificate of {{ $labels.identity }} on {{ $labels.instance }} expires in \
                  {{ $value | humanizeDuration }}"
            .into(),
        description: format!(
            "weir_tls_certificate_expiry_timestamp_seconds says the workload certificate in \
             force on {{{{ $labels.instance }}}} expires within {EXPIRY_HOURS} hours; once it \
             has, /ready answers 503 and peers refuse the mutual TLS handshake. Check that the \
             files named by identity.cert and identity.key are renewed (weir certs issue, or the \
             Secret's issuer), weir_tls_identity_reloads_total{{result=\"failure\"}} for a \
             renewed certificate weir refused, and GET /config (loopback only) for the files in \
             force."
        ),
    }
}

fn reload_failed() -> Alert {
    Alert {
        name: "WeirConfigReloadFailed",
        expr: increased("weir_config_reloads_total{result=\"failure\"}", WINDOW),
        for_: None,
        severity: Severity::Ticket,
        summary: "weir on {{ $labels.instance }} refused a configuration reload".into(),
        description: format!(
            "weir_config_reloads_total{{result=\"failure\"}} increased in the last {WINDOW}: a \
             reload (SIGHUP or POST /reload) found the new configuration invalid, and the sidecar \
             at {{{{ $labels.instance }}}} kept running the previous one. Run weir check on the \
             file for every error with its position; GET /config (loopback only) shows the \
             configuration in force."
        ),
    }
}

fn spans_dropped() -> Alert {
    Alert {
        name: "WeirTraceSpansDropped",
        expr: increased("weir_trace_spans_total{outcome=\"dropped\"}", WINDOW),
        for_: None,
        severity: Severity::Warning,
        summary: "weir on {{ $labels.instance }} dropped trace spans".into(),
        description: format!(
            "weir_trace_spans_total{{outcome=\"dropped\"}} increased in the last {WINDOW}: the \
             span export queue of the sidecar at {{{{ $labels.instance }}}} was full, and spans \
             were dropped rather than delay requests. Check the collector at \
             tracing.otlp.endpoint (weir_trace_spans_total{{outcome=\"failed\"}} counts batches \
             it refused or did not answer), then raise tracing.otlp.queue_size or lower \
             tracing.sampling_percent; GET /config (loopback only) shows the tracing settings \
             in force."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(identity: bool, span_export: bool) -> Vec<&'static str> {
        let targets = Targets {
            http_services: vec![],
            http_routes: vec![],
            services: vec![],
            breakers: vec![],
            identity,
            span_export,
        };
        group(&targets).alert_names()
    }

    #[test]
    fn certificate_and_span_alerts_follow_the_configuration() {
        assert_eq!(names(false, false), ["WeirConfigReloadFailed"]);
        assert_eq!(
            names(true, true),
            [
                "WeirCertificateExpiringSoon",
                "WeirConfigReloadFailed",
                "WeirTraceSpansDropped"
            ]
        );
    }

    #[test]
    fn certificate_pages_six_hours_before_expiry() {
        let a = certificate_expiry();
        assert_eq!(
            a.expr,
            "weir_tls_certificate_expiry_timestamp_seconds - time() < 6 * 3600\n"
        );
        assert_eq!(a.severity, Severity::Page);
    }
}
