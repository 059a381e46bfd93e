//! A service: its current endpoint set, the balancer over it, and endpoint-set updates that
//! never disturb requests already in flight.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderMap, HeaderName};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::balancer::{Balancer, Likely};
use super::circuit_breaker::CircuitBreaker;
use super::endpoint::{Endpoint, EndpointState};
use super::limits::Limits;
use super::outcome::Outcome;
use super::outlier::OutlierDetector;
use super::pool::Pool;
use super::tls_origin::OutboundTls;
use crate::config::{self, LoadBalancer, UpstreamProtocol};
use crate::telemetry::metrics::{
    EjectionLabels, EndpointLabels, EndpointStateLabels, Metrics, RequestCounters,
};

/// An immutable endpoint set and the balancer built over the endpoints in rotation;
/// replaced whole when discovery, outlier detection or health checks change it, so the
/// request path never checks endpoint state itself.
#[derive(Debug)]
pub struct EndpointSet {
    /// Every endpoint in discovery order, in rotation or not.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Indices into `endpoints` of those in rotation; the balancer picks among these.
    in_rotation: Vec<usize>,
    balancer: Balancer,
}

impl EndpointSet {
    fn build(kind: LoadBalancer, endpoints: Vec<Arc<Endpoint>>) -> Self {
        let in_rotation: Vec<usize> = (0..endpoints.len())
            .filter(|&i| endpoints[i].state() == EndpointState::Healthy)
            .collect();
        let balancer = Balancer::new(
            kind,
            in_rotation
                .iter()
                .map(|&i| (&*endpoints[i].label, endpoints[i].weight)),
        );
        EndpointSet {
            endpoints,
            in_rotation,
            balancer,
        }
    }

    /// Number of endpoints in rotation.
    pub fn in_rotation(&self) -> usize {
        self.in_rotation.len()
    }
}

/// An upstream service as the request path sees it.
#[derive(Debug)]
pub struct Service {
    /// Name from the configuration; a metric label.
    pub name: String,
    /// HTTP version spoken to its endpoints.
    pub protocol: UpstreamProtocol,
    load_balancer: LoadBalancer,
    hash_header: Option<HeaderName>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// (listener, route) pairs that reach this service: the slots of per-endpoint counters.
    route_slots: Vec<(String, String)>,
    metrics: Arc<Metrics>,
    endpoints: ArcSwap<EndpointSet>,
    /// `weir_upstream_endpoints{state}`: healthy, ejected, unhealthy.
    state_gauges: [Gauge; 3],
    /// Connection and request limits.
    pub limits: Arc<Limits>,
    /// Serializes endpoint-set changes (discovery, ejection, health), so one change never
    /// overwrites another made at the same moment. Only writers take it.
    publishing: std::sync::Mutex<()>,
    /// Set when a reload replaced or removed the service (see [`Service::retire`]).
    retired: AtomicBool,
    /// The Hystrix circuit breaker, when configured.
    pub breaker: Option<CircuitBreaker>,
    /// Outlier detection: as configured, or by default the ejection of an endpoint after
    /// five connect failures in a row.
    pub outlier: OutlierDetector,
    /// Mutual TLS to the endpoints, for a service with `tls`.
    tls: Option<Arc<OutboundTls>>,
    /// Where applications believe the service is, as its discovery finds them (a
    /// Kubernetes Service's cluster IP and port): transparent listeners' routes to the
    /// service claim these destinations.
    pub discovered_addresses: Arc<ArcSwap<Vec<SocketAddr>>>,
}

impl Service {
    /// Builds a service from its configuration. `route_slots` names every (listener, route)
    /// pair whose backends include it, so endpoint metric handles can be resolved up front.
    pub fn new(
        cfg: &config::Service,
        route_slots: Vec<(String, String)>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Self::with_tls(cfg, route_slots, metrics, None)
    }

