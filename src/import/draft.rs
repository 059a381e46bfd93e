//! The weir configuration `weir import` is building: routes of the outbound listener, the
//! inbound listener's mTLS, and services, each remembering the resource it came from.
//!
//! Translators add to a [`Draft`]; `emit.rs` writes it out. Services are keyed by what
//! they stand for (a Kubernetes Service, a subset of it, a DNS host), so a DestinationRule
//! and the VirtualService that routes to its subsets meet at the same weir service.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{
    AuthorityMatch, Backend, CircuitBreaker, Fault, FaultAbort, KubePort, Limits, LoadBalancer,
    Mirror, OutlierDetection, Retries, RouteMatch, TlsMode,
};

/// Where a generated item came from: `VirtualService shop/reviews, http[1]` and its file
/// and line, for the comment written above the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The resource and the part of it, e.g. `VirtualService shop/reviews, http[1]`.
    pub what: String,
    /// `bookinfo.yaml:12`.
    pub at: String,
}

/// What a host name in a route stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// A Kubernetes Service: its name and namespace.
    Kubernetes {
        /// Service name.
        service: String,
        /// Its namespace.
        namespace: String,
    },
    /// Any other name, found with DNS.
    Dns(String),
}

impl Host {
    /// Reads a mesh host name as Istio does: a name without dots is a Service in
    /// `namespace`; `NAME.NS.svc[.DOMAIN]` is a Service; anything else is a DNS name.
    pub fn parse(host: &str, namespace: &str) -> Host {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        match labels.as_slice() {
            ["*"] => Host::Dns(host),
            [service] => Host::Kubernetes {
                service: service.to_string(),
                namespace: namespace.to_string(),
            },
            [service, ns, "svc", ..] => Host::Kubernetes {
                service: service.to_string(),
                namespace: ns.to_string(),
            },
            _ => Host::Dns(host),
        }
    }

    /// The authority condition of a route for requests to this host from a proxy in
    /// namespace `local`: every name a client there may use for it (short, namespaced,
    /// FQDN), with or without a port. The bare short name means a Service of `local`, so it
    /// is accepted only for those.
    pub fn authority(&self, local: &str) -> AuthorityMatch {
        match self {
            Host::Kubernetes { service, namespace } if namespace == local => {
                AuthorityMatch::Regex(format!(
                    "{}(\\.{}(\\.svc(\\.cluster\\.local)?)?)?(:[0-9]+)?",
                    escape(service),
                    escape(namespace)
                ))
            }
            Host::Kubernetes { service, namespace } => AuthorityMatch::Regex(format!(
                "{}\\.{}(\\.svc(\\.cluster\\.local)?)?(:[0-9]+)?",
                escape(service),
                escape(namespace)
            )),
            Host::Dns(name) if name == "*" => AuthorityMatch::Regex(".*".to_string()),
            Host::Dns(name) => match name.strip_prefix("*.") {
                Some(suffix) => AuthorityMatch::Regex(format!(
                    "[^.]+(\\.[^.]+)*\\.{}(:[0-9]+)?",
                    escape(suffix)
                )),
                None => AuthorityMatch::Exact(name.clone()),
            },
        }
    }

    /// The Kubernetes namespace, for hosts that are Services.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Host::Kubernetes { namespace, .. } => Some(namespace),
            Host::Dns(_) => None,
        }
    }
}

fn escape(s: &str) -> String {
    regex::escape(s)
}

/// Which weir service a backend is: a host, one of its subsets, a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The host.
    pub host: Host,
    /// An Istio subset (a Service per subset in weir).
    pub subset: Option<String>,
    /// The port, when the source names one.
    pub port: Option<u16>,
}

/// Where a generated service finds its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// `discovery: kubernetes`.
    Kubernetes {
        /// Service name.
        service: String,
        /// Namespace.
        namespace: String,
        /// Port.
        port: KubePort,
    },
    /// `discovery: dns`.
    Dns {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// `endpoints:` given with `--endpoint`.
    Static(Vec<SocketAddr>),
}

