//! The `weir` command line (DESIGN §2).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// weir: a service-mesh sidecar proxy.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Configuration file.
        #[arg(short, long, env = "WEIR_CONFIG")]
        config: PathBuf,
        /// How long in-flight requests may take to finish once weir stops accepting.
        #[arg(long, default_value = "15s", value_parser = parse_duration)]
        grace_period: Duration,
        /// How long weir keeps accepting after SIGTERM (or `POST /shutdown`) before it
        /// stops and drains: as a legacy sidecar, so the application's own calls during its
        /// shutdown still go out. `/ready` fails meanwhile; a second SIGTERM or SIGINT ends
        /// it early. 0 (the default) drains at once, as a native sidecar should: Kubernetes
        /// stops it after the application. The pod's terminationGracePeriodSeconds must
        /// cover the drain period plus the grace period.
        #[arg(long, default_value = "0s", value_parser = parse_duration, env = "WEIR_DRAIN")]
        drain: Duration,
        /// Worker threads; default: one per CPU this process may run on (like Envoy's
        /// `--concurrency`). One worker runs a single-threaded runtime.
        #[arg(long, env = "WEIR_WORKERS")]
        workers: Option<usize>,
    },
    /// Validate a configuration without running it.
    Check {
        /// Configuration file.
        config: PathBuf,
    },
    /// Run the embedded demo: services, weir in front of them, load, and a summary.
    Demo(weir::demo::DemoOptions),
    /// Print Prometheus alerting and recording rules for the configured services.
    Alerts {
        /// Configuration file.
        #[arg(short, long, env = "WEIR_CONFIG")]
        config: PathBuf,
        /// Write the rules to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Success-rate objective in percent: requests answered without a 5xx.
        #[arg(long, value_name = "PERCENT", default_value = "99.9")]
        slo: weir::alerts::SloTarget,
        /// p99 latency above which a service alerts (a duration such as 500ms).
        #[arg(long, value_name = "DURATION", default_value = "500ms")]
        p99_latency: weir::alerts::LatencyThreshold,
    },
    /// Mint a mesh CA and workload certificates with SPIFFE IDs.
    Certs {
        #[command(subcommand)]
        command: weir::tls::command::CertsCommand,
    },
    /// Add the weir sidecar (and init container) to Kubernetes workload manifests.
    Inject(weir::kube::inject::command::InjectArgs),
    /// Install the transparent-redirect rules in a pod's network namespace (run as root or
    /// with NET_ADMIN and NET_RAW, in an init container).
    InitIptables(weir::kube::iptables::command::InitIptables),
    /// Translate Istio, Gateway API, Linkerd and SMI resources (and Hystrix properties)
    /// into a weir configuration, reporting every field weir cannot express.
    Import(weir::import::command::ImportArgs),
    /// Explain which route, backends and policies a request gets, and why (offline).
    Explain(weir::explain::command::ExplainArgs),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    weir::config::parse_duration(s)
}

fn main() -> ExitCode {
    // Usage errors are invalid input: exit 1 (DESIGN §2), not clap's default 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run {
            config,
            grace_period,
            drain,
            workers,
        } => run(
            &config,
            Stopping {
                drain,
                grace_period,
            },
            workers,
        ),
        Command::Demo(opts) => match runtime(None) {
            Ok(rt) => rt.block_on(weir::demo::run(opts)),
            Err(code) => code,
        },
        Command::Certs { command } => weir::tls::command::run(command),
        Command::Inject(args) => weir::kube::inject::command::run(args),
        Command::InitIptables(opts) => weir::kube::iptables::command::run(opts),
        Command::Import(args) => weir::import::command::run(args),
        Command::Explain(args) => weir::explain::command::run(args),
        Command::Alerts {
            config,
            output,
            slo,
            p99_latency,
        } => alerts(&config, output.as_deref(), slo, p99_latency),
    }
}

/// `weir alerts`: the rule file on stdout or in `output`; a configuration error exits 1 as
/// in `weir check`, an unreadable configuration or unwritable output 2.
fn alerts(
    path: &std::path::Path,
    output: Option<&std::path::Path>,
    slo: weir::alerts::SloTarget,
    p99_latency: weir::alerts::LatencyThreshold,
) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let options = weir::alerts::Options { slo, p99_latency };
    let text = weir::alerts::rule_file(&loaded.config, &path.display().to_string(), &options);
    match output {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(out) => match std::fs::write(out, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}: cannot write the rules: {e}", out.display());
                ExitCode::from(2)
            }
        },
    }
}

