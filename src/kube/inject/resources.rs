//! The proxy container's resource requests and limits, checked as Kubernetes quantities
//! before any manifest is written (a typo is refused here, not by the API server later).

use std::fmt;
use std::str::FromStr;

use super::yaml::Yaml;

/// A Kubernetes resource quantity such as `100m`, `64Mi` or `1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(String);

/// A string that is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityError(String);

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{:?} is not a Kubernetes quantity: write a number with an optional suffix, such as 100m, 1, 64Mi or 1Gi",
            self.0
        )
    }
}

impl std::error::Error for QuantityError {}

const SUFFIXES: [&str; 14] = [
    "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
];

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Quantity, QuantityError> {
        let digits = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(digits);
        let numeric = !number.is_empty()
            && number != "."
            && number.matches('.').count() <= 1
            && SUFFIXES.contains(&suffix);
        if numeric {
            Ok(Quantity(s.to_string()))
        } else {
            Err(QuantityError(s.to_string()))
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Requests and limits of the proxy container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// CPU the scheduler reserves for weir.
    pub cpu_request: Quantity,
    /// Memory the scheduler reserves for weir.
    pub memory_request: Quantity,
    /// CPU weir may use at most.
    pub cpu_limit: Quantity,
    /// Memory above which weir is killed.
    pub memory_limit: Quantity,
}

impl Default for Resources {
    /// A sidecar's usual footprint: 100m and 64Mi reserved, up to one CPU and 256Mi.
    fn default() -> Resources {
        let q = |s: &str| Quantity(s.to_string());
        Resources {
            cpu_request: q("100m"),
            memory_request: q("64Mi"),
            cpu_limit: q("1"),
            memory_limit: q("256Mi"),
        }
    }
}

impl Resources {
    /// The container's `resources` field.
    pub fn to_yaml(&self) -> Yaml {
        let pair = |cpu: &Quantity, memory: &Quantity| {
            Yaml::map([
                ("cpu", Yaml::str(cpu.to_string())),
                ("memory", Yaml::str(memory.to_string())),
            ])
        };
        Yaml::map([
            ("requests", pair(&self.cpu_request, &self.memory_request)),
            ("limits", pair(&self.cpu_limit, &self.memory_limit)),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_kubernetes_accepts_parse_and_others_are_refused() {
        for ok in ["100m", "1", "0.5", "64Mi", "1Gi", "2k", "1.5G"] {
            assert!(ok.parse::<Quantity>().is_ok(), "{ok}");
        }
        for bad in ["", "m", "64mb", "1..2", "-1", "1 Gi", "."] {
            let err = bad.parse::<Quantity>().expect_err(bad);
            assert!(err.to_string().contains("64Mi"), "{err}");
        }
    }
}
