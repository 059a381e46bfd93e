//! SPIFFE IDs of Kubernetes workloads: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! The one place that says which names are valid. A [`TrustDomain`] or a [`SpiffeId`] exists
//! only once validated, so code that holds one (minting, peer verification, `allow` lists)
//! never checks again. The rules are the intersection of what SPIFFE and Kubernetes allow:
//!
//! - trust domain: lower-case letters, digits, `-` and `.`, in dot-separated labels that start
//!   and end with a letter or digit, at most 255 characters (`cluster.local`). SPIFFE also
//!   allows `_`; weir does not, so that a trust domain is always a DNS-style name;
//! - namespace: a Kubernetes namespace, an RFC 1123 label: lower-case letters, digits and `-`,
//!   starting and ending with a letter or digit, at most 63 characters;
//! - service account: a Kubernetes object name, an RFC 1123 subdomain: like a trust domain, at
//!   most 253 characters.
//!
//! Nothing is normalized: `Shop` is refused (with "did you mean `shop`?"), not lower-cased,
//! because a SPIFFE ID is compared byte for byte.

use std::fmt;
use std::str::FromStr;

/// The scheme every SPIFFE ID starts with.
pub const SCHEME: &str = "spiffe://";

/// The longest SPIFFE ID the SPIFFE specification allows, in bytes.
pub const MAX_ID_LEN: usize = 2048;

const MAX_TRUST_DOMAIN_LEN: usize = 255;
const MAX_NAMESPACE_LEN: usize = 63;
const MAX_SUBDOMAIN_LEN: usize = 253;

/// A SPIFFE trust domain such as `cluster.local`: the name of a mesh's root of trust.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

/// The identity of a Kubernetes workload: its trust domain, namespace and service account.
///
/// Displays as `spiffe://cluster.local/ns/shop/sa/reviews`, and parses back from that.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    namespace: String,
    service_account: String,
}

/// Which part of a SPIFFE ID a [`SpiffeIdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The trust domain (`cluster.local`).
    TrustDomain,
    /// The Kubernetes namespace.
    Namespace,
    /// The Kubernetes service account.
    ServiceAccount,
    /// Another Kubernetes object name, such as a Secret's.
    ObjectName,
    /// The SPIFFE ID as a whole: its scheme, shape or length.
    Id,
}

/// A name or SPIFFE ID that is not valid, with what is wrong and how to write it instead.
///
/// Made only by this module's validation, so its message always has the same shape:
/// ``invalid namespace `Shop`: it has the upper-case letter `S`; … did you mean `shop`?``
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeIdError {
    part: Part,
    value: String,
    problem: String,
}

// === impl TrustDomain ===

impl TrustDomain {
    /// Validates a trust domain such as `cluster.local`.
    pub fn new(name: &str) -> Result<TrustDomain, SpiffeIdError> {
        check_dns_name(Part::TrustDomain, name, MAX_TRUST_DOMAIN_LEN, true)?;
        Ok(TrustDomain(name.to_string()))
    }

    /// Parses the SPIFFE ID of a trust domain itself, `spiffe://cluster.local` (as a CA or a
    /// trust bundle carries it).
    pub fn from_id(id: &str) -> Result<TrustDomain, SpiffeIdError> {
        let rest = strip_scheme(id)?;
        if rest.contains('/') {
            return Err(SpiffeIdError::new(
                Part::Id,
                id,
                "it has a path; the SPIFFE ID of a trust domain is `spiffe://<trust-domain>` alone",
            ));
        }
        TrustDomain::new(rest)
    }

    /// The trust domain's name, `cluster.local`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain's own SPIFFE ID, `spiffe://cluster.local`.
    pub fn id(&self) -> String {
        format!("{SCHEME}{}", self.0)
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::new(s)
    }
}

// === impl SpiffeId ===

