//! The `iptables-restore` scripts: a pure function of the options (install) or of what
//! `iptables-save -t nat` shows (removal), so every rule weir writes is decided, and tested,
//! before anything runs.
//!
//! weir owns four chains of the nat table and two jumps into them; nothing else is touched:
//!
//! ```text
//! PREROUTING -p tcp -> WEIR_INBOUND  -> RETURN (admin and excluded ports) | WEIR_IN_REDIRECT -> REDIRECT inbound port
//! OUTPUT     -p tcp -> WEIR_OUTPUT   -> RETURN (proxy uid, loopback, excluded ports and CIDRs) | WEIR_REDIRECT -> REDIRECT outbound port
//! ```
//!
//! Rules are written the way `iptables-save` prints them (`-m tcp`, networks with host bits
//! cleared), so what is installed reads back line for line.

use std::fmt::Write as _;

use super::cidr::Cidr;

/// The chains weir creates; removal deletes these and the rules jumping to them, nothing else.
pub const CHAINS: [&str; 4] = [
    "WEIR_INBOUND",
    "WEIR_IN_REDIRECT",
    "WEIR_OUTPUT",
    "WEIR_REDIRECT",
];

/// What to redirect and what to leave alone: the decided form of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Where inbound TCP (PREROUTING) goes: the transparent inbound listener.
    pub inbound_port: u16,
    /// Where the application's outbound TCP (OUTPUT) goes: the transparent outbound listener.
    pub outbound_port: u16,
    /// Never redirected inbound, so the admin port stays reachable (probes, Prometheus).
    pub admin_port: u16,
    /// The proxy's own connections are never redirected (they would loop back into it).
    pub proxy_uid: u32,
    /// Inbound destination ports passed through untouched.
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports passed through untouched.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destination networks passed through untouched.
    pub exclude_outbound_cidrs: Vec<Cidr>,
}

impl Default for Redirect {
    /// Istio's ports, since pods and charts around weir expect them.
    fn default() -> Self {
        Redirect {
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 9901,
            proxy_uid: 1337,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
        }
    }
}

/// The rule lines (chain declarations and `-A` rules, without `*nat` and `COMMIT`).
fn rules(r: &Redirect) -> Vec<String> {
    let mut lines: Vec<String> = CHAINS.iter().map(|c| format!(":{c} - [0:0]")).collect();
    lines.push(format!(
        "-A WEIR_IN_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        r.inbound_port
    ));
    lines.push(format!(
        "-A WEIR_REDIRECT -p tcp -j REDIRECT --to-ports {}",
        r.outbound_port
    ));
    let mut inbound_excluded = vec![r.admin_port];
    inbound_excluded.extend(&r.exclude_inbound_ports);
    for port in dedup(inbound_excluded) {
        lines.push(format!(
            "-A WEIR_INBOUND -p tcp -m tcp --dport {port} -j RETURN"
        ));
    }
    lines.push("-A WEIR_INBOUND -p tcp -j WEIR_IN_REDIRECT".to_string());
    // weir calling its own pod (a service whose endpoint is this pod, over mTLS) leaves
    // through `lo`: it must reach the inbound listener, as another pod's call would, not the
    // application's plaintext port (Istio's "outbound to self" rule). Its relays to
    // 127.0.0.1 stay direct.
    lines.push(format!(
        "-A WEIR_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner {} -j WEIR_IN_REDIRECT",
        r.proxy_uid
    ));
    lines.push(format!(
        "-A WEIR_OUTPUT -m owner --uid-owner {} -j RETURN",
        r.proxy_uid
    ));
    lines.push("-A WEIR_OUTPUT -o lo -j RETURN".to_string());
    lines.push("-A WEIR_OUTPUT -d 127.0.0.0/8 -j RETURN".to_string());
    for port in dedup(r.exclude_outbound_ports.clone()) {
        lines.push(format!(
            "-A WEIR_OUTPUT -p tcp -m tcp --dport {port} -j RETURN"
        ));
    }
    let mut cidrs = Vec::new();
    for cidr in r.exclude_outbound_cidrs.iter().map(Cidr::to_string) {
        if !cidrs.contains(&cidr) {
            cidrs.push(cidr);
        }
    }
    for cidr in cidrs {
        lines.push(format!("-A WEIR_OUTPUT -d {cidr} -j RETURN"));
    }
    lines.push("-A WEIR_OUTPUT -p tcp -j WEIR_REDIRECT".to_string());
    lines.push("-A PREROUTING -p tcp -j WEIR_INBOUND".to_string());
    lines.push("-A OUTPUT -p tcp -j WEIR_OUTPUT".to_string());
    lines
}

/// Ports in their given order, each once (a repeated port would be a repeated rule).
fn dedup(ports: Vec<u16>) -> Vec<u16> {
    let mut out = Vec::new();
    for p in ports {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The install script for a namespace without weir's rules (what `--dry-run` prints).
pub fn install(r: &Redirect) -> String {
    script(&[], &rules(r))
}

/// The install script given what `iptables-save -t nat` shows now: weir's jumps are removed
/// first and its chains re-declared (which flushes them), in one transaction, so running
/// install twice leaves one copy of every rule and never a moment without them.
pub fn reinstall(r: &Redirect, saved: &str) -> String {
    script(&jumps_into_weir(saved), &rules(r))
}

/// The script removing weir's jumps and chains as `saved` shows them; `None` when none of
/// them is there (removal is then nothing to do, so it can run any number of times).
pub fn cleanup(saved: &str) -> Option<String> {
    let jumps = jumps_into_weir(saved);
    let chains = weir_chains(saved);
    if jumps.is_empty() && chains.is_empty() {
        return None;
    }
    let mut lines = jumps;
    lines.extend(chains.iter().map(|c| format!("-F {c}")));
    lines.extend(chains.iter().map(|c| format!("-X {c}")));
    Some(script(&[], &lines))
}

/// Whether `saved` shows any of weir's chains.
pub fn installed(saved: &str) -> bool {
    !weir_chains(saved).is_empty()
}

fn script(first: &[String], then: &[String]) -> String {
    let mut out = String::from("*nat\n");
    for line in first.iter().chain(then) {
        let _ = writeln!(out, "{line}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The nat table's lines of an `iptables-save` output (which may hold other tables).
fn nat_lines(saved: &str) -> impl Iterator<Item = &str> {
    let mut in_nat = false;
    saved.lines().map(str::trim).filter(move |line| {
        if line.starts_with('*') {
            in_nat = *line == "*nat";
            return false;
        }
        in_nat && !line.starts_with('#')
    })
}

/// `-D` for every rule of a chain not weir's that jumps into one of weir's chains.
fn jumps_into_weir(saved: &str) -> Vec<String> {
    nat_lines(saved)
        .filter_map(|line| {
            let rule = line.strip_prefix("-A ")?;
            let (chain, _) = rule.split_once(' ')?;
            if CHAINS.contains(&chain) {
                return None;
            }
            let mut words = rule.split_whitespace();
            let target = words.by_ref().skip_while(|w| *w != "-j").nth(1)?;
            CHAINS.contains(&target).then(|| format!("-D {rule}"))
        })
        .collect()
}

/// weir's chains that `saved` declares, in weir's order.
fn weir_chains(saved: &str) -> Vec<&'static str> {
    let declared: Vec<&str> = nat_lines(saved)
        .filter_map(|line| line.strip_prefix(':')?.split_whitespace().next())
        .collect();
    CHAINS
        .iter()
        .copied()
        .filter(|c| declared.contains(c))
        .collect()
}

#[cfg(test)]
#[path = "script_tests.rs"]
mod tests;
