//! The admin server: `/metrics`, `/ready`, `/live`, `/services` and `/hystrix.stream` (see
//! [`hystrix`]) for anyone (probes and scrapes, so it can be bound on the pod IP);
//! `/config`, `/explain` (see [`crate::explain`]), `POST /reload` and `POST /shutdown`,
//! which reveal configuration or change state, for loopback clients only. It reads shared state and never owns any of it: a
//! reload is asked of the task that applies configurations.

mod hystrix;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{Method, Request, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::proxy::accept::AcceptBackoff;
use crate::proxy::client_timeouts::{self, ClientClock, ClientTimeouts, Watched};
use crate::proxy::response::{plain, ResponseBody};
use crate::reload::{ReloadOutcome, Reloads, Trigger};
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::format::rfc3339_seconds;
use crate::telemetry::metrics::Metrics;
use crate::tls::IdentityStore;

/// Seconds since the Unix epoch, now.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What `/config` tells besides the configuration itself.
#[derive(Debug, Clone)]
pub struct ConfigInfo {
    /// SHA-256 of the configuration file's text (compare with `sha256sum weir.yaml`).
    pub sha256: String,
    /// The file it was read from; `None` for an embedded configuration.
    pub source: Option<std::path::PathBuf>,
    /// When it was taken into force.
    pub loaded_at: std::time::SystemTime,
    /// The admin server's bound address.
    pub admin: SocketAddr,
    /// Each listener's bound address (ports resolved when configured as 0).
    pub listeners: Vec<(String, SocketAddr)>,
}

/// What the admin server reads.
#[derive(Debug)]
pub struct AdminState {
    /// The current snapshot.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// True once every listener is bound (and false again while draining).
    pub ready: AtomicBool,
    /// The workload identity, when configured: `/ready` fails once its certificate expired.
    pub identity: Option<Arc<IdentityStore>>,
    /// Set by `POST /shutdown`: the process drains as on SIGTERM.
    pub shutdown: watch::Sender<bool>,
    /// Where `POST /reload` asks for a reload; `None` where weir cannot reload.
    pub reloads: Option<Reloads>,
    /// The facts `/config` shows about the configuration in force.
    pub info: ArcSwap<ConfigInfo>,
}

/// Serves admin requests until `stop` turns true.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    let open = Arc::new(AtomicU32::new(0));
    let streams = Arc::new(hystrix::Streams::new(&state, stop.clone()));
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                backoff.failed("admin", &e).await;
                continue;
            }
        };
        backoff.succeeded();
        // Probes and scrapes need a handful of connections; more are refused at once.
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_ADMIN_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        let (state, open, streams) = (state.clone(), open.clone(), streams.clone());
        tokio::spawn(async move {
            let clock = ClientClock::new();
            let answering = clock.clone();
            let service = service_fn(move |req| {
                let (state, answering, streams) =
                    (state.clone(), answering.clone(), streams.clone());
                async move {
                    answering.request_started();
                    // An event stream stays a request in flight until its body ends.
                    if let Some(stream) = streams.answer(&req, &answering) {
                        return Ok::<_, Infallible>(stream);
                    }
                    let response = answer(&state, &req, client).await;
                    answering.request_ended();
                    Ok(response.map(http_body_util::Either::Left))
                }
            });
            let io = TokioIo::new(Watched::new(stream, clock.clone()));
            let served = http1::Builder::new().serve_connection(io, service);
            tokio::select! {
                _ = served => {}
                _ = client_timeouts::expired(&clock, ADMIN_TIMEOUTS, || true) => {}
            }
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Open admin connections at most.
const MAX_ADMIN_CONNECTIONS: u32 = 64;

/// The admin server's client timeouts: as a listener's first byte, and a minute idle (a
/// scraper reconnects; a held connection is a descriptor the proxy may need).
const ADMIN_TIMEOUTS: ClientTimeouts = ClientTimeouts {
    first_byte: std::time::Duration::from_secs(10),
    idle: std::time::Duration::from_secs(60),
};

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Endpoints that reveal configuration or change state: loopback clients only.
const LOOPBACK_ONLY: [&str; 4] = ["/config", "/explain", "/reload", "/shutdown"];

/// Answers one admin request; only a reload waits (for the applying task).
async fn answer<B>(
    state: &AdminState,
    req: &Request<B>,
    client: SocketAddr,
) -> Response<ResponseBody> {
    match refused(req, client) {
        Some(refusal) => refusal,
        None if req.uri().path() == "/reload" => reload(state, req.method()).await,
        None => route(state, req, client),
    }
}

/// The 403 of a loopback-only endpoint asked from elsewhere.
fn refused<B>(req: &Request<B>, client: SocketAddr) -> Option<Response<ResponseBody>> {
    let path = req.uri().path();
    (LOOPBACK_ONLY.contains(&path) && !client.ip().is_loopback()).then(|| plain(
        StatusCode::FORBIDDEN,
        TEXT,
        format!("{path} answers loopback clients only (it reveals configuration or changes state), and {} is not one; call it from inside the pod, e.g. `kubectl exec` or `kubectl port-forward`\n", client.ip()),
    ))
}

fn route<B>(state: &AdminState, req: &Request<B>, client: SocketAddr) -> Response<ResponseBody> {
    let path = req.uri().path();
    if let Some(refusal) = refused(req, client) {
        return refusal;
    }
    if path == "/shutdown" {
        return shutdown(state, req.method());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "admin endpoints answer GET (and POST /reload, POST /shutdown)\n",
        );
    }
    match path {
        "/metrics" => {
            let accepts_openmetrics = req.headers().get_all(http::header::ACCEPT).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|s| s.contains("application/openmetrics-text"))
            });
            if accepts_openmetrics {
                plain(StatusCode::OK, OPENMETRICS, state.metrics.render())
            } else {
                plain(
                    StatusCode::OK,
                    PROMETHEUS_TEXT,
                    state.metrics.render_prometheus_text(),
                )
            }
        }
        "/live" => plain(StatusCode::OK, TEXT, "live\n"),
        "/ready" => {
            let expired = state.identity.as_ref().and_then(|i| i.expired(unix_now()));
            if let Some(why) = expired {
                plain(StatusCode::SERVICE_UNAVAILABLE, TEXT, why)
            } else if state.ready.load(Ordering::Acquire) {
                plain(StatusCode::OK, TEXT, "ready\n")
            } else {
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "not ready: listeners are not all bound\n",
                )
            }
        }
        "/config" => plain(StatusCode::OK, JSON, config_json(state)),
        "/services" => plain(StatusCode::OK, JSON, services_json(&state.snapshot.load())),
        "/explain" => explain(state, req),
        _ => plain(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found; try /metrics /ready /live /config /services /explain /hystrix.stream (and POST /reload, POST /shutdown)\n",
        ),
    }
}