impl SpiffeId {
    /// The SPIFFE ID of service account `service_account` in `namespace`, both validated.
    pub fn new(
        trust_domain: TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<SpiffeId, SpiffeIdError> {
        check_namespace(namespace)?;
        check_service_account(service_account)?;
        Ok(SpiffeId {
            trust_domain,
            namespace: namespace.to_string(),
            service_account: service_account.to_string(),
        })
    }

    /// Parses `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`, exactly: no other
    /// path, no trailing `/`, no query, fragment, port or user.
    pub fn parse(id: &str) -> Result<SpiffeId, SpiffeIdError> {
        if id.len() > MAX_ID_LEN {
            return Err(SpiffeIdError::new(
                Part::Id,
                &id.chars().take(40).chain("…".chars()).collect::<String>(),
                &format!(
                    "it is {} bytes long; a SPIFFE ID has at most {MAX_ID_LEN}",
                    id.len()
                ),
            ));
        }
        let rest = strip_scheme(id)?;
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        let trust_domain = TrustDomain::new(domain)?;
        let shape = || {
            SpiffeIdError::new(
                Part::Id,
                id,
                "a workload's SPIFFE ID is `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`",
            )
        };
        let mut segments = path.split('/');
        let (Some("ns"), Some(namespace), Some("sa"), Some(service_account), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(shape());
        };
        SpiffeId::new(trust_domain, namespace, service_account)
    }

    /// The trust domain, `cluster.local`.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Kubernetes service account.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

// === impl SpiffeIdError ===

impl SpiffeIdError {
    fn new(part: Part, value: &str, problem: &str) -> SpiffeIdError {
        SpiffeIdError {
            part,
            value: value.to_string(),
            problem: problem.to_string(),
        }
    }

    /// Which part of the ID is wrong.
    pub fn part(&self) -> Part {
        self.part
    }
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.part {
            Part::TrustDomain => "trust domain",
            Part::Namespace => "namespace",
            Part::ServiceAccount => "service account",
            Part::ObjectName => "Kubernetes object name",
            Part::Id => "SPIFFE ID",
        };
        write!(f, "invalid {what} `{}`: {}", self.value, self.problem)
    }
}

impl std::error::Error for SpiffeIdError {}

// === validation ===

/// Validates a Kubernetes namespace (an RFC 1123 label).
pub fn check_namespace(name: &str) -> Result<(), SpiffeIdError> {
    check_dns_name(Part::Namespace, name, MAX_NAMESPACE_LEN, false)
}

/// Validates a Kubernetes service account name (an RFC 1123 subdomain).
pub fn check_service_account(name: &str) -> Result<(), SpiffeIdError> {
    check_dns_name(Part::ServiceAccount, name, MAX_SUBDOMAIN_LEN, true)
}

/// Validates the name of another Kubernetes object, such as a Secret (an RFC 1123 subdomain).
pub fn check_object_name(name: &str) -> Result<(), SpiffeIdError> {
    check_dns_name(Part::ObjectName, name, MAX_SUBDOMAIN_LEN, true)
}

/// `id` without its `spiffe://`, or why it has none.
fn strip_scheme(id: &str) -> Result<&str, SpiffeIdError> {
    if let Some(rest) = id.strip_prefix(SCHEME) {
        return Ok(rest);
    }
    let problem = if id
        .get(..SCHEME.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME))
    {
        "the scheme must be written in lower case, `spiffe://`"
    } else {
        "it does not start with `spiffe://`"
    };
    Err(SpiffeIdError::new(Part::Id, id, problem))
}

