//! A route's and a service's configured behaviour, in sentences.

use crate::config::{format_duration, Discovery, KubePort, LoadBalancer, RetryOn, Route, Service};

/// Timeouts, retries, fault injection and mirroring of a route.
pub(super) fn route(r: &Route) -> Vec<String> {
    let mut out = vec![match r.timeout {
        Some(t) => format!("timeout: {} for the whole request until response headers, retries included", format_duration(t)),
        None => "timeout: none on the route (the listener's and the service's connect timeout still apply)".to_string(),
    }];
    out.push(match &r.retries {
        None => "retries: none".to_string(),
        Some(p) => format!(
            "retries: up to {} more attempt{} on {}, each try bounded by {}, within a budget of {}% of active requests",
            p.attempts,
            if p.attempts == 1 { "" } else { "s" },
            p.on.iter().map(|o| retry_on(*o)).collect::<Vec<_>>().join(", "),
            p.per_try_timeout.map_or("the route timeout".to_string(), format_duration),
            p.budget_percent
        ),
    });
    if let Some(f) = &r.fault {
        let mut parts = Vec::new();
        if let Some(d) = &f.delay {
            parts.push(format!(
                "delays {}% of requests by {}",
                d.percent,
                format_duration(d.fixed)
            ));
        }
        if let Some(a) = &f.abort {
            parts.push(format!(
                "answers {}% with {} (weir-error: fault_abort)",
                a.percent, a.status
            ));
        }
        out.push(format!("fault: {}", parts.join("; ")));
    }
    if let Some(m) = &r.mirror {
        out.push(format!(
            "mirror: copies {}% of requests to service {} (answers ignored)",
            m.percent, m.service
        ));
    }
    out
}

fn retry_on(o: RetryOn) -> String {
    match o {
        RetryOn::ConnectFailure => "connect-failure".into(),
        RetryOn::Reset => "reset".into(),
        RetryOn::GatewayError => "gateway-error".into(),
        RetryOn::Status5xx => "5xx".into(),
        RetryOn::Status(s) => s.to_string(),
    }
}

/// Endpoints, balancer, limits, breaker, outlier detection, health checks and TLS of a
/// service.
pub(super) fn service(s: &Service) -> Vec<String> {
    let mut out = Vec::new();
    out.push(match &s.discovery {
        None => format!(
            "endpoints: {}",
            s.endpoints
                .iter()
                .map(|e| if e.weight == 1 {
                    e.address.to_string()
                } else {
                    format!("{} (weight {})", e.address, e.weight)
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Discovery::Dns {
            host,
            port,
            refresh,
        }) => format!(
            "endpoints: the addresses of {host}:{port}, resolved every {}",
            format_duration(*refresh)
        ),
        Some(Discovery::Kubernetes {
            service,
            namespace,
            port,
        }) => format!(
            "endpoints: the ready pods of Kubernetes service {namespace}/{service}, port {}",
            match port {
                KubePort::Number(n) => n.to_string(),
                KubePort::Name(n) => n.clone(),
            }
        ),
    });
    out.push(match (s.load_balancer, &s.ring_hash) {
        (LoadBalancer::RoundRobin, _) => {
            "balancer: round_robin (each endpoint in turn, by weight)".into()
        }
        (LoadBalancer::LeastRequest, _) => {
            "balancer: least_request (the endpoint with the fewest requests in flight)".into()
        }
        (LoadBalancer::Random, _) => "balancer: random (by weight)".into(),
        (LoadBalancer::RingHash, Some(r)) => format!(
            "balancer: ring_hash on header {} (a request without it goes to a random endpoint)",
            r.header
        ),
        (LoadBalancer::RingHash, None) => "balancer: ring_hash".into(),
    });
    let l = &s.limits;
    out.push(format!(
        "limits: {} connections, {} pending requests, {} requests, {} retries in flight (more: 503 weir-error: overflow)",
        l.max_connections, l.max_pending_requests, l.max_requests, l.max_retries
    ));
    out.push(match &s.circuit_breaker {
        None => "circuit breaker: none".into(),
        Some(b) => format!(
            "circuit breaker: opens when {}% of at least {} requests in {} fail; then refuses (503 weir-error: circuit_open) for {}, then lets {} trial request{} through",
            b.error_threshold_percent,
            b.request_volume_threshold,
            format_duration(b.window),
            format_duration(b.sleep_window),
            b.half_open_requests,
            if b.half_open_requests == 1 { "" } else { "s" }
        ),
    });
    out.push(match &s.outlier_detection {
        None => "outlier detection: the default, ejecting an endpoint after 5 connect failures in a row for 30s".into(),
        Some(o) => {
            let mut rules = Vec::new();
            if o.consecutive_5xx > 0 {
                rules.push(format!("{} 5xx in a row", o.consecutive_5xx));
            }
            if o.consecutive_gateway_errors > 0 {
                rules.push(format!("{} gateway errors in a row", o.consecutive_gateway_errors));
            }
            if rules.is_empty() {
                "outlier detection: configured with no rule that ejects".into()
            } else {
                format!(
                    "outlier detection: ejects an endpoint after {} for {} (longer each time), at most {}% of endpoints, reconsidered every {}",
                    rules.join(" or "),
                    format_duration(o.base_ejection_time),
                    o.max_ejection_percent,
                    format_duration(o.interval)
                )
            }
        }
    });
    if let Some(h) = &s.health_check {
        out.push(format!(
            "health check: GET {} every {} (timeout {}); out of rotation after {} failures, back after {} passes",
            h.path,
            format_duration(h.interval),
            format_duration(h.timeout),
            h.unhealthy_threshold,
            h.healthy_threshold
        ));
    }
    out.push(match &s.tls {
        Some(t) => format!("tls: mTLS, the endpoints must present {}", t.identity),
        None => "tls: none (plaintext to the endpoints)".into(),
    });
    out.push(format!(
        "connect timeout: {}",
        format_duration(s.connect_timeout)
    ));
    out
}