/// `/explain?method=GET&path=/x&header=name:value`: which route, backends and endpoints
/// a request would get now, and why; JSON when asked for, sentences otherwise. A question
/// it cannot read is a 400 with a one-line reason, as weir's own errors are.
/// Whether an `Accept` field lists `application/json` (any case) without `q=0`.
fn accepts_json(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case(JSON) && !refused
        })
}

fn explain<B>(state: &AdminState, req: &Request<B>) -> Response<ResponseBody> {
    let snapshot = state.snapshot.load();
    let answer = crate::explain::query::question(req.uri().query().unwrap_or_default())
        .and_then(|q| crate::explain::explain(&snapshot, &snapshot.config, &q, true));
    let wants_json = accepts_json(req.headers());
    match answer {
        Ok(e) if wants_json => plain(
            StatusCode::OK,
            JSON,
            serde_json::to_string_pretty(&e).unwrap_or_default(),
        ),
        Ok(e) => plain(StatusCode::OK, TEXT, crate::explain::text(&e)),
        Err(invalid) => {
            let mut resp = plain(
                StatusCode::BAD_REQUEST,
                TEXT,
                format!("weir: cannot explain: {invalid}\n"),
            );
            resp.headers_mut()
                .insert("weir-error", http::HeaderValue::from_static("bad_request"));
            resp
        }
    }
}