    /// Like [`Service::new`], reaching the endpoints over `tls` when given.
    pub fn with_tls(
        cfg: &config::Service,
        route_slots: Vec<(String, String)>,
        metrics: Arc<Metrics>,
        tls: Option<Arc<OutboundTls>>,
    ) -> Arc<Self> {
        let state_gauges = [
            EndpointState::Healthy,
            EndpointState::Ejected,
            EndpointState::Unhealthy,
        ]
        .map(|state| {
            metrics
                .upstream_endpoints
                .get_or_create_owned(&EndpointStateLabels {
                    service: cfg.name.clone(),
                    state: state.as_str().into(),
                })
        });
        let service = Service {
            name: cfg.name.clone(),
            protocol: cfg.protocol,
            load_balancer: cfg.load_balancer,
            hash_header: cfg
                .ring_hash
                .as_ref()
                .and_then(|r| HeaderName::from_bytes(r.header.as_bytes()).ok()),
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            route_slots,
            endpoints: ArcSwap::from_pointee(EndpointSet::build(cfg.load_balancer, Vec::new())),
            state_gauges,
            limits: Limits::new(&cfg.name, &cfg.limits, &metrics),
            publishing: std::sync::Mutex::new(()),
            retired: AtomicBool::new(false),
            breaker: cfg
                .circuit_breaker
                .as_ref()
                .map(|b| CircuitBreaker::new(&cfg.name, b, &metrics)),
            outlier: match &cfg.outlier_detection {
                Some(o) => OutlierDetector::new(&cfg.name, o, metrics.clone()),
                None => OutlierDetector::connect_failures_only(&cfg.name, metrics.clone()),
            },
            metrics,
            tls,
            discovered_addresses: Arc::default(),
        };
        let statics: Vec<(SocketAddr, u32)> = cfg
            .endpoints
            .iter()
            .map(|e| (e.address, e.weight))
            .collect();
        // A service built for a reload must not remove the series its predecessor still
        // counts in: the reload does that once the new service is in force.
        service.replace_endpoints(&statics);
        Arc::new(service)
    }

    /// The (listener, route) pairs whose requests this service's endpoints count.
    pub fn route_slots(&self) -> &[(String, String)] {
        &self.route_slots
    }

    /// The slot of a (listener, route) pair in each endpoint's counters.
    pub fn slot(&self, listener: &str, route: &str) -> Option<usize> {
        self.route_slots
            .iter()
            .position(|(l, r)| l == listener && r == route)
    }

