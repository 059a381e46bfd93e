//! Services: endpoints or discovery, balancing and the per-service policies.

use std::time::Duration;

use super::{exactly_one, header_name, maybe, or_default, spiffe_id};
use crate::config::format_duration;
use crate::config::not_enforced::warn_if_not_enforced;
use crate::config::reader::{Ctx, Field};
use crate::config::schema::{
    CircuitBreaker, Discovery, EndpointSpec, HealthCheck, KubePort, Limits, LoadBalancer,
    OutlierDetection, RingHash, Service, ServiceTls, UpstreamProtocol,
};
use crate::config::tree::{quote, Value};
use crate::config::validate::{Addr, Facts, Named};

/// `services:`: a list (may be empty).
pub(super) fn decode_services(
    ctx: &mut Ctx,
    f: &Field<'_>,
    facts: &mut Facts,
    namespace: &str,
) -> Option<Vec<Service>> {
    let Some(items) = f.seq(
        ctx,
        "services, each with `name` and `endpoints` or `discovery`",
    ) else {
        facts.services_unreadable = true;
        return None;
    };
    let decoded: Vec<Option<Service>> = items
        .iter()
        .map(|item| decode_service(ctx, item, facts, namespace))
        .collect();
    decoded.into_iter().collect()
}

const BALANCERS: &[(&str, LoadBalancer)] = &[
    ("round_robin", LoadBalancer::RoundRobin),
    ("least_request", LoadBalancer::LeastRequest),
    ("least_connection", LoadBalancer::LeastRequest),
    ("random", LoadBalancer::Random),
    ("ring_hash", LoadBalancer::RingHash),
];

