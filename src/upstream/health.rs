//! Active health checking of endpoints: every `interval`, `GET <path>` at each endpoint of a
//! service; `unhealthy_threshold` failures in a row take an endpoint out of rotation and
//! `healthy_threshold` passes in a row put it back.
//!
//! A check passes on a 2xx answer within `timeout`; any other status, a connect failure, a
//! reset or the timeout fails it, with a short reason that `/services` shows. Checks use the
//! endpoint's own connection pool (an HTTP/1.1 connection is reused once the answer's body has
//! been read), so they see what requests see.
//!
//! Each endpoint's first check comes after a random delay in `[0, interval)` and later ones
//! `interval ± 10%` after the previous check ended, so a fleet of sidecars restarted together
//! does not check (and load) the upstreams in lockstep.
//!
//! Endpoints start healthy. Envoy starts them unhealthy until their first check passes; weir
//! starts optimistic so that a restart or a config reload does not black-hole a service's
//! traffic for up to one interval. Outlier detection and the circuit breaker catch an endpoint
//! that is in fact down before its checks do.

use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, Uri, Version};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};

use super::endpoint::{Endpoint, Transition};
use super::exchange::{Exchange, Judged, UpstreamFailure};
use super::service::Service;
use crate::body::RequestBody;
use crate::config::{format_duration, HealthCheck, UpstreamProtocol};

/// `user-agent` of every check, so upstream logs can tell checks from traffic.
const USER_AGENT: &str = "weir-health-check";

/// A check's answer body is read (so its connection can be reused) up to this size; a larger
/// body closes the connection instead.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// Health-checks every endpoint of `service` as configured by `cfg`, until `stop` turns true
/// (or its sender is gone). Endpoints that discovery adds are picked up within one interval;
/// checks of endpoints it removes stop.
pub async fn run(service: Arc<Service>, cfg: HealthCheck, mut stop: watch::Receiver<bool>) {
    let cfg = Arc::new(cfg);
    let mut checkers: Vec<(Arc<Endpoint>, AbortHandle)> = Vec::new();
    // Dropping the set (on return) aborts every checker.
    let mut tasks = JoinSet::new();
    let mut resync = tokio::time::interval(cfg.interval);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = resync.tick() => {}
            Some(_) = tasks.join_next() => continue,
        }
        let set = service.endpoint_set();
        checkers.retain(|(endpoint, task)| {
            let keep =
                !task.is_finished() && set.endpoints.iter().any(|e| Arc::ptr_eq(e, endpoint));
            if !keep {
                task.abort();
            }
            keep
        });
        for endpoint in &set.endpoints {
            if !checkers.iter().any(|(e, _)| Arc::ptr_eq(e, endpoint)) {
                let task = tasks.spawn(check_endpoint(
                    service.clone(),
                    endpoint.clone(),
                    cfg.clone(),
                ));
                checkers.push((endpoint.clone(), task));
            }
        }
    }
}

/// Checks one endpoint forever, updating its health and the service's rotation.
async fn check_endpoint(service: Arc<Service>, endpoint: Arc<Endpoint>, cfg: Arc<HealthCheck>) {
    tokio::time::sleep(first_delay(cfg.interval)).await;
    loop {
        // A check that weir's own connection limits kept from running says nothing about
        // the endpoint: it neither passes nor fails.
        let Some(result) = check(&endpoint, service.protocol, &cfg).await else {
            tokio::time::sleep(next_delay(cfg.interval)).await;
            continue;
        };
        match endpoint.health.observe(result, &cfg) {
            Some(Transition::BecameUnhealthy) => {
                tracing::warn!(
                    service = %service.name,
                    endpoint = %endpoint.label,
                    reason = endpoint.health.describe().unwrap_or_default(),
                    failures = cfg.unhealthy_threshold,
                    "endpoint failed its health checks; taken out of rotation"
                );
                service.refresh_rotation();
            }
            Some(Transition::BecameHealthy) => {
                tracing::info!(
                    service = %service.name,
                    endpoint = %endpoint.label,
                    passes = cfg.healthy_threshold,
                    "endpoint passes its health checks again; back in rotation"
                );
                service.refresh_rotation();
            }
            None => {}
        }
        tokio::time::sleep(next_delay(cfg.interval)).await;
    }
}

