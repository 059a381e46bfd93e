//! Process-wide logging: level and format from the configuration. Access lines do not go
//! through here: `telemetry::access_log` formats and writes them itself, off the request path.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogLevel, Logging};

/// Installs the global subscriber. `RUST_LOG` overrides the configured level when set.
pub fn init(cfg: &Logging) {
    let level = match cfg.level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},h2=warn,hyper=warn")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