fn decode_service(
    ctx: &mut Ctx,
    f: &Field<'_>,
    facts: &mut Facts,
    namespace: &str,
) -> Option<Service> {
    let mut m = f.map(ctx, "a service with `name` and `endpoints` or `discovery`")?;
    let name_field = m.required(ctx, "name", "add a unique `name:`, e.g. `name: reviews`");
    let name = name_field
        .as_ref()
        .and_then(|f| f.identifier(ctx, "a service name"));
    if let (Some(name), Some(field)) = (&name, &name_field) {
        facts.services.push(Named {
            name: name.clone(),
            pos: field.pos(),
            path: field.path.clone(),
        });
    }
    let endpoints_field = m.optional("endpoints");
    let discovery_field = m.optional("discovery");
    let endpoints = or_default(endpoints_field.clone(), Vec::new(), |f| {
        decode_endpoints(ctx, f)
    });
    let addresses = or_default(m.optional("addresses"), Vec::new(), |f| {
        let items = f.seq(ctx, "IP:PORT addresses")?;
        let decoded: Vec<_> = items
            .iter()
            .map(|i| {
                let addr = i.socket_addr(ctx)?;
                if let Some(service) = &name {
                    facts.service_addresses.push((
                        Addr {
                            addr,
                            pos: i.pos(),
                            path: i.path.clone(),
                        },
                        service.clone(),
                    ));
                }
                Some(addr)
            })
            .collect();
        decoded.into_iter().collect()
    });
    let discovery = maybe(discovery_field.clone(), |f| {
        decode_discovery(ctx, f, namespace)
    });
    if let (Some(Some(Discovery::Kubernetes { .. })), Some(name)) = (&discovery, &name) {
        facts.kube_services.push(name.clone());
    }
    let sources_ok = match (&endpoints_field, &discovery_field) {
        (Some(_), Some(d)) => {
            ctx.error(
                d.key_pos,
                &d.path,
                "`endpoints` and `discovery` cannot both be set; keep `endpoints` for a static list or `discovery` to find endpoints dynamically",
            );
            false
        }
        (None, None) => {
            ctx.error(
                m.pos(),
                m.path(),
                "the service has no endpoints; add `endpoints: [IP:PORT, …]` for a static list, or `discovery:` with `dns: HOST:PORT` or `kubernetes: { service, namespace, port }`",
            );
            false
        }
        _ => true,
    };
    let lb_field = m.optional("load_balancer");
    let load_balancer = or_default(lb_field.clone(), LoadBalancer::RoundRobin, |f| {
        f.choice(ctx, BALANCERS)
    });
    let ring_field = m.optional("ring_hash");
    let ring_hash = maybe(ring_field.clone(), |f| {
        let mut m = f.map(ctx, "`header`, e.g. `{ header: x-user-id }`")?;
        let header = m
            .required(
                ctx,
                "header",
                "add the request header to hash, e.g. `header: x-user-id`",
            )
            .and_then(|f| header_name(ctx, &f));
        m.finish(ctx);
        Some(RingHash { header: header? })
    });
    let ring_ok = match (load_balancer, &ring_field, &lb_field) {
        (Some(LoadBalancer::RingHash), None, Some(lb)) => {
            lb.error(
                ctx,
                "`ring_hash` needs a header to hash; add `ring_hash: { header: x-user-id }` to this service",
            );
            false
        }
        (Some(lb), Some(rf), _) if lb != LoadBalancer::RingHash => {
            let chosen = match &lb_field.as_ref().map(|f| &f.node.value) {
                Some(Value::Str(s)) => s.clone(),
                _ => "round_robin".to_string(),
            };
            ctx.warn(
                rf.key_pos,
                &rf.path,
                format!("ring_hash is ignored because load_balancer is `{chosen}`; set `load_balancer: ring_hash` or remove `ring_hash`"),
            );
            true
        }
        _ => true,
    };
    let protocol = or_default(m.optional("protocol"), UpstreamProtocol::Http1, |f| {
        f.choice(
            ctx,
            &[
                ("http1", UpstreamProtocol::Http1),
                ("http2", UpstreamProtocol::Http2),
            ],
        )
    });
    let connect_timeout = or_default(m.optional("connect_timeout"), Duration::from_secs(1), |f| {
        f.positive_duration(ctx)
    });
    let idle_timeout = or_default(m.optional("idle_timeout"), Duration::from_secs(60), |f| {
        f.positive_duration(ctx)
    });
    let limits = maybe(m.optional("limits"), |f| decode_limits(ctx, f));
    let circuit_breaker = maybe(m.optional("circuit_breaker"), |f| {
        decode_circuit_breaker(ctx, f)
    });
    let outlier_detection = maybe(m.optional("outlier_detection"), |f| decode_outlier(ctx, f));
    let health_check = maybe(m.optional("health_check"), |f| decode_health_check(ctx, f));
    let tls = maybe(m.optional("tls"), |f| {
        facts.service_tls.push(Named {
            name: "tls".to_string(),
            pos: f.key_pos,
            path: f.path.clone(),
        });
        let mut m = f.map(ctx, "`identity`")?;
        let identity = m
            .required(ctx, "identity", "add the SPIFFE ID the endpoints present, e.g. `identity: spiffe://cluster.local/ns/shop/sa/reviews` (or a prefix ending in `*`)")
            .and_then(|f| spiffe_id(ctx, &f, true));
        m.finish(ctx);
        Some(ServiceTls {
            identity: identity?,
        })
    });
    m.finish(ctx);
    if !(sources_ok && ring_ok) {
        return None;
    }
    Some(Service {
        name: name?,
        endpoints: endpoints?,
        addresses: addresses?,
        discovery: discovery?,
        load_balancer: load_balancer?,
        ring_hash: ring_hash?,
        protocol: protocol?,
        connect_timeout: connect_timeout?,
        idle_timeout: idle_timeout?,
        limits: limits?.unwrap_or_default(),
        circuit_breaker: circuit_breaker?,
        outlier_detection: outlier_detection?,
        health_check: health_check?,
        tls: tls?,
    })
}