/// `POST /shutdown`: drain and exit, as on SIGTERM.
fn shutdown(state: &AdminState, method: &Method) -> Response<ResponseBody> {
    if method != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "/shutdown answers POST: it drains weir and exits\n",
        );
    }
    state.shutdown.send_replace(true);
    plain(
        StatusCode::OK,
        TEXT,
        "draining: in-flight requests finish within the grace period, then weir exits\n",
    )
}

/// `POST /reload`: reload the configuration file, as SIGHUP does, and say how it went:
/// 200 with what changed, 400 with every reason the file was refused (the old configuration
/// stays), 409 when there is no file to reload.
async fn reload(state: &AdminState, method: &Method) -> Response<ResponseBody> {
    if method != Method::POST {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "/reload answers POST: it reloads the configuration file\n",
        );
    }
    let Some(reloads) = &state.reloads else {
        return plain(StatusCode::CONFLICT, TEXT, "this weir cannot reload\n");
    };
    match reloads.reload(Trigger::Admin).await {
        ReloadOutcome::Applied(summary) => plain(
            StatusCode::OK,
            TEXT,
            format!("reloaded; sha256 {}\n{summary}", state.info.load().sha256),
        ),
        ReloadOutcome::Unchanged => plain(StatusCode::OK, TEXT, "unchanged\n"),
        ReloadOutcome::Refused(why) => plain(
            StatusCode::BAD_REQUEST,
            TEXT,
            format!("refused; the old configuration stays in force\n{why}"),
        ),
        ReloadOutcome::Unavailable(why) => plain(StatusCode::CONFLICT, TEXT, why),
    }
}

