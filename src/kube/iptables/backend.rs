//! Which iptables a namespace uses. iptables-nft and iptables-legacy keep separate rule sets
//! in the kernel; rules written to the one the rest of the pod's network does not use would be
//! silently ignored by nothing and confuse everyone, so weir writes where rules already are.

use std::fmt;

/// An iptables implementation: the nf_tables one, or the older x_tables one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `iptables-nft`: iptables syntax over nf_tables (the default of current distributions).
    Nft,
    /// `iptables-legacy`: the x_tables kernel interface (older nodes and CNIs).
    Legacy,
}

/// `--backend`: a backend, or `auto` to detect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Choice {
    /// Detect: where rules already are, else what `iptables --version` says, else nft.
    #[default]
    Auto,
    /// iptables-nft.
    Nft,
    /// iptables-legacy.
    Legacy,
}

impl Backend {
    /// The name the tools carry (`iptables-nft-restore`) and `--version` prints (`nf_tables`
    /// aside).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }

    /// The backend-specific tool, e.g. `iptables-legacy-save` for `save`.
    pub fn tool(self, verb: &str) -> String {
        format!("iptables-{}-{verb}", self.name())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend an iptables tool's `--version` line names: `iptables v1.8.9 (nf_tables)` or
/// `iptables v1.8.9 (legacy)`; `None` for versions too old to say (they are legacy, but a
/// guess is left to [`choose`]).
pub fn from_version(text: &str) -> Option<Backend> {
    if text.contains("(nf_tables)") {
        Some(Backend::Nft)
    } else if text.contains("(legacy)") {
        Some(Backend::Legacy)
    } else {
        None
    }
}

/// The number of rules (`-A` lines) an `iptables-save` output holds.
pub fn rule_count(saved: &str) -> usize {
    saved.lines().filter(|l| l.starts_with("-A ")).count()
}

/// The backend to write to: the one holding more rules (the node's or the CNI's choice, which
/// weir must follow), else the one `iptables` is, else nft.
pub fn choose(nft_rules: usize, legacy_rules: usize, version: Option<Backend>) -> Backend {
    if legacy_rules > nft_rules {
        Backend::Legacy
    } else if nft_rules > 0 {
        Backend::Nft
    } else {
        version.unwrap_or(Backend::Nft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_line_names_the_backend() {
        assert_eq!(
            from_version("iptables v1.8.9 (nf_tables)\n"),
            Some(Backend::Nft)
        );
        assert_eq!(
            from_version("iptables v1.8.7 (legacy)\n"),
            Some(Backend::Legacy)
        );
        assert_eq!(from_version("iptables v1.6.1\n"), None);
    }

    #[test]
    fn rules_are_the_append_lines_of_a_save() {
        let saved = "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE - [0:0]\n\
                     -A PREROUTING -j KUBE\n-A KUBE -j RETURN\nCOMMIT\n";
        assert_eq!(rule_count(saved), 2);
        assert_eq!(rule_count(""), 0);
    }

    #[test]
    fn existing_rules_decide_before_the_version() {
        assert_eq!(choose(0, 3, Some(Backend::Nft)), Backend::Legacy);
        assert_eq!(choose(5, 3, Some(Backend::Legacy)), Backend::Nft);
        assert_eq!(choose(0, 0, Some(Backend::Legacy)), Backend::Legacy);
        assert_eq!(choose(0, 0, None), Backend::Nft);
        assert_eq!(choose(2, 2, Some(Backend::Legacy)), Backend::Nft);
    }

    #[test]
    fn tools_carry_the_backend_name() {
        assert_eq!(Backend::Nft.tool("restore"), "iptables-nft-restore");
        assert_eq!(Backend::Legacy.tool("save"), "iptables-legacy-save");
    }
}