fn decode_endpoints(ctx: &mut Ctx, f: &Field<'_>) -> Option<Vec<EndpointSpec>> {
    let items = f.non_empty_seq(
        ctx,
        "endpoints: `IP:PORT` or `{ address: IP:PORT, weight: N }`",
        "list at least one `IP:PORT`, or use `discovery:` instead",
    )?;
    let decoded: Vec<Option<EndpointSpec>> = items
        .iter()
        .map(|item| match &item.node.value {
            Value::Str(_) => item
                .socket_addr(ctx)
                .map(|address| EndpointSpec { address, weight: 1 }),
            Value::Map(_) => {
                let mut m = item.map(ctx, "an endpoint")?;
                let address = m
                    .required(
                        ctx,
                        "address",
                        "add `address: IP:PORT`, e.g. `address: 127.0.0.1:9001`",
                    )
                    .and_then(|f| f.socket_addr(ctx));
                let weight = or_default(m.optional("weight"), 1, |f| f.u32_min(ctx, 0));
                m.finish(ctx);
                Some(EndpointSpec {
                    address: address?,
                    weight: weight?,
                })
            }
            _ => {
                item.type_error(
                    ctx,
                    "an endpoint: `IP:PORT` or `{ address: IP:PORT, weight: N }`",
                );
                None
            }
        })
        .collect();
    let endpoints: Vec<EndpointSpec> = decoded.into_iter().collect::<Option<_>>()?;
    if endpoints.iter().all(|e| e.weight == 0) {
        f.error(
            ctx,
            "every endpoint has weight 0, so no endpoint can be chosen; give at least one endpoint a weight above 0",
        );
        return None;
    }
    Some(endpoints)
}

fn decode_discovery(ctx: &mut Ctx, f: &Field<'_>, namespace: &str) -> Option<Discovery> {
    let mut m = f.map(
        ctx,
        "`dns: HOST:PORT` or `kubernetes: { service, namespace, port }`",
    )?;
    let chosen = exactly_one(
        ctx,
        &mut m,
        &["dns", "kubernetes"],
        "discovery",
        "discovery: { dns: reviews.shop.svc.cluster.local:9080 }",
    );
    let refresh_field = m.optional("refresh");
    m.finish(ctx);
    let (key, source) = chosen?;
    if key == "kubernetes" {
        if let Some(r) = &refresh_field {
            ctx.error(
                r.key_pos,
                &r.path,
                "`refresh` applies only to `dns` discovery (Kubernetes endpoints are watched, not polled); remove it",
            );
        }
        let mut k = source.map(ctx, "`service`, `namespace` and `port`")?;
        let service = k
            .required(
                ctx,
                "service",
                "add the Kubernetes Service name, e.g. `service: reviews`",
            )
            .and_then(|f| f.name(ctx, "a Kubernetes service name"));
        let default_ns = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let ns = or_default(k.optional("namespace"), default_ns.to_string(), |f| {
            f.name(ctx, "a namespace")
        });
        let port = k
            .required(
                ctx,
                "port",
                "add the port number or name, e.g. `port: 9080` or `port: http`",
            )
            .and_then(|f| kube_port(ctx, &f));
        k.finish(ctx);
        if refresh_field.is_some() {
            return None;
        }
        return Some(Discovery::Kubernetes {
            service: service?,
            namespace: ns?,
            port: port?,
        });
    }
    let target = dns_target(ctx, &source);
    let refresh = or_default(refresh_field, Duration::from_secs(5), |f| {
        f.positive_duration(ctx)
    });
    let (host, port) = target?;
    Some(Discovery::Dns {
        host,
        port,
        refresh: refresh?,
    })
}

