//! `weir demo`, the embedded default: demo upstream services, weir in front of them with a
//! built-in configuration, a load generator with a progress bar, and a summary table read
//! back from weir's own metrics. `/metrics` is live while it runs.
//!
//! The steps, in order: [`services`] start, the embedded configuration is filled with their
//! ports and loaded like any file, the [`Server`] starts, [`load`] sends traffic while the
//! [`scenario`] makes `reviews-v2` fail part-way through (so that its circuit breaker opens,
//! half-opens and closes), the server drains, and [`summary`] prints what happened.

mod counts;
#[cfg(test)]
mod fixtures;
mod load;
mod probes;
pub mod prometheus;
mod scenario;
mod services;
mod summary;
mod table;

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::admin::AdminState;
use crate::config::{
    self, format_duration, format_seconds_one_decimal, Config, ListenerProtocol, LoadError,
};
use crate::server::{Server, StartError};
use crate::upstream::circuit_breaker::BreakerState;
use counts::{BreakerCounts, Traffic};
use load::LoadOptions;
use probes::Probe;
use scenario::{Plan, FAILING_SERVICE};
use services::{DemoServices, SLOW_DELAY};
use summary::{BreakerStory, SlowEndpoint, Summary};

/// The embedded configuration, with `${...}` placeholders for the ports chosen at start-up.
const TEMPLATE: &str = include_str!("demo.yaml");

/// The name under which the embedded configuration appears in diagnostics.
const EMBEDDED_NAME: &str = "embedded demo config";

/// The admin address the demo prefers, so that `curl 127.0.0.1:9901/metrics` just works.
const PREFERRED_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// How long in-flight requests may take to finish when the demo stops weir.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Options of `weir demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Run against this configuration instead of the embedded one: no demo services are
    /// started, and the load goes to its first http listener, one request for each of its
    /// routes in turn (the route's exact path or prefix, or a path its regex accepts, with
    /// the method and headers its `match` requires).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Send `GET PATH` instead of the requests derived from the routes; repeat to send
    /// several paths in turn.
    #[arg(long = "path", value_name = "PATH", value_parser = probes::parse_path)]
    pub paths: Vec<String>,
    /// How long to send load for, e.g. `15s`, `500ms`, `1m`.
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Requests per second to aim for.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rps: u32,
    /// Load generator workers, each with its own keep-alive connection.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Print a Prometheus scrape job for the demo's `/metrics` and the three most useful
    /// queries (stdout, before the load starts).
    #[arg(long)]
    pub prometheus: bool,
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = config::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "`{s}` is zero; the demo needs some time to send load, such as `15s`"
        ));
    }
    Ok(d)
}

/// Why the demo stopped early, and its exit code (1 invalid input, 2 runtime failure).
#[derive(Debug)]
struct Failed {
    code: u8,
    message: String,
}

impl Failed {
    fn invalid(message: impl Into<String>) -> Failed {
        Failed {
            code: 1,
            message: message.into(),
        }
    }

    fn runtime(message: impl Into<String>) -> Failed {
        Failed {
            code: 2,
            message: message.into(),
        }
    }
}

/// Runs the demo: 0 on success, 1 on an invalid `--config`, 2 on a runtime failure.
pub async fn run(opts: DemoOptions) -> ExitCode {
    match demo(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failed) => {
            eprintln!("weir demo: {}", failed.message);
            ExitCode::from(failed.code)
        }
    }
}

/// What the demo runs: a configuration, the listener to load, and the demo services (none
/// with `--config`).
struct Setup {
    config: Config,
    listener: String,
    /// The requests the load sends in turn (never empty).
    requests: Vec<Probe>,
    /// Routes the load does not reach, and `--path`s that reach no route.
    notes: Vec<String>,
    services: Option<DemoServices>,
    /// The breaker scenario (embedded configuration only).
    plan: Option<Plan>,
}

