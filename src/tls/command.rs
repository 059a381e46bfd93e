//! `weir certs`: the command line for minting (DESIGN §2).
//!
//! `weir certs ca` mints a mesh CA into a directory; `weir certs issue` mints a workload
//! certificate signed by it. Exit 0 on success, 1 when an argument or the CA directory is
//! wrong (the message names it and the fix), 2 when the machine fails (a file cannot be read
//! or written).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::files::Written;
use super::lifetime::{format_utc, parse_lifetime};
use super::mint::{MeshCa, MintError};
use super::spiffe::{check_namespace, check_object_name, check_service_account, TrustDomain};

/// What `weir certs` mints.
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Mint a mesh CA (ECDSA P-256): writes ca.crt and ca.key (mode 0600) to --out.
    Ca(CaArgs),
    /// Mint a workload certificate with the SPIFFE ID
    /// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`: writes tls.crt, tls.key
    /// (mode 0600) and the trust bundle ca.crt to --out.
    Issue(IssueArgs),
}

/// `weir certs ca`.
#[derive(Debug, Args)]
pub struct CaArgs {
    /// The mesh's SPIFFE trust domain.
    #[arg(long, default_value = "cluster.local", value_parser = parse_trust_domain)]
    pub trust_domain: TrustDomain,
    /// Directory to write ca.crt and ca.key to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How long the CA is valid: whole numbers with y, d, h, m or s (`10y`, `365d`).
    #[arg(long, value_name = "LIFETIME", default_value = "10y", value_parser = parse_lifetime)]
    pub valid: Duration,
    /// Replace a CA already in --out (every certificate it signed stops being trusted).
    #[arg(long)]
    pub force: bool,
}

/// `weir certs issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Directory of the CA (as written by `weir certs ca`).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// The workload's Kubernetes namespace.
    #[arg(long, short = 'n', value_parser = parse_namespace)]
    pub namespace: String,
    /// The workload's Kubernetes service account.
    #[arg(long, value_parser = parse_service_account)]
    pub service_account: String,
    /// Directory to write tls.crt, tls.key and ca.crt to (created if missing; a workload
    /// certificate already there is replaced).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How long the certificate is valid: whole numbers with y, d, h, m or s (`24h`, `90d`).
    #[arg(long, value_name = "LIFETIME", default_value = "24h", value_parser = parse_lifetime)]
    pub valid: Duration,
    /// Also write secret.yaml: a Secret of this name in the namespace, of type
    /// kubernetes.io/tls, with tls.crt, tls.key and ca.crt.
    #[arg(long, value_name = "NAME", value_parser = parse_secret_name)]
    pub secret: Option<String>,
}

/// Runs `weir certs …`; prints what it wrote, or the error on stderr.
pub fn run(command: CertsCommand) -> ExitCode {
    let result = match command {
        CertsCommand::Ca(args) => mint_ca(args),
        CertsCommand::Issue(args) => issue(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed { message, input }) => {
            eprintln!("weir certs: {message}");
            ExitCode::from(if input { 1 } else { 2 })
        }
    }
}

/// Why a `weir certs` command failed, and whether the input is at fault.
struct Failed {
    message: String,
    input: bool,
}

fn mint_ca(args: CaArgs) -> Result<(), Failed> {
    let ca = MeshCa::new(args.trust_domain, args.valid).map_err(minting_failed)?;
    let written = ca.write(&args.out, args.force).map_err(|e| Failed {
        input: e.is_input(),
        message: e.to_string(),
    })?;
    println!(
        "minted the mesh CA of trust domain {} ({}), valid until {}",
        ca.trust_domain(),
        ca.trust_domain().id(),
        format_utc(ca.not_after())
    );
    print_written(&written);
    Ok(())
}

fn issue(args: IssueArgs) -> Result<(), Failed> {
    let ca = MeshCa::load(&args.ca).map_err(|e| Failed {
        input: e.is_input(),
        message: format!("--ca: {e}"),
    })?;
    let issued = ca
        .issue(&args.namespace, &args.service_account, args.valid)
        .map_err(minting_failed)?;
    let written = issued
        .write(&args.out, &ca, args.secret.as_deref())
        .map_err(|e| Failed {
            input: e.is_input(),
            message: e.to_string(),
        })?;
    println!(
        "issued {}, valid until {}",
        issued.spiffe_id,
        format_utc(issued.not_after)
    );
    print_written(&written);
    Ok(())
}

fn minting_failed(e: MintError) -> Failed {
    let message = match &e {
        MintError::Lifetime(_) => format!("--valid: {e}"),
        _ => e.to_string(),
    };
    Failed {
        input: e.is_input(),
        message,
    }
}

fn print_written(written: &[Written]) {
    let width = written
        .iter()
        .map(|w| w.path.display().to_string().chars().count())
        .max()
        .unwrap_or(0);
    for w in written {
        println!("  {:<width$}  {}", w.path.display().to_string(), w.what);
    }
}

fn parse_trust_domain(s: &str) -> Result<TrustDomain, String> {
    TrustDomain::new(s).map_err(|e| e.to_string())
}

fn parse_namespace(s: &str) -> Result<String, String> {
    check_namespace(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_service_account(s: &str) -> Result<String, String> {
    check_service_account(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

fn parse_secret_name(s: &str) -> Result<String, String> {
    check_object_name(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}