/// One generated service.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDraft {
    /// Its weir name.
    pub name: String,
    /// What it stands for.
    pub key: ServiceKey,
    /// The resources that made or changed it.
    pub origins: Vec<Origin>,
    /// Where its endpoints are.
    pub target: Target,
    /// Balancer (the source mesh's default unless its resources say otherwise).
    pub load_balancer: LoadBalancer,
    /// `ring_hash.header`.
    pub ring_hash_header: Option<String>,
    /// Speak HTTP/2 to the endpoints.
    pub http2: bool,
    /// Connect timeout (the source mesh's default unless set).
    pub connect_timeout: Duration,
    /// Idle timeout of pooled connections.
    pub idle_timeout: Duration,
    /// Limits; `u32::MAX` is unlimited (what Istio and Linkerd leave unset).
    pub limits: Limits,
    /// Hystrix breaker.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Outlier detection.
    pub outlier_detection: Option<OutlierDetection>,
    /// mTLS identity expected of the endpoints.
    pub tls_identity: Option<String>,
    /// Extra comment lines (how a default or convention was applied).
    pub comments: Vec<String>,
}

/// No limit: the value Istio gives Envoy for every unset `connectionPool` field.
pub const UNLIMITED: u32 = u32::MAX;

/// Limits that limit nothing.
pub fn unlimited() -> Limits {
    Limits {
        max_connections: UNLIMITED,
        max_pending_requests: UNLIMITED,
        max_requests: UNLIMITED,
        max_retries: UNLIMITED,
    }
}

/// One generated route of the outbound listener.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteDraft {
    /// Unique route name.
    pub name: String,
    /// Where it came from.
    pub origin: Origin,
    /// Its conditions.
    pub matcher: RouteMatch,
    /// Weighted backends (service names).
    pub backends: Vec<Backend>,
    /// Request timeout.
    pub timeout: Option<Duration>,
    /// Retries.
    pub retries: Option<Retries>,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// Mirror.
    pub mirror: Option<Mirror>,
    /// Extra comment lines.
    pub comments: Vec<String>,
}

impl RouteDraft {
    /// The last route for `authority`: requests no earlier route took get 404, as the
    /// source mesh answers them. `placeholder` is a backend weir never calls (the abort
    /// answers first); `why` says which mesh behaves so.
    pub fn not_found(
        name: String,
        origin: Origin,
        authority: AuthorityMatch,
        placeholder: String,
        why: &str,
    ) -> RouteDraft {
        RouteDraft {
            name,
            origin,
            matcher: RouteMatch {
                authority: Some(authority),
                ..RouteMatch::default()
            },
            backends: vec![Backend {
                service: placeholder,
                weight: 1,
            }],
            timeout: None,
            retries: None,
            fault: Some(Fault {
                delay: None,
                abort: Some(FaultAbort {
                    status: 404,
                    percent: 100.0,
                }),
            }),
            mirror: None,
            comments: vec![why.to_string()],
        }
    }
}

/// The inbound listener's mTLS, from PeerAuthentication and AuthorizationPolicy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboundDraft {
    /// The mode, and where it came from.
    pub mode: Option<(TlsMode, Origin)>,
    /// How specific the policy that set `mode` was (mesh 1, namespace 2, workload 3): a
    /// more specific one wins, as in Istio.
    pub mode_scope: u8,
    /// Some policy allows every caller (`allow` stays empty: any mesh peer).
    pub allow_all: bool,
    /// Allowed peers (empty: any mesh peer), and where they came from.
    pub allow: Vec<String>,
    /// The resources `allow` came from.
    pub allow_origins: Vec<Origin>,
}

/// The configuration being built.
#[derive(Debug, Default)]
pub struct Draft {
    /// Outbound routes, in the order they are tried.
    pub routes: Vec<RouteDraft>,
    /// Services, in the order they were first needed.
    pub services: Vec<ServiceDraft>,
    /// Inbound mTLS.
    pub inbound: InboundDraft,
    /// The subsets DestinationRules define (host, name): a route to another subset is one
    /// Istio answers 503.
    pub defined_subsets: Vec<(Host, String)>,
    /// The port of each single-port Kubernetes Service in the input (name, namespace,
    /// port): the port of a destination that names none.
    pub known_ports: Vec<(String, String, u16)>,
}