async fn demo(opts: DemoOptions) -> Result<(), Failed> {
    let mut setup = match &opts.config {
        Some(path) => user_setup(path)?,
        None => embedded_setup(Plan::for_duration(opts.duration)).await?,
    };
    if !opts.paths.is_empty() {
        let routes = listener_routes(&setup.config, &setup.listener);
        (setup.requests, setup.notes) = probes::for_paths(&opts.paths, routes);
    }
    crate::logging::init(&setup.config.logging);
    let server = start(setup.config.clone(), setup.services.is_some()).await?;
    let target = server
        .listener_address(&setup.listener)
        .ok_or_else(|| Failed::runtime(format!("listener {} did not start", setup.listener)))?;
    let metrics_url = format!("http://{}/metrics", server.admin_address);
    print_intro(&setup, &opts, target, &server, &metrics_url);
    if opts.prometheus {
        println!(
            "{}",
            prometheus::scrape_help(server.admin_address, &setup.listener)
        );
    }

    let (stop_tx, stop) = watch::channel(false);
    let interrupt = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
        }
    });
    let state = server.state.clone();
    let status: Option<load::Status> = setup.plan.map(|_| {
        let state = state.clone();
        let status: load::Status = Arc::new(move || {
            breaker_state(&state, FAILING_SERVICE).map(|s| format!("{FAILING_SERVICE} breaker {s}"))
        });
        status
    });
    let (done_tx, done) = watch::channel(false);
    let start = tokio::time::Instant::now();
    let load = async {
        let report = load::run(
            LoadOptions {
                target,
                requests: setup.requests.clone().into(),
                duration: opts.duration,
                rps: opts.rps,
                concurrency: opts.concurrency,
            },
            stop,
            true,
            status,
        )
        .await;
        let _ = done_tx.send(true);
        report
    };
    let scenario = async {
        match (setup.plan, &setup.services) {
            (Some(plan), Some(services)) => Some(
                scenario::drive(
                    plan,
                    &services.v2,
                    || breaker_state(&state, FAILING_SERVICE),
                    start,
                    done,
                )
                .await,
            ),
            _ => None,
        }
    };
    let (report, timeline) = tokio::join!(load, scenario);
    interrupt.abort();

    if !server.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!("some requests were still in flight when the demo stopped weir");
    }
    let metrics = state.metrics.render();
    let routes = listener_routes(&setup.config, &setup.listener);
    let traffic = Traffic::from_metrics(&metrics, &setup.listener);
    let mut breakers = BreakerCounts::from_metrics(&metrics);
    breakers.retain(|service, _| traffic.endpoints.contains_key(service));
    let story = match (setup.plan, timeline) {
        (Some(plan), Some(timeline)) => Some(BreakerStory {
            service: FAILING_SERVICE.to_string(),
            due: plan.fail_from,
            timeline,
            settings: setup
                .config
                .services
                .iter()
                .find(|s| s.name == FAILING_SERVICE)
                .and_then(|s| s.circuit_breaker.clone()),
        }),
        _ => None,
    };
    let summary = Summary {
        listener: setup.listener.clone(),
        traffic,
        routes,
        load: &report,
        target_rps: opts.rps,
        concurrency: opts.concurrency,
        slow: setup.services.as_ref().map(|s| SlowEndpoint {
            service: s.v1_slow.service.to_string(),
            endpoint: s.v1_slow.address.to_string(),
            delay: s.v1_slow.delay,
        }),
        upstream_hits: setup.services.as_ref().map(DemoServices::total_hits),
        breakers,
        story,
        metrics_url,
    };
    println!();
    print!("{summary}");
    if report.completed() == 0 {
        return Err(Failed::runtime(format!(
            "no request got a response from {target}; see the errors above"
        )));
    }
    Ok(())
}