/// `weir check`: every error on stderr and exit 1, or the warnings and an `ok` line.
fn check(path: &std::path::Path) -> ExitCode {
    let loaded = match load(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    for w in &loaded.warnings {
        eprintln!(
            "{}:{}:{}: {}: warning: {}",
            w.file, w.line, w.col, w.path, w.message
        );
    }
    println!(
        "{}: ok ({} listeners, {} services)",
        path.display(),
        loaded.config.listeners.len(),
        loaded.config.services.len()
    );
    ExitCode::SUCCESS
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    // One worker per CPU this process may run on (taskset/cgroup aware), as Envoy sizes its
    // workers. With one CPU, a single-threaded runtime does the same work without the
    // work-stealing scheduler's cross-thread wakeups and atomics.
    let workers = workers
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("weir: cannot start the runtime: {e}");
        ExitCode::from(2)
    })
}

/// The configuration at `path`, or its errors printed and the exit code: 1 for an invalid
/// configuration, 2 for a file that cannot be read.
fn load(path: &std::path::Path) -> Result<weir::config::Loaded, ExitCode> {
    weir::config::load_file(path).map_err(|e| {
        eprintln!("{e}");
        match e {
            weir::config::LoadError::Io { .. } => ExitCode::from(2),
            weir::config::LoadError::Invalid(_) => ExitCode::from(1),
        }
    })
}

/// `weir run`: serve until SIGTERM, SIGINT or `POST /shutdown`, then drain; SIGHUP
/// reloads the configuration file.
/// How `weir run` stops: it keeps accepting for `drain`, then gives in-flight work up to
/// `grace_period`.
#[derive(Debug, Clone, Copy)]
struct Stopping {
    drain: Duration,
    grace_period: Duration,
}

fn run(path: &std::path::Path, stopping: Stopping, workers: Option<usize>) -> ExitCode {
    let Stopping {
        drain,
        grace_period: grace,
    } = stopping;
    let loaded = match load(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    weir::logging::init(&loaded.config.logging);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let rt = match runtime(workers) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        // Installed before the server is ready, so a SIGHUP never finds weir without its
        // handler (and killed by the default action).
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        let source = weir::server::ConfigSource {
            path: Some(path.to_path_buf()),
            sha256: loaded.sha256,
        };
        let server = match weir::server::Server::start_from(loaded.config, source).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("weir: {e}");
                return ExitCode::from(2);
            }
        };
        let mut reloading = Box::pin(reload_on_sighup(&server, hangup));
        tokio::select! {
            _ = wait_for_signal() => {}
            _ = server.shutdown_requested() => tracing::info!("POST /shutdown"),
            _ = &mut reloading => {}
        }
        if !drain.is_zero() {
            server.set_unready();
            tracing::info!(drain = %weir::config::format_duration(drain), "still accepting for the drain period; SIGTERM or SIGINT again to drain now");
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                _ = wait_for_signal() => tracing::info!("signal: the drain period ends early"),
                _ = &mut reloading => {}
            }
        }
        // A reload now would have nothing left to apply to.
        drop(reloading);
        tracing::info!(grace = %weir::config::format_duration(grace), "draining");
        if server.shutdown(grace).await {
            tracing::info!("drained; exiting");
        } else {
            tracing::warn!("grace period over with requests still in flight; exiting");
        }
        ExitCode::SUCCESS
    })
}

/// Reloads the configuration on every SIGHUP (the reload logs its outcome); never returns
/// unless the handler cannot be installed, and then never resolves.
async fn reload_on_sighup(
    server: &weir::server::Server,
    hangup: std::io::Result<tokio::signal::unix::Signal>,
) {
    let Ok(mut hangup) = hangup else {
        tracing::warn!("cannot handle SIGHUP; reload with POST /reload instead");
        return std::future::pending().await;
    };
    while hangup.recv().await.is_some() {
        server.reload(weir::reload::Trigger::Signal).await;
    }
    std::future::pending().await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; serve forever.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