/// The port of Kubernetes discovery: a number (1–65535) or a Service port name (a DNS
/// label: lower-case letters, digits and `-`, at most 63, not all digits).
fn kube_port(ctx: &mut Ctx, f: &Field<'_>) -> Option<KubePort> {
    match &f.node.value {
        Value::Int(_) => f.u16_in(ctx, 1, u16::MAX).map(KubePort::Number),
        Value::Str(s) => {
            let problem = if s.is_empty() {
                Some("a port name must not be empty")
            } else if s.len() > 63 {
                Some("a port name has at most 63 characters")
            } else if s.bytes().all(|b| b.is_ascii_digit()) {
                Some("a port number is written without quotes")
            } else if !s
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                || s.starts_with('-')
                || s.ends_with('-')
            {
                Some("a port name is lower-case letters, digits and `-`, starting and ending with a letter or digit")
            } else {
                None
            };
            match problem {
                Some(problem) => {
                    f.error(
                        ctx,
                        format!(
                            "{} is not a port number or name: {problem}; write e.g. `port: 5432` or `port: postgres`",
                            quote(s)
                        ),
                    );
                    None
                }
                None => Some(KubePort::Name(s.clone())),
            }
        }
        _ => {
            f.type_error(ctx, "a port number or a port name");
            None
        }
    }
}

/// `host:port` for DNS discovery.
fn dns_target(ctx: &mut Ctx, f: &Field<'_>) -> Option<(String, u16)> {
    let s = f.str(ctx)?;
    let parsed = s.rsplit_once(':').and_then(|(host, port)| {
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        let port = port.parse::<u16>().ok().filter(|p| *p != 0);
        port.filter(|_| host_ok).map(|p| (host.to_string(), p))
    });
    if parsed.is_none() {
        f.error(
            ctx,
            format!(
                "{} is not HOST:PORT; write e.g. `dns: reviews.shop.svc.cluster.local:9080`",
                quote(s)
            ),
        );
    }
    parsed
}

fn decode_limits(ctx: &mut Ctx, f: &Field<'_>) -> Option<Limits> {
    warn_if_not_enforced(ctx, "service.limits", f.key_pos, &f.path);
    let mut m = f.map(
        ctx,
        "`max_connections`, `max_pending_requests`, `max_requests`, `max_retries`",
    )?;
    let max_connections = or_default(m.optional("max_connections"), 1024, |f| f.u32_min(ctx, 1));
    let max_pending_requests = or_default(m.optional("max_pending_requests"), 1024, |f| {
        f.u32_min(ctx, 0)
    });
    let max_requests = or_default(m.optional("max_requests"), 1024, |f| f.u32_min(ctx, 1));
    let max_retries = or_default(m.optional("max_retries"), 3, |f| f.u32_min(ctx, 0));
    m.finish(ctx);
    Some(Limits {
        max_connections: max_connections?,
        max_pending_requests: max_pending_requests?,
        max_requests: max_requests?,
        max_retries: max_retries?,
    })
}

fn decode_circuit_breaker(ctx: &mut Ctx, f: &Field<'_>) -> Option<CircuitBreaker> {
    warn_if_not_enforced(ctx, "service.circuit_breaker", f.key_pos, &f.path);
    let mut m = f.map(
        ctx,
        "`window`, `buckets`, `request_volume_threshold`, `error_threshold_percent`, …",
    )?;
    let window_field = m.optional("window");
    let buckets_field = m.optional("buckets");
    let window = or_default(window_field.clone(), Duration::from_secs(10), |f| {
        f.positive_duration(ctx)
    });
    let buckets = or_default(buckets_field.clone(), 10, |f| f.u32_min(ctx, 1));
    let request_volume_threshold = or_default(m.optional("request_volume_threshold"), 20, |f| {
        f.u32_min(ctx, 0)
    });
    let error_threshold_percent = or_default(m.optional("error_threshold_percent"), 50.0, |f| {
        f.percent(ctx)
    });
    let sleep_window = or_default(m.optional("sleep_window"), Duration::from_secs(5), |f| {
        f.positive_duration(ctx)
    });
    let half_open_requests = or_default(m.optional("half_open_requests"), 1, |f| f.u32_min(ctx, 1));
    m.finish(ctx);
    if let (Some(w), Some(b)) = (window, buckets) {
        if w.as_nanos() % u128::from(b) != 0 {
            if let Some(at) = buckets_field.as_ref().or(window_field.as_ref()) {
                at.error(
                    ctx,
                    format!(
                        "a window of {} does not divide evenly into {b} buckets; choose a window that is a multiple of the bucket count (e.g. `window: {}`) or adjust `buckets`",
                        format_duration(w),
                        format_duration(Duration::from_secs(u64::from(b)))
                    ),
                );
            }
            return None;
        }
    }
    Some(CircuitBreaker {
        window: window?,
        buckets: buckets?,
        request_volume_threshold: request_volume_threshold?,
        error_threshold_percent: error_threshold_percent?,
        sleep_window: sleep_window?,
        half_open_requests: half_open_requests?,
    })
}

