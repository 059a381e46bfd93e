//! An IPv4 network as `iptables-save` prints it (`10.0.0.0/8`, host bits cleared), so the
//! rules weir writes read back exactly as written.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network to leave alone (`--exclude-outbound-cidrs`): parsed once, printed in
/// iptables' own form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/len` or a bare address (a /32); host bits are cleared as iptables does.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let prefix = p
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= 32)
                    .ok_or_else(|| format!("{s}: the prefix length must be 0 to 32"))?;
                (a, prefix)
            }
            None => (s, 32),
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            if addr.contains(':') {
                format!("{s}: weir init-iptables writes IPv4 rules only; give an IPv4 network")
            } else {
                format!("{s}: not an IPv4 network (expected a.b.c.d/len)")
            }
        })?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Cidr {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Result<String, String> {
        s.parse::<Cidr>().map(|c| c.to_string())
    }

    #[test]
    fn prints_networks_as_iptables_save_does() {
        assert_eq!(cidr("10.1.2.3/8"), Ok("10.0.0.0/8".to_string()));
        assert_eq!(cidr("192.168.0.7"), Ok("192.168.0.7/32".to_string()));
        assert_eq!(cidr("0.0.0.0/0"), Ok("0.0.0.0/0".to_string()));
        assert_eq!(
            cidr("169.254.169.254/32"),
            Ok("169.254.169.254/32".to_string())
        );
    }

    #[test]
    fn refuses_what_is_not_an_ipv4_network() {
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("10.0.0/8").is_err());
        assert!(cidr("10.0.0.0/").is_err());
        assert!(cidr("fd00::/8").is_err_and(|e| e.contains("IPv4 rules only")));
    }
}
