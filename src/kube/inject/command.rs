//! The `weir inject` command: its flags, reading the file (or stdin), writing the result.
//!
//! Exit codes as elsewhere in weir (DESIGN §2): 1 for a manifest that cannot be injected
//! (`FILE:LINE:COL: message`), 2 for a file that cannot be read or written.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{default_image, init_image_of, inject, Options, Quantity, Resources, SidecarMode};

/// `weir inject` flags.
#[derive(Debug, Args)]
pub struct InjectArgs {
    /// The manifest: multi-document YAML; `-` reads stdin.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Write the result to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The weir image (default: ghcr.io/weir-proxy/weir:VERSION of this build).
    #[arg(long)]
    pub image: Option<String>,
    /// The image of the weir-init container, weir with the iptables tools (default: the
    /// --image repository with `-init` added to its name, same tag:
    /// ghcr.io/weir-proxy/weir-init:VERSION).
    #[arg(long, value_name = "IMAGE")]
    pub init_image: Option<String>,
    /// The ConfigMap holding weir.yaml, mounted at /etc/weir.
    #[arg(long, value_name = "NAME", default_value = "weir-config")]
    pub config_map: String,
    /// The Secret holding the workload certificate, mounted at /etc/weir/identity
    /// (default: weir-identity-SERVICEACCOUNT, or the workload's name).
    #[arg(long, value_name = "NAME")]
    pub identity_secret: Option<String>,
    /// Add weir as a regular container (first in `containers`), for clusters before 1.29
    /// that lack native sidecars.
    #[arg(long)]
    pub legacy_sidecar: bool,
    /// CPU request of the proxy.
    #[arg(long, value_name = "QUANTITY", default_value = "100m")]
    pub cpu_request: Quantity,
    /// Memory request of the proxy.
    #[arg(long, value_name = "QUANTITY", default_value = "64Mi")]
    pub memory_request: Quantity,
    /// CPU limit of the proxy.
    #[arg(long, value_name = "QUANTITY", default_value = "1")]
    pub cpu_limit: Quantity,
    /// Memory limit of the proxy.
    #[arg(long, value_name = "QUANTITY", default_value = "256Mi")]
    pub memory_limit: Quantity,
}

/// Runs `weir inject`.
pub fn run(args: InjectArgs) -> ExitCode {
    let stdin = args.file.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        args.file.display().to_string()
    };
    let mut text = String::new();
    let read = if stdin {
        std::io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::read_to_string(&args.file).map(|t| text = t)
    };
    if let Err(e) = read {
        eprintln!("{name}: cannot read the manifest: {e}");
        return ExitCode::from(2);
    }
    let image = args.image.unwrap_or_else(default_image);
    let options = Options {
        init_image: args.init_image.unwrap_or_else(|| init_image_of(&image)),
        image,
        config_map: args.config_map,
        identity_secret: args.identity_secret,
        sidecar: if args.legacy_sidecar {
            SidecarMode::Legacy
        } else {
            SidecarMode::Native
        },
        resources: Resources {
            cpu_request: args.cpu_request,
            memory_request: args.memory_request,
            cpu_limit: args.cpu_limit,
            memory_limit: args.memory_limit,
        },
    };
    let injected = match inject(&text, &options) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{name}:{e}");
            return ExitCode::from(1);
        }
    };
    for note in &injected.notes {
        eprintln!("{name}: {note}");
    }
    let written = match &args.output {
        None => std::io::stdout().write_all(injected.text.as_bytes()),
        Some(out) => std::fs::write(out, &injected.text),
    };
    if let Err(e) = written {
        let target = args
            .output
            .map_or("stdout".to_string(), |p| p.display().to_string());
        eprintln!("{target}: cannot write the manifest: {e}");
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
