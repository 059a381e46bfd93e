//! The `weir explain` command: its flags, loading the configuration as `weir check` does,
//! and printing the explanation.
//!
//! Exit codes (DESIGN §2): 0 when the request was explained (matched or not); 1 for an
//! invalid configuration or question; 2 when the file cannot be read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{explain, text, Question};
use crate::config::{self, LoadError};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

/// `weir explain` flags.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Configuration file.
    #[arg(short, long, env = "WEIR_CONFIG")]
    pub config: PathBuf,
    /// The listener the request arrives on; default: the first http listener.
    #[arg(long, value_name = "NAME")]
    pub listener: Option<String>,
    /// A request header, `name: value` (repeat for more).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The request's authority (sent as its Host header).
    #[arg(long, value_name = "HOST")]
    pub authority: Option<String>,
    /// The client's mTLS identity (SPIFFE ID), for routes with `match.peer`.
    #[arg(long, value_name = "SPIFFE_ID")]
    pub peer: Option<String>,
    /// The connection's original destination, for transparent listeners.
    #[arg(long, value_name = "IP:PORT")]
    pub destination: Option<SocketAddr>,
    /// The request method, e.g. GET.
    pub method: String,
    /// The request path, e.g. /reviews/1.
    pub path: String,
}

/// Runs `weir explain`.
pub fn run(args: ExplainArgs) -> ExitCode {
    let loaded = match config::load_file(&args.config) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return match e {
                LoadError::Io { .. } => ExitCode::from(2),
                LoadError::Invalid(_) => ExitCode::from(1),
            };
        }
    };
    for w in &loaded.warnings {
        eprintln!(
            "{}:{}:{}: {}: warning: {}",
            w.file, w.line, w.col, w.path, w.message
        );
    }
    // Offline nothing is dialled: services are built without their mTLS origination (which
    // needs the workload's certificate), and their TLS is described from the file.
    let mut plain = loaded.config.clone();
    for s in &mut plain.services {
        s.tls = None;
    }
    let snapshot = match Snapshot::build(plain, &Metrics::new(), None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("weir: {e}");
            return ExitCode::from(1);
        }
    };
    let mut headers = args.headers;
    if let Some(host) = args.authority {
        headers.push(format!("host: {host}"));
    }
    let question = Question {
        listener: args.listener,
        method: args.method,
        path: args.path,
        headers,
        peer: args.peer,
        destination: args.destination,
    };
    match explain(&snapshot, &loaded.config, &question, false) {
        Ok(e) => {
            print!("{}", text(&e));
            ExitCode::SUCCESS
        }
        Err(invalid) => {
            eprintln!("weir: {invalid}");
            ExitCode::from(1)
        }
    }
}
