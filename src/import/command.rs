//! The `weir import` command: its flags, reading the files, printing the findings, writing
//! the configuration.
//!
//! Exit codes as elsewhere in weir (DESIGN §2): 1 when a source is invalid, or with
//! `--strict` when a field cannot be expressed (nothing is written then); 2 when a file
//! cannot be read or written.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::emit::Layout;
use super::{import, Input, Options, Severity};

/// `weir import` flags.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files of Istio, Gateway API, Linkerd or SMI resources (multi-document YAML), or
    /// Hystrix `.properties`; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Namespace of resources that name none, and of this proxy (`node.namespace`).
    #[arg(short, long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Write the configuration to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Fail (exit 1, write nothing) when any field cannot be expressed in weir.
    #[arg(long)]
    pub strict: bool,
    /// SPIFFE trust domain of mesh identities.
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Give a generated service static endpoints instead of discovery, e.g.
    /// `--endpoint reviews-v1=127.0.0.1:9081` (repeat, or list addresses with commas): to
    /// try the result outside a cluster.
    #[arg(long, value_name = "SERVICE=IP:PORT[,IP:PORT]", value_parser = parse_endpoint)]
    pub endpoint: Vec<(String, Vec<SocketAddr>)>,
    /// Listeners route by Host only, without iptables redirection (to try the result
    /// outside a pod).
    #[arg(long)]
    pub no_transparent: bool,
    /// Address of the outbound listener.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:15001")]
    pub outbound: SocketAddr,
    /// Address of the inbound listener (written when a PeerAuthentication or
    /// AuthorizationPolicy applies).
    #[arg(long, value_name = "IP:PORT", default_value = "0.0.0.0:15006")]
    pub inbound: SocketAddr,
    /// The application's address, for the inbound listener with --no-transparent.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    pub app: SocketAddr,
    /// Directory of the workload certificate (`tls.crt`, `tls.key`, `ca.crt`).
    #[arg(long, value_name = "DIR", default_value = "/etc/weir/identity")]
    pub identity_dir: String,
}

fn parse_endpoint(s: &str) -> Result<(String, Vec<SocketAddr>), String> {
    let (name, addrs) = s.split_once('=').ok_or_else(|| {
        format!("{s:?} is not SERVICE=IP:PORT; write e.g. reviews-v1=127.0.0.1:9081")
    })?;
    let addrs = addrs
        .split(',')
        .map(|a| {
            a.trim()
                .parse()
                .map_err(|_| format!("{a:?} is not IP:PORT; write e.g. 127.0.0.1:9081"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), addrs))
}

/// Runs `weir import`.
pub fn run(args: ImportArgs) -> ExitCode {
    let mut inputs = Vec::new();
    for file in &args.files {
        let stdin = file.as_os_str() == "-";
        let name = if stdin {
            "<stdin>".to_string()
        } else {
            file.display().to_string()
        };
        let mut text = String::new();
        let read = if stdin {
            std::io::stdin().read_to_string(&mut text).map(drop)
        } else {
            std::fs::read_to_string(file).map(|t| text = t)
        };
        if let Err(e) = read {
            eprintln!("{name}: cannot read the file: {e}");
            return ExitCode::from(2);
        }
        inputs.push(Input { name, text });
    }
    let namespace = args.namespace.clone();
    let options = Options {
        namespace: namespace.clone(),
        trust_domain: args.trust_domain,
        endpoints: args.endpoint,
        layout: Layout {
            outbound: args.outbound.to_string(),
            inbound: args.inbound.to_string(),
            transparent: !args.no_transparent,
            identity_dir: args.identity_dir,
            app: args.app.to_string(),
            namespace: namespace.unwrap_or_else(|| "default".to_string()),
            sources: inputs.iter().map(|i| i.name.clone()).collect(),
        },
    };
    let imported = import(&inputs, &options);
    for report in &imported.reports {
        eprintln!("{report}");
    }
    let errors = imported
        .reports
        .iter()
        .filter(|r| r.severity == Severity::Error)
        .count();
    let unsupported = imported
        .reports
        .iter()
        .filter(|r| r.severity == Severity::Unsupported)
        .count();
    if errors > 0 {
        eprintln!("weir import: {errors} error(s) in the sources; nothing written");
        return ExitCode::from(1);
    }
    if args.strict && unsupported > 0 {
        eprintln!(
            "weir import: {unsupported} field(s) weir cannot express, and --strict is set; nothing written"
        );
        return ExitCode::from(1);
    }
    for (name, _) in &options.endpoints {
        if !imported.services.contains(name) {
            eprintln!(
                "--endpoint {name}: no generated service has this name; the services are: {}",
                imported.services.join(", ")
            );
            return ExitCode::from(1);
        }
    }
    if let Err(e) = crate::config::load_str("<weir import output>", &imported.config) {
        eprintln!("weir import wrote a configuration weir refuses (a bug in weir import; please report it):\n{e}");
        return ExitCode::from(2);
    }
    let written = match &args.output {
        None => std::io::stdout().write_all(imported.config.as_bytes()),
        Some(out) => std::fs::write(out, &imported.config),
    };
    if let Err(e) = written {
        let target = args
            .output
            .map_or("stdout".to_string(), |p| p.display().to_string());
        eprintln!("{target}: cannot write the configuration: {e}");
        return ExitCode::from(2);
    }
    if unsupported > 0 {
        eprintln!("weir import: {unsupported} field(s) weir cannot express (listed above); the configuration was written without them");
    }
    ExitCode::SUCCESS
}