/// `--config FILE`: the user's configuration, its first http listener, no demo services.
fn user_setup(path: &std::path::Path) -> Result<Setup, Failed> {
    let loaded = match config::load_file(path) {
        Ok(loaded) => loaded,
        Err(e @ LoadError::Io { .. }) => return Err(Failed::runtime(e.to_string())),
        Err(e) => {
            return Err(Failed::invalid(format!(
                "{}: invalid configuration:\n{e}",
                path.display()
            )))
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let mut config = loaded.config;
    let listener = config
        .listeners
        .iter()
        .find(|l| l.protocol == ListenerProtocol::Http)
        .map(|l| l.name.clone())
        .ok_or_else(|| {
            Failed::invalid(format!(
                "{}: no listener has `protocol: http`; the demo sends HTTP load to the first one",
                path.display()
            ))
        })?;
    if config.logging.access_log {
        // One log line per request would scroll the progress bar away.
        eprintln!("weir demo: the access log is off while the demo runs");
        config.logging.access_log = false;
    }
    let (mut requests, mut notes) = probes::for_routes(listener_routes(&config, &listener));
    if requests.is_empty() {
        notes.push("no route yields a request; the demo sends GET /".into());
        requests.push(Probe::get("/"));
    }
    Ok(Setup {
        config,
        listener,
        requests,
        notes,
        services: None,
        plan: None,
    })
}

/// The routes of listener `name` in `config` (none if there is no such listener).
fn listener_routes<'a>(config: &'a Config, name: &str) -> &'a [config::Route] {
    config
        .listeners
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.routes.as_slice())
        .unwrap_or_default()
}

/// The state of `service`'s circuit breaker in the running configuration, if it has one.
fn breaker_state(state: &AdminState, service: &str) -> Option<BreakerState> {
    let snapshot = state.snapshot.load();
    snapshot
        .services
        .get(service)?
        .breaker
        .as_ref()
        .map(|b| b.state())
}

/// No `--config`: start the demo services and fill the embedded configuration with their
/// ports and the breaker timings of `plan`.
async fn embedded_setup(plan: Plan) -> Result<Setup, Failed> {
    let services = DemoServices::start().await.map_err(|e| {
        Failed::runtime(format!("cannot start the demo services on 127.0.0.1: {e}"))
    })?;
    let admin = if StdTcpListener::bind(PREFERRED_ADMIN).is_ok() {
        PREFERRED_ADMIN
    } else {
        SocketAddr::new(PREFERRED_ADMIN.ip(), 0)
    };
    let text = embedded_config(&services, admin, &plan);
    let loaded = config::load_str(EMBEDDED_NAME, &text).map_err(|e| {
        let mut details = e.to_string();
        if details.trim().is_empty() {
            details = "(the configuration loader returned an error without diagnostics)".into();
        }
        Failed::runtime(format!(
            "the embedded demo configuration does not load; this is a bug in weir, please report it:\n{details}"
        ))
    })?;
    Ok(Setup {
        config: loaded.config,
        listener: "demo".into(),
        requests: vec![Probe {
            route: Some("reviews".into()),
            ..Probe::get("/reviews/1")
        }],
        notes: Vec::new(),
        services: Some(services),
        plan: Some(plan),
    })
}

/// The embedded configuration with every placeholder replaced.
fn embedded_config(services: &DemoServices, admin: SocketAddr, plan: &Plan) -> String {
    TEMPLATE
        .replace("${ADMIN}", &admin.to_string())
        .replace("${REVIEWS_V1_FAST}", &services.v1_fast.address.to_string())
        .replace("${REVIEWS_V1_SLOW}", &services.v1_slow.address.to_string())
        .replace("${REVIEWS_V2}", &services.v2.address.to_string())
        .replace("${BREAKER_WINDOW}", &format_duration(plan.window))
        .replace("${BREAKER_SLEEP}", &format_duration(plan.sleep_window))
}

/// Starts weir. For the embedded configuration, an admin port taken in the meantime falls
/// back to a free one rather than failing the demo.
async fn start(mut config: Config, embedded: bool) -> Result<Server, Failed> {
    match Server::start(config.clone()).await {
        Ok(server) => Ok(server),
        Err(StartError::Bind { what, error, .. })
            if embedded && what == "admin" && error.kind() == std::io::ErrorKind::AddrInUse =>
        {
            config.admin.address.set_port(0);
            Server::start(config)
                .await
                .map_err(|e| Failed::runtime(e.to_string()))
        }
        Err(e) => Err(Failed::runtime(e.to_string())),
    }
}