/// Settings a new service starts from: the source mesh's defaults.
#[derive(Debug, Clone, Copy)]
pub struct MeshDefaults {
    /// Balancer.
    pub load_balancer: LoadBalancer,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout of upstream connections.
    pub idle_timeout: Duration,
}

/// Istio's: least request, 10 s to connect, 1 h idle (`connectionPool` defaults).
pub const ISTIO_DEFAULTS: MeshDefaults = MeshDefaults {
    load_balancer: LoadBalancer::LeastRequest,
    connect_timeout: Duration::from_secs(10),
    idle_timeout: Duration::from_secs(3600),
};

/// Linkerd's (and so the Gateway API's and SMI's here): latency-aware power of two choices
/// (least request is weir's nearest), 1 s to connect, 60 s idle.
pub const LINKERD_DEFAULTS: MeshDefaults = MeshDefaults {
    load_balancer: LoadBalancer::LeastRequest,
    connect_timeout: Duration::from_secs(1),
    idle_timeout: Duration::from_secs(60),
};

impl Draft {
    /// The weir service for `key`, created with `defaults` when it is new; returns its
    /// index in `services`.
    pub fn service(&mut self, key: &ServiceKey, defaults: MeshDefaults, origin: &Origin) -> usize {
        if let Some(i) = self.services.iter().position(|s| s.key == *key) {
            if !self.services[i].origins.contains(origin) {
                self.services[i].origins.push(origin.clone());
            }
            return i;
        }
        let name = self.unique_service_name(key);
        let mut comments = Vec::new();
        let target = match &key.host {
            Host::Kubernetes { service, namespace } => {
                let known = self
                    .known_ports
                    .iter()
                    .find(|(n, ns, _)| n == service && ns == namespace)
                    .map(|(_, _, p)| *p);
                let port = key.port.or(known).unwrap_or_else(|| {
                    comments.push("the source names no port and the input has no Service manifest: port 80, or the Service's only port when none is 80".to_string());
                    80
                });
                Target::Kubernetes {
                    service: match &key.subset {
                        Some(subset) => format!("{service}-{subset}"),
                        None => service.clone(),
                    },
                    namespace: namespace.clone(),
                    port: KubePort::Number(port),
                }
            }
            Host::Dns(host) => Target::Dns {
                host: host.clone(),
                port: key.port.unwrap_or_else(|| {
                    comments.push("the source names no port: port 80".to_string());
                    80
                }),
            },
        };
        self.services.push(ServiceDraft {
            name,
            key: key.clone(),
            origins: vec![origin.clone()],
            target,
            load_balancer: defaults.load_balancer,
            ring_hash_header: None,
            http2: false,
            connect_timeout: defaults.connect_timeout,
            idle_timeout: defaults.idle_timeout,
            limits: unlimited(),
            circuit_breaker: None,
            outlier_detection: None,
            tls_identity: None,
            comments,
        });
        self.services.len() - 1
    }

    /// The indices of every service of `host` (any subset or port).
    pub fn services_of(&self, host: &Host) -> Vec<usize> {
        (0..self.services.len())
            .filter(|&i| self.services[i].key.host == *host)
            .collect()
    }

    fn unique_service_name(&self, key: &ServiceKey) -> String {
        let base = match &key.host {
            Host::Kubernetes { service, .. } => service.clone(),
            Host::Dns(host) => host.replace('*', "wildcard"),
        };
        let mut name = base;
        if let Some(subset) = &key.subset {
            name = format!("{name}-{subset}");
        }
        if let Some(port) = key.port {
            if self
                .services
                .iter()
                .any(|s| s.key.host == key.host && s.key.subset == key.subset)
            {
                name = format!("{name}-{port}");
            }
        }
        if let Some(ns) = key.host.namespace() {
            if self.services.iter().any(|s| {
                s.key.host.namespace() != Some(ns)
                    && matches!((&s.key.host, &key.host), (Host::Kubernetes { service: a, .. }, Host::Kubernetes { service: b, .. }) if a == b)
            }) {
                name = format!("{name}.{ns}");
            }
        }
        let name = sanitize(&name);
        self.unique(name, |n| {
            RESERVED.contains(&n) || self.services.iter().any(|s| s.name == n)
        })
    }