/// Lower-case letters, digits and `-` in labels that start and end with a letter or digit;
/// labels separated by `.` when `dots`; at most `max` characters.
fn check_dns_name(part: Part, name: &str, max: usize, dots: bool) -> Result<(), SpiffeIdError> {
    let rule = if dots {
        format!(
            "use lower-case letters, digits, `-` and `.`, with a letter or digit at both ends of \
             every dot-separated part, at most {max} characters"
        )
    } else {
        format!(
            "use lower-case letters, digits and `-`, starting and ending with a letter or digit, \
             at most {max} characters"
        )
    };
    let fail = |problem: String| {
        Err(SpiffeIdError::new(
            part,
            name,
            &format!("{problem}; {rule}"),
        ))
    };
    if name.is_empty() {
        return fail("it is empty".to_string());
    }
    if name.len() > max {
        return fail(format!("it is {} characters long", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        let lower = name.to_ascii_lowercase();
        let hint = if c.is_ascii_uppercase() && check_dns_name(part, &lower, max, dots).is_ok() {
            format!("; did you mean `{lower}`?")
        } else {
            String::new()
        };
        let what = if c.is_ascii_uppercase() {
            format!("it has the upper-case letter `{c}`")
        } else if c.is_whitespace() || c.is_control() {
            format!("it has the character {c:?}")
        } else {
            format!("it has the character `{c}`")
        };
        return Err(SpiffeIdError::new(
            part,
            name,
            &format!("{what}; {rule}{hint}"),
        ));
    }
    if !dots && name.contains('.') {
        return fail("it has a `.`".to_string());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return fail("it has an empty part between dots or at an end".to_string());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fail(format!("`{label}` starts or ends with `-`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).expect("valid trust domain")
    }

    #[test]
    fn a_workload_id_parses_and_prints_back_the_same() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/reviews").expect("valid");
        assert_eq!(id.trust_domain().as_str(), "cluster.local");
        assert_eq!(id.namespace(), "shop");
        assert_eq!(id.service_account(), "reviews");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/shop/sa/reviews");
        assert_eq!(
            "spiffe://cluster.local/ns/shop/sa/reviews".parse::<SpiffeId>(),
            Ok(id)
        );
    }

    #[test]
    fn new_formats_the_kubernetes_shape() {
        let id = SpiffeId::new(td("example.org"), "kube-system", "coredns.v1").expect("valid");
        assert_eq!(
            id.to_string(),
            "spiffe://example.org/ns/kube-system/sa/coredns.v1"
        );
    }

    #[test]
    fn ids_of_another_shape_are_refused_with_the_shape() {
        for id in [
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe://cluster.local/ns/shop",
            "spiffe://cluster.local/ns/shop/sa/",
            "spiffe://cluster.local/ns/shop/sa/reviews/",
            "spiffe://cluster.local/ns/shop/sa/reviews/extra",
            "spiffe://cluster.local/sa/reviews/ns/shop",
            "spiffe://cluster.local//ns/shop/sa/reviews",
        ] {
            let err = SpiffeId::parse(id).expect_err(id);
            assert!(
                err.to_string()
                    .contains("/ns/<namespace>/sa/<service-account>")
                    || err.part() != Part::Id,
                "{id}: {err}"
            );
        }
        let err = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/").expect_err("empty sa");
        assert_eq!(err.part(), Part::ServiceAccount);
    }

    #[test]
    fn the_scheme_is_required_in_lower_case() {
        let err = SpiffeId::parse("SPIFFE://cluster.local/ns/a/sa/b").expect_err("upper");
        assert_eq!(err.part(), Part::Id);
        assert!(err.to_string().contains("lower case"), "{err}");
        let err = SpiffeId::parse("https://cluster.local/ns/a/sa/b").expect_err("https");
        assert!(err.to_string().contains("does not start with `spiffe://`"));
        assert!(SpiffeId::parse("").is_err());
        assert!(SpiffeId::parse("spiffe:").is_err());
    }

    #[test]
    fn query_fragment_port_user_and_percent_encoding_are_refused() {
        for id in [
            "spiffe://cluster.local/ns/shop/sa/reviews?x=1",
            "spiffe://cluster.local/ns/shop/sa/reviews#f",
            "spiffe://cluster.local:443/ns/shop/sa/reviews",
            "spiffe://user@cluster.local/ns/shop/sa/reviews",
            "spiffe://cluster.local/ns/sh%6Fp/sa/reviews",
            "spiffe://cluster.local/ns/shop/sa/re views",
        ] {
            assert!(SpiffeId::parse(id).is_err(), "{id}");
        }
    }

    #[test]
    fn upper_case_is_refused_with_a_suggestion() {
        let err = SpiffeId::new(td("cluster.local"), "Shop", "reviews").expect_err("upper");
        assert_eq!(err.part(), Part::Namespace);
        let msg = err.to_string();
        assert!(msg.starts_with("invalid namespace `Shop`: "), "{msg}");
        assert!(msg.contains("upper-case letter `S`"), "{msg}");
        assert!(msg.ends_with("did you mean `shop`?"), "{msg}");
        let err = TrustDomain::new("Cluster.Local").expect_err("upper");
        assert!(err.to_string().ends_with("did you mean `cluster.local`?"));
    }

    #[test]
    fn namespaces_are_rfc1123_labels() {
        for ok in ["a", "shop", "kube-system", "a1", "1a", &"x".repeat(63)] {
            assert_eq!(check_namespace(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            ("-shop", "starts or ends with `-`"),
            ("shop-", "starts or ends with `-`"),
            ("shop.v1", "has a `.`"),
            ("shop_v1", "character `_`"),
            ("shöp", "character `ö`"),
            ("sh op", "character ' '"),
            (&"x".repeat(64), "64 characters long"),
        ] {
            let err = check_namespace(bad).expect_err(bad);
            assert_eq!(err.part(), Part::Namespace);
            assert!(err.to_string().contains(says), "{bad}: {err}");
            assert!(err.to_string().contains("at most 63 characters"), "{err}");
        }
    }

    #[test]
    fn service_accounts_and_trust_domains_are_rfc1123_subdomains() {
        for ok in ["default", "reviews.v2", "a.b-c.d", &"x".repeat(253)] {
            assert_eq!(check_service_account(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a.-b", "a_b", "A", &"x".repeat(254)] {
            assert!(check_service_account(bad).is_err(), "{bad}");
        }
        for ok in ["cluster.local", "example.org", "td", "prod-1.example.com"] {
            assert!(TrustDomain::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "cluster.local.",
            "clu_ster",
            "a/b",
            "x:1",
            &"x".repeat(256),
        ] {
            let err = TrustDomain::new(bad).expect_err(bad);
            assert_eq!(err.part(), Part::TrustDomain, "{bad}");
        }
    }

    #[test]
    fn a_trust_domain_id_has_no_path() {
        assert_eq!(
            TrustDomain::from_id("spiffe://cluster.local"),
            Ok(td("cluster.local"))
        );
        assert_eq!(td("cluster.local").id(), "spiffe://cluster.local");
        assert!(TrustDomain::from_id("spiffe://cluster.local/").is_err());
        assert!(TrustDomain::from_id("spiffe://cluster.local/ns/a/sa/b").is_err());
        assert!(TrustDomain::from_id("cluster.local").is_err());
    }

    #[test]
    fn an_overlong_id_is_refused_without_echoing_all_of_it() {
        let id = format!("spiffe://cluster.local/ns/a/sa/{}", "b".repeat(3000));
        let err = SpiffeId::parse(&id).expect_err("too long");
        assert_eq!(err.part(), Part::Id);
        assert!(err.to_string().len() < 200, "{err}");
    }

    proptest! {
        #[test]
        fn valid_parts_round_trip(
            domain in "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}",
            ns in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
            sa in "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
        ) {
            prop_assume!(!sa.contains("..") && !sa.contains(".-") && !sa.contains("-."));
            let id = SpiffeId::new(td(&domain), &ns, &sa).expect("valid parts");
            prop_assert_eq!(SpiffeId::parse(&id.to_string()), Ok(id));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,60}") {
            let _ = SpiffeId::parse(&s);
            let _ = SpiffeId::parse(&format!("spiffe://{s}"));
            let _ = TrustDomain::from_id(&s);
        }
    }
}