/// One check: `GET <path>` within `cfg.timeout`; `Err` says why it failed, `None` means it
/// could not run because the service's connection limits were reached.
async fn check(
    endpoint: &Arc<Endpoint>,
    protocol: UpstreamProtocol,
    cfg: &HealthCheck,
) -> Option<Result<(), String>> {
    let request = match request(&endpoint.label, protocol, &cfg.path) {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let deadline = Instant::now() + cfg.timeout;
    let mut exchange = Exchange::probe(endpoint.clone());
    let response = match exchange.send(request, Some(deadline)).await {
        Judged::Response(response) => response,
        Judged::Upstream(_, UpstreamFailure::TimedOut) => {
            return Some(Err(format!(
                "timed out after {}",
                format_duration(cfg.timeout)
            )))
        }
        Judged::Upstream(_, failure) => return Some(Err(failure.to_string())),
        Judged::Client(fault) => return Some(Err(fault.to_string())),
        Judged::Refused(_) => return None,
    };
    let status = response.status();
    // A body that is too large, fails or is late closes the connection instead of
    // returning it to the pool.
    let _ = tokio::time::timeout_at(
        deadline,
        exchange.discard(response.into_body(), MAX_DRAINED_BODY),
    )
    .await;
    Some(if status.is_success() {
        Ok(())
    } else {
        Err(format!("GET {} answered {}", cfg.path, status.as_u16()))
    })
}

/// The check request in the form the endpoint's HTTP version needs: origin form and `host`
/// for HTTP/1.1, scheme and authority for HTTP/2.
fn request(
    authority: &str,
    protocol: UpstreamProtocol,
    path: &str,
) -> Result<Request<RequestBody>, String> {
    let builder = match protocol {
        UpstreamProtocol::Http1 => Request::get(path)
            .version(Version::HTTP_11)
            .header(header::HOST, authority),
        UpstreamProtocol::Http2 => Request::get(
            Uri::builder()
                .scheme("http")
                .authority(authority)
                .path_and_query(path)
                .build()
                .map_err(|e| format!("cannot check path {path}: {e}"))?,
        )
        .version(Version::HTTP_2),
    };
    builder
        .header(header::USER_AGENT, USER_AGENT)
        .body(RequestBody::empty())
        .map_err(|e| format!("cannot check path {path}: {e}"))
}

/// Delay before an endpoint's first check: uniform in `[0, interval)`.
fn first_delay(interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(crate::rand::below(nanos))
}

/// Delay between checks: uniform in `[interval - 10%, interval + 10%]`.
fn next_delay(interval: Duration) -> Duration {
    let spread = u64::try_from((interval / 10).as_nanos()).unwrap_or(u64::MAX / 2);
    if spread == 0 {
        return interval;
    }
    let offset = crate::rand::below(2 * spread + 1);
    (interval - Duration::from_nanos(spread)) + Duration::from_nanos(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU16;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::telemetry::metrics::Metrics;
    use crate::test_support::eventually;
    use crate::upstream::endpoint::health::test_check as cfg;

    fn service(endpoint: &str) -> Arc<Service> {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [\"{endpoint}\"] }}\n"
        );
        let config = crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config;
        Service::new(&config.services[0], vec![], Metrics::new())
    }

    /// An HTTP/1.1 upstream answering every request with the status in `status` (no body,
    /// keep-alive); counts the requests it answered with each class and keeps the last one.
    struct Upstream {
        address: String,
        status: Arc<AtomicU16>,
        failures_served: Arc<AtomicU32>,
        last_request: Arc<Mutex<String>>,
    }

    async fn upstream() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let status = Arc::new(AtomicU16::new(200));
        let failures_served = Arc::new(AtomicU32::new(0));
        let last_request = Arc::new(Mutex::new(String::new()));
        let (st, fs, lr) = (
            status.clone(),
            failures_served.clone(),
            last_request.clone(),
        );
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (st, fs, lr) = (st.clone(), fs.clone(), lr.clone());
                tokio::spawn(async move {
                    let mut pending = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = socket.read(&mut buf).await {
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = pending.drain(..end + 4).collect();
                            *lr.lock().expect("lock") = String::from_utf8_lossy(&head).into_owned();
                            let code = st.load(Ordering::SeqCst);
                            if code != 200 {
                                fs.fetch_add(1, Ordering::SeqCst);
                            }
                            let answer =
                                format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nok");
                            if socket.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            address,
            status,
            failures_served,
            last_request,
        }
    }

    /// Polls `condition` every 2ms for at most 5s.
    #[test]
    fn first_check_comes_within_one_interval_and_later_ones_within_10_percent() {
        let interval = Duration::from_secs(5);
        let firsts: Vec<Duration> = (0..10_000).map(|_| first_delay(interval)).collect();
        assert!(firsts.iter().all(|d| *d < interval));
        assert!(firsts.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(firsts.iter().any(|d| *d > Duration::from_millis(4_500)));
        let nexts: Vec<Duration> = (0..10_000).map(|_| next_delay(interval)).collect();
        let (lo, hi) = (Duration::from_millis(4_500), Duration::from_millis(5_500));
        assert!(
            nexts.iter().all(|d| (lo..=hi).contains(d)),
            "all within 4.5s..=5.5s"
        );
        assert!(nexts.iter().any(|d| *d < Duration::from_millis(4_600)));
        assert!(nexts.iter().any(|d| *d > Duration::from_millis(5_400)));
        assert_eq!(first_delay(Duration::ZERO), Duration::ZERO);
        assert_eq!(next_delay(Duration::from_nanos(5)), Duration::from_nanos(5));
    }

    #[tokio::test]
    async fn a_check_sends_get_path_with_host_and_user_agent_and_passes_on_2xx() {
        let up = upstream().await;
        let s = service(&up.address);
        let endpoint = s.endpoint_set().endpoints[0].clone();
        let cfg = cfg(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(check(&endpoint, s.protocol, &cfg).await, Some(Ok(())));
        let request = up.last_request.lock().expect("lock").to_ascii_lowercase();
        assert!(
            request.starts_with("get /healthz http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("host: {}\r\n", up.address)),
            "{request}"
        );
        assert!(
            request.contains("user-agent: weir-health-check\r\n"),
            "{request}"
        );
        assert_eq!(check(&endpoint, s.protocol, &cfg).await, Some(Ok(())));
        assert_eq!(
            endpoint.pool.open_connections(),
            1,
            "the connection is reused"
        );
        up.status.store(503, Ordering::SeqCst);
        assert_eq!(
            check(&endpoint, s.protocol, &cfg).await,
            Some(Err("GET /healthz answered 503".to_string()))
        );
    }

    #[tokio::test]
    async fn a_check_fails_with_the_reason_on_connect_failure_and_timeout() {
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = closed.local_addr().expect("address").to_string();
        drop(closed);
        let s = service(&address);
        let endpoint = s.endpoint_set().endpoints[0].clone();
        let cfg = cfg(Duration::from_secs(5), Duration::from_millis(100));
        let failed = check(&endpoint, s.protocol, &cfg).await;
        assert!(
            failed.as_ref().is_some_and(|r| r
                .as_ref()
                .is_err_and(|why| why.starts_with("connect failed: "))),
            "{failed:?}"
        );

        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let s = service(&silent.local_addr().expect("address").to_string());
        let endpoint = s.endpoint_set().endpoints[0].clone();
        let started = Instant::now();
        assert_eq!(
            check(&endpoint, s.protocol, &cfg).await,
            Some(Err("timed out after 100ms".to_string()))
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(silent);
    }

    #[tokio::test]
    async fn failing_checks_take_the_endpoint_out_of_rotation_and_passing_ones_bring_it_back() {
        let up = upstream().await;
        let s = service(&up.address);
        let cfg = cfg(Duration::from_millis(20), Duration::from_millis(500));
        let (stop_tx, stop) = watch::channel(false);
        let checker = tokio::spawn(run(s.clone(), cfg, stop));
        assert_eq!(s.endpoint_set().in_rotation(), 1, "healthy from the start");
        assert!(
            eventually(Duration::from_secs(5), || {
                up.last_request.lock().is_ok_and(|r| !r.is_empty())
            })
            .await,
            "timed out waiting until a check passed"
        );
        assert_eq!(s.endpoint_set().in_rotation(), 1);

        up.status.store(503, Ordering::SeqCst);
        assert!(
            eventually(Duration::from_secs(5), || s.endpoint_set().in_rotation()
                == 0)
            .await,
            "timed out waiting until out of rotation"
        );
        assert!(
            up.failures_served.load(Ordering::SeqCst) >= 3,
            "only after 3 failed checks"
        );
        let endpoint = s.endpoint_set().endpoints[0].clone();
        let why = endpoint.out_of_rotation_because().unwrap_or_default();
        assert!(
            why.starts_with("failing health checks: GET /healthz answered 503 ("),
            "{why}"
        );

        up.status.store(200, Ordering::SeqCst);
        assert!(
            eventually(Duration::from_secs(5), || s.endpoint_set().in_rotation()
                == 1)
            .await,
            "timed out waiting until back in rotation"
        );
        assert!(endpoint.health.is_healthy());

        stop_tx.send_replace(true);
        assert!(checker.await.is_ok(), "the checker stops");
    }
}