    /// The value the ring-hash balancer hashes: the configured header's, if the request
    /// has it.
    fn hash_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        self.hash_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .map(|v| v.as_bytes())
    }

    /// Chooses an endpoint for a request, or `None` when no endpoint can take it.
    pub fn pick(&self, headers: &HeaderMap) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        let key = self.hash_key(headers);
        let idx = set
            .balancer
            .pick(key, |i| set.endpoints[set.in_rotation[i]].load())?;
        Some(set.endpoints[set.in_rotation[idx]].clone())
    }

    /// The endpoint [`Service::pick`] would most likely choose for a request with
    /// `headers`, without choosing it (for `/explain`), and how the balancer decides.
    pub fn likely_pick(&self, headers: &HeaderMap) -> (Likely, Option<Arc<Endpoint>>) {
        let set = self.endpoints.load();
        let key = self.hash_key(headers);
        let likely = set
            .balancer
            .likely(key, |i| set.endpoints[set.in_rotation[i]].load());
        let endpoint = match likely {
            Likely::Next(i) | Likely::Fewest(i) | Likely::Hashed(i) => set
                .in_rotation
                .get(i)
                .and_then(|&e| set.endpoints.get(e))
                .cloned(),
            Likely::AtRandom | Likely::Nothing => None,
        };
        (likely, endpoint)
    }

    /// Like [`Service::pick`], but returns an endpoint not in `tried` (for retries) while
    /// the rotation has one: the balancer is asked a few times, then the rotation is scanned
    /// from a random place so the choice stays spread.
    pub fn pick_other(
        &self,
        headers: &HeaderMap,
        tried: &[Arc<Endpoint>],
    ) -> Option<Arc<Endpoint>> {
        let was_tried = |e: &Arc<Endpoint>| tried.iter().any(|t| Arc::ptr_eq(t, e));
        let mut pick = self.pick(headers)?;
        for _ in 0..3 {
            if !was_tried(&pick) {
                return Some(pick);
            }
            pick = self.pick(headers)?;
        }
        if !was_tried(&pick) {
            return Some(pick);
        }
        let set = self.endpoints.load();
        let n = set.in_rotation.len();
        let start = crate::rand::below(n as u64) as usize;
        (0..n)
            .map(|i| &set.endpoints[set.in_rotation[(start + i) % n]])
            .find(|e| !was_tried(e))
            .cloned()
            .or(Some(pick))
    }

    /// Reports one attempt's outcome at `endpoint` to outlier detection, and takes the
    /// endpoint out of rotation when that ejects it.
    pub fn record_attempt(&self, endpoint: &Endpoint, outcome: Outcome) {
        endpoint.stats.record(outcome);
        if self
            .outlier
            .record(endpoint, outcome, &self.endpoints.load().endpoints)
        {
            self.refresh_rotation();
        }
    }

    /// Rebuilds the rotation after endpoint states changed (ejection, return, health), and
    /// updates `weir_upstream_endpoints`.
    pub fn refresh_rotation(&self) {
        let _writer = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.endpoints.load_full();
        self.publish(current.endpoints.clone());
    }

    fn publish(&self, endpoints: Vec<Arc<Endpoint>>) {
        let mut counts = [0i64; 3];
        for e in &endpoints {
            counts[e.state() as usize] += 1;
        }
        for (gauge, n) in self.state_gauges.iter().zip(counts) {
            gauge.set(n);
        }
        self.endpoints
            .store(Arc::new(EndpointSet::build(self.load_balancer, endpoints)));
    }

    /// Runs `detector`'s sweeps every interval, putting back in rotation the endpoints it
    /// returns, until `stop` turns true (or its sender is gone).
    pub async fn run_outlier_sweeps(
        &self,
        detector: &OutlierDetector,
        mut stop: watch::Receiver<bool>,
    ) {
        let interval = detector.interval();
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = ticks.tick() => {
                    if detector.sweep(&self.endpoint_set().endpoints) {
                        self.refresh_rotation();
                    }
                }
            }
        }
    }

    /// Applies the endpoint sets discovery delivers (DNS, Kubernetes) until `stop` turns
    /// true or discovery ends: discovery finds endpoints, the service alone decides what its
    /// rotation holds. The channel's initial empty value is no news (a rebuilt service keeps
    /// its predecessor's endpoints until its discovery answers); every set discovery sends
    /// is applied, an empty one too: discovery sends one only when its source says there is
    /// no endpoint (a Kubernetes Service without ready pods), never on an error.
    pub async fn follow_discovery(
        &self,
        mut updates: watch::Receiver<Vec<(SocketAddr, u32)>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut sent = updates.has_changed().unwrap_or(false);
        loop {
            let wanted = updates.borrow_and_update().clone();
            if sent || !wanted.is_empty() {
                self.set_endpoints(&wanted);
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                changed = updates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    sent = true;
                }
            }
        }
    }

    /// The current endpoint set (for the admin server).
    pub fn endpoint_set(&self) -> Arc<EndpointSet> {
        self.endpoints.load_full()
    }

    /// Closes expired idle connections of every endpoint.
    pub fn close_expired_connections(&self) {
        for e in &self.endpoints.load().endpoints {
            e.pool.close_expired();
        }
    }

    /// How long pooled connections may sit idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The configured balancer.
    pub fn load_balancer(&self) -> LoadBalancer {
        self.load_balancer
    }

    /// Replaces the endpoint set. Endpoints whose address and weight are unchanged are kept
    /// (with their pools and in-flight counts); removed ones live on until their last
    /// request completes, and their series leave `/metrics`.
    pub fn set_endpoints(&self, wanted: &[(SocketAddr, u32)]) {
        let _writer = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        // A service a reload replaced may hear from its discovery once more: the series by
        // its name now belong to its successor.
        if self.retired.load(Ordering::Acquire) {
            return;
        }
        self.replace_endpoints_locked(wanted);
        self.forget_departed_endpoints_locked();
    }

    /// Starts a service built for a reload with the endpoints its predecessor's discovery
    /// found, so it serves at once instead of waiting for its first lookup.
    pub fn seed_endpoints(&self, wanted: &[(SocketAddr, u32)]) {
        self.replace_endpoints(wanted);
    }

    /// Writes this service's endpoint counts and breaker state to their gauges again (a
    /// service built for a refused reload shares them and overwrote them).
    pub fn publish_gauges(&self) {
        self.refresh_rotation();
        if let Some(breaker) = &self.breaker {
            breaker.publish_state();
        }
    }

    /// Removes from `/metrics` the series of endpoints this service no longer holds (called
    /// once a reload put this service in force).
    pub fn forget_departed_endpoints(&self) {
        let _writer = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        self.forget_departed_endpoints_locked();
    }

    fn forget_departed_endpoints_locked(&self) {
        let current = self.endpoints.load();
        self.metrics.forget_endpoints(&self.name, &|label| {
            current.endpoints.iter().any(|e| &*e.label == label)
        });
    }

    /// This service left the configuration, or `successor` replaced it: its endpoints that
    /// the successor does not have are retired (see [`Endpoint::retire`]).
    pub fn retire(&self, successor: Option<&Service>) {
        self.retired.store(true, Ordering::Release);
        let kept = successor.map(|s| s.endpoint_set());
        for e in &self.endpoints.load().endpoints {
            let lives_on = kept
                .as_ref()
                .is_some_and(|k| k.endpoints.iter().any(|n| n.label == e.label));
            if !lives_on {
                e.retire();
            }
        }
    }

    fn replace_endpoints(&self, wanted: &[(SocketAddr, u32)]) {
        let _writer = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        self.replace_endpoints_locked(wanted);
    }

    fn replace_endpoints_locked(&self, wanted: &[(SocketAddr, u32)]) {
        let current = self.endpoints.load();
        let endpoints: Vec<Arc<Endpoint>> = wanted
            .iter()
            .map(|&(address, weight)| {
                current
                    .endpoints
                    .iter()
                    .find(|e| e.address == address && e.weight == weight)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(self.new_endpoint(address, weight)))
            })
            .collect();
        for departed in current.endpoints.iter() {
            if !endpoints.iter().any(|e| e.label == departed.label) {
                departed.retire();
            }
        }
        self.publish(endpoints);
    }

    fn new_endpoint(&self, address: SocketAddr, weight: u32) -> Endpoint {
        let label = address.to_string();
        let in_flight = self.metrics.in_flight.get_or_create_owned(&EndpointLabels {
            service: self.name.clone(),
            endpoint: label.clone(),
        });
        for reason in self.outlier.reasons() {
            self.metrics
                .outlier_ejections
                .get_or_create_owned(&EjectionLabels {
                    service: self.name.clone(),
                    endpoint: label.clone(),
                    reason: reason.as_str().to_string(),
                });
        }
        let counters = self
            .route_slots
            .iter()
            .map(|(listener, route)| {
                RequestCounters::new(&self.metrics, listener, route, &self.name, &label)
            })
            .collect();
        Endpoint {
            address,
            label: label.into(),
            weight,
            in_flight,
            pool: Pool::new(
                address,
                self.protocol,
                self.connect_timeout,
                self.idle_timeout,
                self.limits.clone(),
                self.tls.clone(),
            ),
            counters,
            outlier: Default::default(),
            health: Default::default(),
            stats: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service of three endpoints with the given balancer and outlier detection that
    /// ejects after one 5xx.
    fn service(balancer: &str) -> Arc<Service> {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - name: s\n    load_balancer: {balancer}\n    ring_hash: {{ header: x-key }}\n    endpoints: [\"127.0.0.1:10\", \"127.0.0.1:11\", \"127.0.0.1:12\"]\n    outlier_detection: {{ consecutive_5xx: 1, max_ejection_percent: 50 }}\n"
        );
        let text = if balancer == "ring_hash" {
            text
        } else {
            text.replace("    ring_hash: { header: x-key }\n", "")
        };
        let config = crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config;
        Service::new(&config.services[0], vec![], Metrics::new())
    }

    #[test]
    fn an_endpoint_that_discovery_removes_takes_its_series_with_it() {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:10\", \"127.0.0.1:11\"] }\n";
        let config = crate::config::load_str("t.yaml", text)
            .expect("valid")
            .config;
        let metrics = Metrics::new();
        let slots = vec![("l".to_string(), "r".to_string())];
        let s = Service::new(&config.services[0], slots, metrics.clone());
        for e in s.endpoint_set().endpoints.iter() {
            e.counters[0].upstream(200);
        }
        let text = metrics.render();
        for endpoint in ["127.0.0.1:10", "127.0.0.1:11"] {
            assert!(
                text.contains(&format!("endpoint=\"{endpoint}\",code=\"200\"")),
                "{text}"
            );
            assert!(
                text.contains(&format!(
                    "weir_http_requests_in_flight{{service=\"s\",endpoint=\"{endpoint}\"}}"
                )),
                "{text}"
            );
        }
        // A request in flight to the endpoint that leaves holds it.
        let in_flight = s.endpoint_set().endpoints[1].clone();
        s.set_endpoints(&[("127.0.0.1:10".parse().expect("address"), 1)]);
        // It ends after the endpoint left, with a status never seen before: counted
        // unseen, its series stays gone.
        in_flight.counters[0].upstream(418);
        in_flight.counters[0].proxy_error(crate::error::ErrorCode::UpstreamReset, 502);
        let text = metrics.render();
        assert!(
            !text.contains("127.0.0.1:11"),
            "the departed endpoint's series stay:\n{text}"
        );
        assert!(
            text.contains("endpoint=\"127.0.0.1:10\",code=\"200\",error=\"none\"} 1"),
            "the endpoint that stayed keeps its count:\n{text}"
        );
    }

    #[tokio::test]
    async fn discovery_sets_are_applied_and_only_the_initial_empty_value_is_skipped() {
        let s = service("round_robin");
        let (tx, rx) = watch::channel(Vec::new());
        let (stop_tx, stop) = watch::channel(false);
        let following = s.clone();
        let task = tokio::spawn(async move { following.follow_discovery(rx, stop).await });
        let addr: SocketAddr = "127.0.0.1:20".parse().expect("address");
        let settled = |want: usize| {
            let s = s.clone();
            async move {
                for _ in 0..200 {
                    if s.endpoint_set().endpoints.len() == want {
                        return true;
                    }
                    tokio::task::yield_now().await;
                }
                false
            }
        };
        // The initial empty value leaves the configured endpoints in place.
        tokio::task::yield_now().await;
        assert_eq!(s.endpoint_set().endpoints.len(), 3);
        tx.send(vec![(addr, 1)]).expect("following");
        assert!(settled(1).await, "a discovered set replaces the old one");
        tx.send(Vec::new()).expect("following");
        assert!(
            settled(0).await,
            "a discovered empty set empties the service"
        );
        stop_tx.send(true).expect("stop");
        task.await.expect("follow ends on stop");
    }

    #[tokio::test]
    async fn every_balancer_skips_an_ejected_endpoint() {
        for balancer in ["round_robin", "least_request", "random", "ring_hash"] {
            let s = service(balancer);
            let ejected = s.endpoint_set().endpoints[1].clone();
            s.record_attempt(&ejected, Outcome::Response(500));
            assert!(ejected.outlier.is_ejected(), "{balancer}");
            assert_eq!(s.endpoint_set().in_rotation(), 2, "{balancer}");
            let mut headers = HeaderMap::new();
            for key in 0..300 {
                headers.insert("x-key", key.to_string().parse().expect("header value"));
                let picked = s.pick(&headers).expect("an endpoint in rotation");
                assert!(
                    !Arc::ptr_eq(&picked, &ejected),
                    "{balancer} picked the ejected endpoint"
                );
            }
        }
    }

    #[tokio::test]
    async fn retries_prefer_an_endpoint_not_yet_tried() {
        let s = service("random");
        let all = s.endpoint_set().endpoints.clone();
        let tried = vec![all[0].clone(), all[1].clone()];
        for _ in 0..100 {
            let picked = s
                .pick_other(&HeaderMap::new(), &tried)
                .expect("an endpoint");
            assert!(Arc::ptr_eq(&picked, &all[2]));
        }
    }
}