/// `/config`: the configuration in force (defaults filled in), its hash, file, load time,
/// and the addresses actually bound.
fn config_json(state: &AdminState) -> String {
    let snapshot = state.snapshot.load();
    let info = state.info.load();
    let listeners: serde_json::Map<String, serde_json::Value> = info
        .listeners
        .iter()
        .map(|(name, address)| (name.clone(), json!(address.to_string())))
        .collect();
    let loaded_at = info
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::to_string_pretty(&json!({
        "sha256": info.sha256,
        "source": info.source.as_ref().map(|p| p.display().to_string()),
        "loaded_at": rfc3339_seconds(info.loaded_at),
        "loaded_at_unix": loaded_at,
        "bound": { "admin": info.admin.to_string(), "listeners": listeners },
        "config": &*snapshot.config,
    }))
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// Every service and endpoint with its weight, load and state.
fn services_json(snapshot: &Snapshot) -> String {
    let services: Vec<_> = snapshot
        .config
        .services
        .iter()
        .filter_map(|cfg| snapshot.services.get(&cfg.name))
        .map(|s| {
            let set = s.endpoint_set();
            let endpoints: Vec<_> = set
                .endpoints
                .iter()
                .map(|e| {
                    json!({
                        "address": &*e.label,
                        "weight": e.weight,
                        "in_flight": e.load(),
                        "connections": e.pool.open_connections(),
                        "idle_connections": e.pool.idle_connections(),
                        "state": e.state().as_str(),
                        "reason": e.out_of_rotation_because(),
                        "requests": e.stats.attempts(),
                        "errors": e.stats.failures(),
                        "last_error": e.stats.last_failure().map(|f| json!({
                            "error": f.what,
                            "at": rfc3339_seconds(f.at),
                        })),
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "load_balancer": s.load_balancer(),
                "protocol": s.protocol,
                "circuit_breaker": s.breaker.as_ref().map(|b| b.state().as_str()),
                "in_rotation": set.in_rotation(),
                "endpoints": endpoints,
                "discovered_addresses": s.discovered_addresses.load().iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::to_string_pretty(&json!({ "services": services })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> AdminState {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:2\"] }\n";
        let config = crate::config::load_str("t.yaml", text)
            .expect("valid")
            .config;
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(config, &metrics, None).expect("builds");
        AdminState {
            snapshot: Arc::new(ArcSwap::new(snapshot)),
            metrics,
            ready: false.into(),
            identity: None,
            shutdown: watch::channel(false).0,
            reloads: None,
            info: ArcSwap::from_pointee(ConfigInfo {
                sha256: "0".repeat(64),
                source: None,
                loaded_at: std::time::UNIX_EPOCH,
                admin: LOOPBACK,
                listeners: vec![("l".into(), LOOPBACK)],
            }),
        }
    }

    const LOOPBACK: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

    fn get(state: &AdminState, path: &str) -> StatusCode {
        route(
            state,
            &Request::get(path).body(()).expect("request"),
            LOOPBACK,
        )
        .status()
    }

    #[test]
    fn ready_is_503_until_listeners_are_bound() {
        let s = state();
        assert_eq!(get(&s, "/ready"), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(&s, "/live"), StatusCode::OK, "alive while not ready");
        s.ready.store(true, Ordering::Release);
        assert_eq!(get(&s, "/ready"), StatusCode::OK);
    }

    #[test]
    fn only_reads_are_allowed() {
        let s = state();
        let resp = route(
            &s,
            &Request::post("/metrics").body(()).expect("request"),
            LOOPBACK,
        );
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn config_reload_and_shutdown_answer_loopback_clients_only() {
        let s = state();
        let pod_ip: SocketAddr = "10.1.2.3:51000".parse().expect("address");
        for (method, path) in [
            ("GET", "/config"),
            ("GET", "/explain?method=GET&path=/"),
            ("POST", "/reload"),
            ("POST", "/shutdown"),
        ] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .expect("request");
            let resp = answer(&s, &req, pod_ip).await;
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        }
        assert!(!*s.shutdown.borrow(), "a refused /shutdown changes nothing");
        // From loopback, a weir that cannot reload says so; a GET is not a reload.
        let post = Request::post("/reload").body(()).expect("request");
        assert_eq!(
            answer(&s, &post, LOOPBACK).await.status(),
            StatusCode::CONFLICT
        );
        let read = Request::get("/reload").body(()).expect("request");
        assert_eq!(
            answer(&s, &read, LOOPBACK).await.status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        // Probes and scrapes from the pod network are served.
        for path in ["/metrics", "/live", "/services"] {
            let req = Request::get(path).body(()).expect("request");
            assert_eq!(route(&s, &req, pod_ip).status(), StatusCode::OK, "{path}");
        }
        assert_eq!(get(&s, "/config"), StatusCode::OK);
        let v6_loopback: SocketAddr = "[::1]:40000".parse().expect("address");
        let req = Request::get("/config").body(()).expect("request");
        assert_eq!(route(&s, &req, v6_loopback).status(), StatusCode::OK);
    }

    #[test]
    fn explain_answers_sentences_json_or_a_400_naming_what_is_missing() {
        let s = state();
        let text = route(
            &s,
            &Request::get("/explain?method=GET&path=/x")
                .body(())
                .expect("request"),
            LOOPBACK,
        );
        assert_eq!(text.status(), StatusCode::OK);
        assert_eq!(text.headers()[http::header::CONTENT_TYPE], TEXT);
        let json = route(
            &s,
            &Request::get("/explain?method=GET&path=/x")
                .header("accept", "application/json")
                .body(())
                .expect("request"),
            LOOPBACK,
        );
        assert_eq!(json.headers()[http::header::CONTENT_TYPE], JSON);
        let bad = route(
            &s,
            &Request::get("/explain?path=/x").body(()).expect("request"),
            LOOPBACK,
        );
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(bad.headers()["weir-error"], "bad_request");
    }

    #[test]
    fn post_shutdown_asks_for_a_drain() {
        let s = state();
        assert_eq!(get(&s, "/shutdown"), StatusCode::METHOD_NOT_ALLOWED);
        assert!(!*s.shutdown.borrow());
        let req = Request::post("/shutdown").body(()).expect("request");
        assert_eq!(route(&s, &req, LOOPBACK).status(), StatusCode::OK);
        assert!(*s.shutdown.borrow());
    }

    #[test]
    fn json_is_chosen_by_media_type_in_any_case_unless_refused_with_q_0() {
        let accept = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::ACCEPT, v.parse().expect("value"));
            accepts_json(&h)
        };
        assert!(accept("application/json"));
        assert!(accept("text/plain;q=0.5, Application/JSON"));
        assert!(!accept("application/json;q=0"));
        assert!(!accept("text/plain"));
        assert!(!accept("application/jsonx"));
        assert!(!accepts_json(&http::HeaderMap::new()));
    }
}
