//! `weir init-iptables`: the command line, its ports (flags, else a weir configuration, else
//! the defaults), and the three things it does: print, install, remove.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Direction};

use super::apply::Tools;
use super::backend::Choice;
use super::cidr::Cidr;
use super::script::{self, Redirect};

/// The options of `weir init-iptables` (DESIGN §2).
#[derive(Debug, clap::Args)]
pub struct InitIptables {
    /// Take the ports from this weir configuration: the inbound port is the listener with
    /// `direction: inbound` and `transparent: true`, the outbound port likewise, the admin
    /// port from `admin.address`. Port flags override it.
    #[arg(short, long, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// Where inbound TCP is redirected [default: 15006].
    #[arg(long, value_name = "PORT")]
    inbound_port: Option<u16>,
    /// Where the application's outbound TCP is redirected [default: 15001].
    #[arg(long, value_name = "PORT")]
    outbound_port: Option<u16>,
    /// weir's admin port, never redirected inbound [default: 9901].
    #[arg(long, value_name = "PORT")]
    admin_port: Option<u16>,
    /// The uid weir runs as; its own connections are never redirected.
    #[arg(long, value_name = "UID", default_value_t = 1337)]
    proxy_uid: u32,
    /// Inbound destination ports left alone (comma-separated).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports left alone (comma-separated).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    exclude_outbound_ports: Vec<u16>,
    /// Outbound destination IPv4 networks left alone (comma-separated, a.b.c.d/len).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    exclude_outbound_cidrs: Vec<Cidr>,
    /// Which iptables to write to.
    #[arg(long, value_enum, default_value_t = Choice::Auto)]
    backend: Choice,
    /// Print the iptables-restore script and change nothing (with --cleanup: the removal
    /// script for the rules present now).
    #[arg(long)]
    dry_run: bool,
    /// Remove weir's chains and the jumps into them, and nothing else.
    #[arg(long)]
    cleanup: bool,
}

/// Runs `weir init-iptables`: exit 0 done, 1 invalid input, 2 the rules could not be read or
/// written.
pub fn run(opts: InitIptables) -> ExitCode {
    let result = if opts.cleanup {
        cleanup(&opts)
    } else {
        match redirect(&opts) {
            Ok(r) => install(&opts, &r),
            Err(message) => {
                eprintln!("weir init-iptables: {message}");
                return ExitCode::from(1);
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir init-iptables: {e}");
            ExitCode::from(2)
        }
    }
}

fn install(opts: &InitIptables, r: &Redirect) -> Result<(), super::apply::Error> {
    if opts.dry_run {
        print!("{}", script::install(r));
        return Ok(());
    }
    let tools = Tools::find(opts.backend)?;
    let saved = tools.save_nat()?;
    tools.restore(&script::reinstall(r, &saved))?;
    eprintln!(
        "weir init-iptables: redirecting inbound TCP to {} and outbound TCP to {} (iptables-{})",
        r.inbound_port, r.outbound_port, tools.backend
    );
    Ok(())
}

fn cleanup(opts: &InitIptables) -> Result<(), super::apply::Error> {
    let tools = Tools::find(opts.backend)?;
    let saved = tools.save_nat()?;
    let Some(removal) = script::cleanup(&saved) else {
        if !opts.dry_run {
            eprintln!("weir init-iptables: no weir rules to remove");
        }
        return Ok(());
    };
    if opts.dry_run {
        print!("{removal}");
        return Ok(());
    }
    tools.restore(&removal)?;
    eprintln!("weir init-iptables: removed weir's rules");
    Ok(())
}

/// The options decided: flags first, then the configuration, then the defaults.
fn redirect(opts: &InitIptables) -> Result<Redirect, String> {
    let defaults = Redirect::default();
    let from_config = match &opts.config {
        Some(path) => {
            let loaded = crate::config::load_file(path).map_err(|e| e.to_string())?;
            let ports = ConfigPorts::of(&loaded.config);
            let missing = |direction: &str| {
                format!(
                    "{}: no listener with direction: {direction} and transparent: true; add one \
                     or pass --{direction}-port",
                    path.display()
                )
            };
            Some(ConfigPorts {
                inbound: Some(
                    opts.inbound_port
                        .or(ports.inbound)
                        .ok_or_else(|| missing("inbound"))?,
                ),
                outbound: Some(
                    opts.outbound_port
                        .or(ports.outbound)
                        .ok_or_else(|| missing("outbound"))?,
                ),
                admin: ports.admin,
            })
        }
        None => None,
    };
    let from_config = from_config.as_ref();
    let redirect = Redirect {
        inbound_port: opts
            .inbound_port
            .or(from_config.and_then(|c| c.inbound))
            .unwrap_or(defaults.inbound_port),
        outbound_port: opts
            .outbound_port
            .or(from_config.and_then(|c| c.outbound))
            .unwrap_or(defaults.outbound_port),
        admin_port: opts
            .admin_port
            .or(from_config.map(|c| c.admin))
            .unwrap_or(defaults.admin_port),
        proxy_uid: opts.proxy_uid,
        exclude_inbound_ports: opts.exclude_inbound_ports.clone(),
        exclude_outbound_ports: opts.exclude_outbound_ports.clone(),
        exclude_outbound_cidrs: opts.exclude_outbound_cidrs.clone(),
    };
    refuse_clashes(&redirect)?;
    Ok(redirect)
}

/// Ports that cannot be what they are asked to be: the admin port is never redirected, so a
/// listener on it would receive nothing; a redirect target excluded from redirection
/// contradicts itself.
fn refuse_clashes(r: &Redirect) -> Result<(), String> {
    for (what, port) in [("inbound", r.inbound_port), ("outbound", r.outbound_port)] {
        if port == r.admin_port {
            return Err(format!(
                "the {what} port {port} is also the admin port, which is never redirected; give the {what} listener another port"
            ));
        }
    }
    if r.exclude_inbound_ports.contains(&r.inbound_port) {
        return Err(format!(
            "--exclude-inbound-ports lists {}, the inbound port itself; remove it",
            r.inbound_port
        ));
    }
    Ok(())
}

/// The ports a weir configuration implies for redirection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConfigPorts {
    inbound: Option<u16>,
    outbound: Option<u16>,
    admin: u16,
}