/// What is running where, and where to curl `/metrics` while it runs (stderr).
fn print_intro(
    setup: &Setup,
    opts: &DemoOptions,
    target: SocketAddr,
    server: &Server,
    metrics_url: &str,
) {
    eprintln!(
        "weir demo: {} rps over {} keep-alive connections for {}",
        opts.rps,
        opts.concurrency,
        format_duration(opts.duration)
    );
    if let Some(s) = &setup.services {
        eprintln!(
            "  reviews-v1   {}, {} (+{} slower)",
            s.v1_fast.address,
            s.v1_slow.address,
            format_duration(SLOW_DELAY)
        );
        eprintln!("  reviews-v2   {}", s.v2.address);
        if let Some(plan) = &setup.plan {
            eprintln!(
                "               fails with 500 from {} to {}; circuit breaker: window {}, sleep {}",
                format_seconds_one_decimal(plan.fail_from),
                format_seconds_one_decimal(plan.fail_until),
                format_duration(plan.window),
                format_duration(plan.sleep_window)
            );
        }
        eprintln!(
            "  weir         http://{target}  (route reviews: 90% reviews-v1, 10% reviews-v2, least_request)"
        );
        if server.admin_address.port() != PREFERRED_ADMIN.port() {
            eprintln!(
                "  admin        {} ({} was in use)",
                server.admin_address, PREFERRED_ADMIN
            );
        }
    } else {
        eprintln!(
            "  weir         http://{target}  (listener {})",
            setup.listener
        );
    }
    for probe in &setup.requests {
        let route = match &probe.route {
            Some(r) => format!("route {r}"),
            None => "no route".to_string(),
        };
        eprintln!("  request      {}  ({route})", probe.describe());
    }
    for note in &setup.notes {
        eprintln!("  note: {note}");
    }
    eprintln!("  metrics      curl {metrics_url}   (live while the demo runs)");
    let admin = server.admin_address;
    eprintln!("  services     curl http://{admin}/services   (endpoints, their state, requests and errors)");
    eprintln!("  config       curl http://{admin}/config     (the configuration in force)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn embedded_config_loads_with_real_ports() {
        let services = DemoServices::start().await.expect("bind demo services");
        let admin = SocketAddr::from(([127, 0, 0, 1], 0));
        let plan = Plan::for_duration(Duration::from_secs(15));
        let text = embedded_config(&services, admin, &plan);
        assert!(!text.contains("${"), "{text}");
        let loaded = config::load_str(EMBEDDED_NAME, &text);
        let config = match loaded {
            Ok(l) => l.config,
            Err(e) => panic!("the embedded config does not load: {e:?}"),
        };
        assert_eq!(config.admin.address, admin);
        assert_eq!(config.listeners[0].name, "demo");
        let weights: Vec<_> = config.listeners[0].routes[0]
            .backends
            .iter()
            .map(|b| (b.service.as_str(), b.weight))
            .collect();
        assert_eq!(weights, [("reviews-v1", 90), ("reviews-v2", 10)]);
        assert_eq!(config.services[0].endpoints.len(), 2);
        assert!(!config.logging.access_log);
        assert_eq!(config.services[0].circuit_breaker, None);
        let breaker = config.services[1].circuit_breaker.as_ref();
        assert_eq!(config.services[1].name, FAILING_SERVICE);
        assert_eq!(breaker.map(|b| b.window), Some(Duration::from_secs(2)));
        assert_eq!(
            breaker.map(|b| b.sleep_window),
            Some(Duration::from_secs(1))
        );
        assert_eq!(breaker.map(|b| b.request_volume_threshold), Some(10));
        assert_eq!(breaker.map(|b| b.half_open_requests), Some(1));
    }

    #[tokio::test]
    async fn embedded_config_loads_with_the_breaker_timings_of_a_short_run() {
        let services = DemoServices::start().await.expect("bind demo services");
        let admin = SocketAddr::from(([127, 0, 0, 1], 0));
        let plan = Plan::for_duration(Duration::from_secs(3));
        let text = embedded_config(&services, admin, &plan);
        let config = match config::load_str(EMBEDDED_NAME, &text) {
            Ok(l) => l.config,
            Err(e) => panic!("the embedded config does not load: {e:?}"),
        };
        let breaker = config.services[1].circuit_breaker.as_ref();
        assert_eq!(breaker.map(|b| b.window), Some(Duration::from_secs(1)));
        assert_eq!(
            breaker.map(|b| b.sleep_window),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn durations_print_as_typed() {
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert!(parse_positive_duration("0s").is_err());
        assert_eq!(parse_positive_duration("1m"), Ok(Duration::from_secs(60)));
    }
}