    /// A route name based on `base` that no route has yet.
    pub fn route_name(&self, base: &str) -> String {
        self.unique(sanitize(base), |n| self.routes.iter().any(|r| r.name == n))
    }

    fn unique(&self, base: String, taken: impl Fn(&str) -> bool) -> String {
        if !taken(&base) {
            return base;
        }
        (2..)
            .map(|i: u32| {
                let suffix = format!("-{i}");
                let room = MAX_NAME.saturating_sub(suffix.len());
                let stem: String = base.chars().take(room).collect();
                format!("{}{suffix}", stem.trim_end_matches(['-', '_', '.']))
            })
            .find(|n| !taken(n))
            .unwrap_or(base)
    }
}

/// The longest weir name (a DNS label's length).
const MAX_NAME: usize = 63;

/// Service names weir import writes itself (the application beside the proxy), which no
/// generated service may take.
const RESERVED: &[&str] = &["local-app"];

/// A weir name made from mesh names: letters, digits, `-`, `_`, `.`; at most 63
/// characters.
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['-', '_', '.']) {
        out.remove(0);
    }
    if out.is_empty() {
        out.push_str("route");
    }
    out.chars().take(MAX_NAME).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_as_istio_reads_them() {
        let k = |s: &str, n: &str| Host::Kubernetes {
            service: s.into(),
            namespace: n.into(),
        };
        assert_eq!(Host::parse("reviews", "shop"), k("reviews", "shop"));
        assert_eq!(
            Host::parse("reviews.prod.svc.cluster.local", "shop"),
            k("reviews", "prod")
        );
        assert_eq!(
            Host::parse("Ratings.prod.svc", "shop"),
            k("ratings", "prod")
        );
        assert_eq!(
            Host::parse("api.example.com", "shop"),
            Host::Dns("api.example.com".into())
        );
    }

    #[test]
    fn a_service_authority_takes_every_name_a_client_may_use() {
        let AuthorityMatch::Regex(re) = Host::parse("reviews", "shop").authority("shop") else {
            panic!("regex expected");
        };
        let re = regex::Regex::new(&format!("^(?:{re})$")).expect("compiles");
        for ok in [
            "reviews",
            "reviews:9080",
            "reviews.shop",
            "reviews.shop.svc.cluster.local:9080",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for no in ["reviewsx", "reviews.other", "ratings", "reviews.shop.svc.x"] {
            assert!(!re.is_match(no), "{no}");
        }
        // From another namespace, the bare name is a Service of that namespace.
        let AuthorityMatch::Regex(re) = Host::parse("reviews", "shop").authority("web") else {
            panic!("regex expected");
        };
        let re = regex::Regex::new(&format!("^(?:{re})$")).expect("compiles");
        assert!(re.is_match("reviews.shop:9080"));
        assert!(!re.is_match("reviews"));
    }

    #[test]
    fn service_names_are_unique_and_valid() {
        let mut draft = Draft::default();
        let origin = Origin {
            what: "x".into(),
            at: "f:1".into(),
        };
        let key = |s: &str, n: &str, subset: Option<&str>| ServiceKey {
            host: Host::Kubernetes {
                service: s.into(),
                namespace: n.into(),
            },
            subset: subset.map(str::to_string),
            port: None,
        };
        let a = draft.service(&key("reviews", "shop", Some("v1")), ISTIO_DEFAULTS, &origin);
        let b = draft.service(&key("reviews", "shop", Some("v1")), ISTIO_DEFAULTS, &origin);
        assert_eq!(a, b);
        let c = draft.service(&key("reviews", "prod", Some("v1")), ISTIO_DEFAULTS, &origin);
        assert_eq!(draft.services[a].name, "reviews-v1");
        assert_eq!(draft.services[c].name, "reviews-v1.prod");
        assert_eq!(sanitize("a b/c"), "a-b-c");
    }
}