impl ConfigPorts {
    /// The first transparent listener of each direction, and the admin port.
    fn of(config: &Config) -> ConfigPorts {
        let port = |direction: Direction| {
            config
                .listeners
                .iter()
                .find(|l| l.transparent && l.direction == direction)
                .map(|l| l.address.port())
        };
        ConfigPorts {
            inbound: port(Direction::Inbound),
            outbound: port(Direction::Outbound),
            admin: config.admin.address.port(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
version: 1
admin: { address: 127.0.0.1:9911 }
listeners:
  - name: plain
    address: 127.0.0.1:8080
    protocol: tcp
    routes: [{ name: r, backends: [{ service: s }] }]
  - name: inbound
    address: 0.0.0.0:15106
    protocol: tcp
    transparent: true
    direction: inbound
  - name: outbound
    address: 127.0.0.1:15101
    protocol: tcp
    transparent: true
    direction: outbound
services:
  - name: s
    endpoints: [127.0.0.1:9000]
";

    #[test]
    fn a_configuration_names_the_transparent_listeners_and_the_admin_port() {
        let loaded = crate::config::load_str("weir.yaml", CONFIG).expect("valid");
        assert_eq!(
            ConfigPorts::of(&loaded.config),
            ConfigPorts {
                inbound: Some(15106),
                outbound: Some(15101),
                admin: 9911
            }
        );
    }

    #[test]
    fn ports_that_clash_are_refused() {
        let mut r = Redirect {
            inbound_port: 9901,
            ..Redirect::default()
        };
        let err = refuse_clashes(&r).expect_err("inbound on the admin port");
        assert!(
            err.contains("the inbound port 9901 is also the admin port"),
            "{err}"
        );
        r.inbound_port = 15006;
        r.outbound_port = 9901;
        assert!(refuse_clashes(&r).is_err(), "outbound on the admin port");
        r.outbound_port = 15001;
        r.exclude_inbound_ports = vec![22, 15006];
        let err = refuse_clashes(&r).expect_err("the inbound port excluded");
        assert!(
            err.contains("lists 15006, the inbound port itself"),
            "{err}"
        );
        r.exclude_inbound_ports = vec![22];
        assert_eq!(refuse_clashes(&r), Ok(()));
    }

    #[test]
    fn flags_override_the_configuration_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("weir-ipt-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("weir.yaml");
        std::fs::write(&path, CONFIG).expect("write");
        let parse = |args: &[&str]| {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                opts: InitIptables,
            }
            let cli: Cli = clap::Parser::try_parse_from(
                std::iter::once("init-iptables").chain(args.iter().copied()),
            )
            .expect("valid flags");
            redirect(&cli.opts)
        };
        let path = path.to_string_lossy().into_owned();
        let r = parse(&["-c", &path, "--outbound-port", "16001"]).expect("ports");
        assert_eq!(
            (r.inbound_port, r.outbound_port, r.admin_port),
            (15106, 16001, 9911)
        );
        let r = parse(&[]).expect("defaults");
        assert_eq!(r, Redirect::default());
        let r = parse(&["--exclude-outbound-cidrs", "10.0.0.0/8,1.2.3.4"]).expect("cidrs");
        assert_eq!(r.exclude_outbound_cidrs.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_configuration_without_a_transparent_listener_says_what_to_add() {
        let dir = std::env::temp_dir().join(format!("weir-ipt-cmd2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("weir.yaml");
        let without = CONFIG.replace(
            "transparent: true\n    direction: inbound",
            "direction: inbound\n    routes: [{ name: r, backends: [{ service: s }] }]",
        );
        std::fs::write(&path, without).expect("write");
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            opts: InitIptables,
        }
        let cli: Cli =
            clap::Parser::try_parse_from(["init-iptables", "-c", &path.to_string_lossy()])
                .expect("valid flags");
        let err = redirect(&cli.opts).expect_err("no inbound listener");
        assert!(
            err.ends_with("no listener with direction: inbound and transparent: true; add one or pass --inbound-port"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