fn decode_outlier(ctx: &mut Ctx, f: &Field<'_>) -> Option<OutlierDetection> {
    warn_if_not_enforced(ctx, "service.outlier_detection", f.key_pos, &f.path);
    let mut m = f.map(
        ctx,
        "`consecutive_5xx`, `interval`, `base_ejection_time`, …",
    )?;
    let consecutive_5xx = or_default(m.optional("consecutive_5xx"), 5, |f| f.u32_min(ctx, 0));
    let consecutive_gateway_errors = or_default(m.optional("consecutive_gateway_errors"), 0, |f| {
        f.u32_min(ctx, 0)
    });
    let interval = or_default(m.optional("interval"), Duration::from_secs(10), |f| {
        f.positive_duration(ctx)
    });
    let base_ejection_time = or_default(
        m.optional("base_ejection_time"),
        Duration::from_secs(30),
        |f| f.positive_duration(ctx),
    );
    let max_ejection_percent =
        or_default(m.optional("max_ejection_percent"), 10.0, |f| f.percent(ctx));
    m.finish(ctx);
    Some(OutlierDetection {
        consecutive_5xx: consecutive_5xx?,
        consecutive_gateway_errors: consecutive_gateway_errors?,
        interval: interval?,
        base_ejection_time: base_ejection_time?,
        max_ejection_percent: max_ejection_percent?,
    })
}

fn decode_health_check(ctx: &mut Ctx, f: &Field<'_>) -> Option<HealthCheck> {
    warn_if_not_enforced(ctx, "service.health_check", f.key_pos, &f.path);
    let mut m = f.map(
        ctx,
        "`path`, `interval`, `timeout`, `healthy_threshold`, `unhealthy_threshold`",
    )?;
    let path = m
        .required(ctx, "path", "add the path to GET, e.g. `path: /healthz`")
        .and_then(|f| {
            let s = f.str(ctx)?;
            if !s.starts_with('/') {
                f.error(
                    ctx,
                    format!("the health-check path must start with `/`; write `/{s}`"),
                );
                return None;
            }
            Some(s.to_string())
        });
    let interval = or_default(m.optional("interval"), Duration::from_secs(5), |f| {
        f.positive_duration(ctx)
    });
    let timeout = or_default(m.optional("timeout"), Duration::from_secs(1), |f| {
        f.positive_duration(ctx)
    });
    let healthy_threshold = or_default(m.optional("healthy_threshold"), 2, |f| f.u32_min(ctx, 1));
    let unhealthy_threshold =
        or_default(m.optional("unhealthy_threshold"), 3, |f| f.u32_min(ctx, 1));
    m.finish(ctx);
    Some(HealthCheck {
        path: path?,
        interval: interval?,
        timeout: timeout?,
        healthy_threshold: healthy_threshold?,
        unhealthy_threshold: unhealthy_threshold?,
    })
}
