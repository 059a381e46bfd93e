//! Minting, in memory: a mesh CA, and workload certificates it signs (X.509-SVIDs).
//!
//! What is minted, so that OpenSSL, rustls/webpki and other meshes' SPIFFE code accept it:
//!
//! - the CA: an ECDSA P-256 key; subject `O=weir, CN=weir mesh CA <trust-domain>`;
//!   basicConstraints `CA:TRUE, pathlen:0` (critical: it signs workload certificates only,
//!   no intermediate CAs); keyUsage keyCertSign and cRLSign (critical); one URI SAN, the
//!   trust domain's own ID `spiffe://<trust-domain>`, as SPIFFE trust bundles carry it;
//! - a workload certificate: a fresh ECDSA P-256 key; an empty subject (as SPIFFE's
//!   X.509-SVIDs and Istio's have; the SAN extension is then critical); exactly one SAN, the
//!   URI `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`; basicConstraints
//!   `CA:FALSE` (critical); keyUsage digitalSignature (critical); extendedKeyUsage serverAuth
//!   and clientAuth, since a sidecar is a TLS server to its callers and a client to its
//!   upstreams; subject and authority key identifiers.
//!
//! Both start [`CLOCK_SKEW`] in the past, so that a peer whose clock is a little behind
//! accepts a certificate minted a moment ago. A serial number is derived from the
//! certificate's (fresh) public key. Files on disk are another module's business
//! ([`MeshCa::load`], [`MeshCa::write`], [`Issued::write`]).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::extensions::GeneralName;

use super::lifetime::format_utc;
use super::spiffe::{SpiffeId, SpiffeIdError, TrustDomain};

/// How long a CA is valid unless told otherwise: ten years.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a workload certificate is valid unless told otherwise: a day.
pub const DEFAULT_WORKLOAD_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How far before "now" every certificate starts to be valid, for peers whose clocks lag.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A mesh CA: its certificate and key, ready to sign workload certificates.
///
/// Made by [`MeshCa::new`] (a new CA), [`MeshCa::from_pem`] (a CA minted before) or
/// [`MeshCa::load`] (from a CA directory); whichever way, the certificate was checked to be
/// a CA of one trust domain whose key is the one given.
pub struct MeshCa {
    trust_domain: TrustDomain,
    cert_pem: String,
    key_pem: String,
    not_after: SystemTime,
    issuer: Issuer<'static, KeyPair>,
}

/// A workload certificate and its key, as minted by [`MeshCa::issue`].
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM (`CERTIFICATE`).
    pub cert_pem: String,
    /// Its private key, PEM (PKCS #8, `PRIVATE KEY`).
    pub key_pem: String,
    /// The identity it carries, its only SAN.
    pub spiffe_id: SpiffeId,
    /// When it starts to be valid ([`CLOCK_SKEW`] before it was minted).
    pub not_before: SystemTime,
    /// When it stops being valid.
    pub not_after: SystemTime,
}

/// Why a CA or a workload certificate could not be minted or loaded.
#[derive(Debug)]
pub enum MintError {
    /// A name of the identity is not valid.
    Name(SpiffeIdError),
    /// The lifetime asked for cannot be given: zero, too long, or past the CA's expiry.
    Lifetime(String),
    /// The CA certificate or key is not a usable mesh CA: the message says why.
    InvalidCa(String),
    /// The identity is of another trust domain than the CA's.
    OtherTrustDomain(String),
    /// The cryptography failed (not the caller's fault).
    Crypto(String),
}

// === impl MeshCa ===

impl MeshCa {
    /// Mints a new CA for `trust_domain`, valid from [`CLOCK_SKEW`] ago for `lifetime`.
    pub fn new(trust_domain: TrustDomain, lifetime: Duration) -> Result<MeshCa, MintError> {
        let now = SystemTime::now();
        let (not_before, not_after) = window(now, lifetime)?;
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = ca_subject(&trust_domain);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.subject_alt_names = vec![uri_san(&trust_domain.id())?];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let cert = params.self_signed(&key).map_err(crypto)?;
        // Loaded back as any CA would be, so that a new CA and a loaded one are the same.
        MeshCa::from_pem(&cert.pem(), &key.serialize_pem())
            .map_err(|e| MintError::Crypto(format!("the CA just minted does not load back: {e}")))
    }

    /// A CA from its certificate and key (PEM), as `weir certs ca` wrote them.
    ///
    /// Checked: the certificate is a CA (basicConstraints `CA:TRUE`, keyCertSign if it has a
    /// keyUsage), carries its trust domain as a `spiffe://<trust-domain>` URI SAN, has not
    /// expired, and the key is its key. The first certificate of `cert_pem` is the CA's.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<MeshCa, MintError> {
        let invalid = MintError::InvalidCa;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|_| {
            invalid("the certificate is not PEM (`-----BEGIN CERTIFICATE-----`)".into())
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(invalid(format!(
                "the certificate file holds a `{}`, not a `CERTIFICATE`",
                pem.label
            )));
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| invalid(format!("the certificate cannot be parsed: {e}")))?;
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(invalid(
                "the certificate is not a CA (no basicConstraints CA:TRUE): it may be a \
                 workload certificate; give the CA's"
                    .into(),
            ));
        }
        if let Ok(Some(ku)) = cert.key_usage() {
            if !ku.value.key_cert_sign() {
                return Err(invalid(
                    "the CA certificate's keyUsage does not allow signing certificates (keyCertSign)"
                        .into(),
                ));
            }
        }
        let trust_domain = ca_trust_domain(&cert).map_err(invalid)?;
        let not_after = system_time(cert.validity().not_after.timestamp());
        if not_after <= SystemTime::now() {
            return Err(invalid(format!(
                "the CA expired at {}; mint a new one",
                format_utc(not_after)
            )));
        }
        let key = KeyPair::from_pem(key_pem).map_err(|_| {
            invalid(
                "the key is not a PEM private key (PKCS #8 `PRIVATE KEY` or `EC PRIVATE KEY`)"
                    .into(),
            )
        })?;
        if key.subject_public_key_info() != cert.public_key().raw {
            return Err(invalid(
                "the key is not the CA certificate's key: they come from different CAs".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&pem.contents.clone().into(), key)
            .map_err(|e| invalid(format!("the certificate cannot sign: {e}")))?;
        Ok(MeshCa {
            trust_domain,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            not_after,
            issuer,
        })
    }

    /// Mints a workload certificate for `service_account` in `namespace` of this CA's trust
    /// domain, valid from [`CLOCK_SKEW`] ago for `lifetime`.
    pub fn issue(
        &self,
        namespace: &str,
        service_account: &str,
        lifetime: Duration,
    ) -> Result<Issued, MintError> {
        let id = SpiffeId::new(self.trust_domain.clone(), namespace, service_account)
            .map_err(MintError::Name)?;
        self.issue_for(&id, lifetime)
    }

    /// Mints a workload certificate for `id`, which must be of this CA's trust domain.
    pub fn issue_for(&self, id: &SpiffeId, lifetime: Duration) -> Result<Issued, MintError> {
        if id.trust_domain() != &self.trust_domain {
            return Err(MintError::OtherTrustDomain(format!(
                "the CA signs trust domain `{}`, not `{}` of {id}",
                self.trust_domain,
                id.trust_domain()
            )));
        }
        let now = SystemTime::now();
        let end = now.checked_add(lifetime);
        if end.is_none_or(|end| end > self.not_after) {
            return Err(MintError::Lifetime(format!(
                "a certificate valid for that long would outlive the CA, which expires at {}; \
                 ask for a shorter lifetime or mint a new CA",
                format_utc(self.not_after)
            )));
        }
        let (not_before, not_after) = window(now, lifetime)?;
        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = vec![uri_san(&id.to_string())?];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(crypto)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            spiffe_id: id.clone(),
            not_before: system_time(not_before.unix_timestamp()),
            not_after: system_time(not_after.unix_timestamp()),
        })
    }

    /// The trust domain whose workloads this CA signs.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The CA certificate, PEM: the trust bundle every workload is given.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM (PKCS #8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When the CA stops being valid.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

impl fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshCa")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &format_utc(self.not_after))
            .finish_non_exhaustive()
    }
}

// === impl Issued ===

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("spiffe_id", &self.spiffe_id.to_string())
            .field("not_after", &format_utc(self.not_after))
            .finish_non_exhaustive()
    }
}

// === impl MintError ===

impl MintError {
    /// True when the caller's input is at fault (exit 1), false for a failure of the
    /// machinery (exit 2).
    pub fn is_input(&self) -> bool {
        !matches!(self, MintError::Crypto(_))
    }
}

impl fmt::Display for MintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MintError::Name(e) => e.fmt(f),
            MintError::Lifetime(m) | MintError::InvalidCa(m) | MintError::OtherTrustDomain(m) => {
                f.write_str(m)
            }
            MintError::Crypto(m) => write!(f, "minting failed: {m}"),
        }
    }
}

impl std::error::Error for MintError {}

// === helpers ===

fn crypto(e: rcgen::Error) -> MintError {
    MintError::Crypto(e.to_string())
}

/// `O=weir, CN=weir mesh CA <trust-domain>`.
fn ca_subject(trust_domain: &TrustDomain) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weir");
    dn.push(DnType::CommonName, format!("weir mesh CA {trust_domain}"));
    dn
}

fn uri_san(uri: &str) -> Result<SanType, MintError> {
    // A validated SPIFFE ID is ASCII, so this cannot fail; the error stays typed anyway.
    uri.to_string()
        .try_into()
        .map(SanType::URI)
        .map_err(|e: rcgen::Error| MintError::Crypto(e.to_string()))
}

/// The trust domain of a CA certificate: its one `spiffe://<trust-domain>` URI SAN.
fn ca_trust_domain(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<TrustDomain, String> {
    let missing = || {
        "the CA certificate carries no `spiffe://<trust-domain>` URI SAN; \
         mint the CA with `weir certs ca`"
            .to_string()
    };
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("the CA certificate's subjectAltName cannot be parsed: {e}"))?
        .ok_or_else(missing)?;
    let domains: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(super::spiffe::SCHEME) => Some(*uri),
            _ => None,
        })
        .collect();
    match domains.as_slice() {
        [one] => {
            TrustDomain::from_id(one).map_err(|e| format!("the CA certificate's URI SAN: {e}"))
        }
        [] => Err(missing()),
        _ => Err(format!(
            "the CA certificate carries {} SPIFFE IDs; a mesh CA carries exactly one, \
             `spiffe://<trust-domain>`",
            domains.len()
        )),
    }
}

/// `[now - CLOCK_SKEW, now + lifetime]` as the certificate's validity.
fn window(
    now: SystemTime,
    lifetime: Duration,
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), MintError> {
    if lifetime.is_zero() {
        return Err(MintError::Lifetime(
            "the lifetime is zero; a certificate must be valid for some time".into(),
        ));
    }
    if lifetime > super::lifetime::MAX_LIFETIME {
        return Err(MintError::Lifetime(
            "the lifetime is longer than 100 years; ask for a shorter one".into(),
        ));
    }
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| MintError::Crypto("the system clock is before 1970".into()))?
        .as_secs();
    let at = |secs: u64| {
        i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| MintError::Crypto(format!("{secs} seconds since 1970 is not a date")))
    };
    Ok((
        at(now.saturating_sub(CLOCK_SKEW.as_secs()))?,
        at(now.saturating_add(lifetime.as_secs()))?,
    ))
}

fn system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::oid_registry::{
        OID_KEY_TYPE_EC_PUBLIC_KEY, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_SUBJECT_ALT_NAME,
    };

    const HOUR: Duration = Duration::from_secs(3600);

    fn td(s: &str) -> TrustDomain {
        TrustDomain::new(s).expect("valid trust domain")
    }

    fn ca() -> MeshCa {
        MeshCa::new(td("cluster.local"), 48 * HOUR).expect("a CA")
    }

    fn der(pem: &str) -> Vec<u8> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        pem.contents
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("X.509");
        assert!(rest.is_empty());
        cert
    }

    fn unix(t: SystemTime) -> i64 {
        t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
    }

    /// The certificate's URIs of its SAN extension, and how many SANs it has in all.
    fn uri_sans(cert: &X509Certificate<'_>) -> (Vec<String>, usize) {
        let san = cert
            .subject_alternative_name()
            .expect("parses")
            .expect("has SANs");
        let names = &san.value.general_names;
        let uris = names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u) => Some(u.to_string()),
                _ => None,
            })
            .collect();
        (uris, names.len())
    }

    fn critical(cert: &X509Certificate<'_>, oid: &x509_parser::der_parser::Oid<'_>) -> bool {
        cert.get_extension_unique(oid)
            .expect("unique")
            .expect("present")
            .critical
    }

    /// Asserts `[not_before, not_after]` is `[now - 5m, now + lifetime]`, give or take the
    /// seconds the test took.
    fn assert_window(cert: &X509Certificate<'_>, before: SystemTime, lifetime: Duration) {
        let after = SystemTime::now();
        let nb = cert.validity().not_before.timestamp();
        let na = cert.validity().not_after.timestamp();
        let skew = CLOCK_SKEW.as_secs() as i64;
        let secs = lifetime.as_secs() as i64;
        assert!(
            (unix(before) - skew - 1..=unix(after) - skew).contains(&nb),
            "not before {nb}"
        );
        assert!(
            (unix(before) + secs - 1..=unix(after) + secs).contains(&na),
            "not after {na}"
        );
    }

    #[test]
    fn the_ca_is_a_p256_ca_of_its_trust_domain() {
        let before = SystemTime::now();
        let ca = MeshCa::new(td("example.org"), 10 * 365 * 24 * HOUR).expect("a CA");
        let der = der(ca.cert_pem());
        let cert = parse(&der);
        assert_eq!(ca.trust_domain().as_str(), "example.org");
        assert_eq!(
            cert.subject().to_string(),
            "O=weir, CN=weir mesh CA example.org"
        );
        assert_eq!(cert.subject(), cert.issuer(), "self-signed");
        let bc = cert.basic_constraints().expect("parses").expect("present");
        assert!(bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(0));
        assert!(critical(&cert, &OID_X509_EXT_BASIC_CONSTRAINTS));
        let ku = cert.key_usage().expect("parses").expect("present");
        assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
        assert!(!ku.value.digital_signature());
        assert!(critical(&cert, &OID_X509_EXT_KEY_USAGE));
        assert_eq!(
            uri_sans(&cert),
            (vec!["spiffe://example.org".to_string()], 1)
        );
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        assert_eq!(
            cert.public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string()),
            Some("1.2.840.10045.3.1.7".to_string()),
            "the curve is P-256 (prime256v1)"
        );
        assert!(cert.verify_signature(None).is_ok(), "self-signed signature");
        assert_window(&cert, before, 10 * 365 * 24 * HOUR);
        assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(
            !format!("{ca:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
    }

    #[test]
    fn a_workload_certificate_has_one_uri_san_and_serves_both_sides() {
        let ca = ca();
        let before = SystemTime::now();
        let issued = ca.issue("shop", "reviews", 24 * HOUR).expect("issued");
        assert_eq!(
            issued.spiffe_id.to_string(),
            "spiffe://cluster.local/ns/shop/sa/reviews"
        );
        let der = der(&issued.cert_pem);
        let cert = parse(&der);
        assert_eq!(
            uri_sans(&cert),
            (
                vec!["spiffe://cluster.local/ns/shop/sa/reviews".to_string()],
                1
            )
        );
        assert!(cert.subject().iter().next().is_none(), "empty subject");
        assert!(
            critical(&cert, &OID_X509_EXT_SUBJECT_ALT_NAME),
            "with an empty subject the SAN is critical (RFC 5280)"
        );
        assert_eq!(
            cert.issuer().to_string(),
            "O=weir, CN=weir mesh CA cluster.local"
        );
        let bc = cert.basic_constraints().expect("parses").expect("present");
        assert!(!bc.value.ca);
        assert!(critical(&cert, &OID_X509_EXT_BASIC_CONSTRAINTS));
        let ku = cert.key_usage().expect("parses").expect("present");
        assert!(ku.value.digital_signature());
        assert!(!ku.value.key_cert_sign() && !ku.value.key_encipherment());
        let eku = cert.extended_key_usage().expect("parses").expect("present");
        assert!(eku.value.server_auth && eku.value.client_auth);
        assert!(!eku.value.any && eku.value.other.is_empty());
        let has = |f: fn(&ParsedExtension<'_>) -> bool| {
            cert.iter_extensions().any(|e| f(e.parsed_extension()))
        };
        assert!(has(|e| matches!(
            e,
            ParsedExtension::AuthorityKeyIdentifier(_)
        )));
        assert!(has(|e| matches!(
            e,
            ParsedExtension::SubjectKeyIdentifier(_)
        )));
        let ca_der = super::tests::der(ca.cert_pem());
        let ca_cert = parse(&ca_der);
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
        assert_window(&cert, before, 24 * HOUR);
        assert_eq!(
            unix(issued.not_after),
            cert.validity().not_after.timestamp()
        );
        assert_eq!(
            unix(issued.not_before),
            cert.validity().not_before.timestamp()
        );
        assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(
            !format!("{issued:?}").contains("PRIVATE"),
            "Debug hides the key"
        );
    }

    #[test]
    fn every_workload_certificate_has_its_own_key_and_serial() {
        let ca = ca();
        let a = ca.issue("shop", "reviews", HOUR).expect("a");
        let b = ca.issue("shop", "reviews", HOUR).expect("b");
        assert_ne!(a.key_pem, b.key_pem);
        let (da, db) = (der(&a.cert_pem), der(&b.cert_pem));
        assert_ne!(parse(&da).raw_serial(), parse(&db).raw_serial());
    }

    #[test]
    fn rustls_accepts_a_workload_certificate_as_client_and_as_server() {
        use rustls::pki_types::{CertificateDer, UnixTime};
        let ca = ca();
        let issued = ca.issue("shop", "reviews", HOUR).expect("issued");
        let provider = crate::tls::provider();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(der(ca.cert_pem())))
            .expect("the CA is a trust anchor");
        let leaf = CertificateDer::from(der(&issued.cert_pem));
        let now = UnixTime::now();
        assert_eq!(
            crate::tls::peer::spiffe_id(&leaf).as_deref(),
            Ok("spiffe://cluster.local/ns/shop/sa/reviews"),
            "weir's peer check reads the SPIFFE ID"
        );

        // As a server's certificate: the chain, without a DNS name (SPIFFE peers are
        // verified by their URI SAN).
        let parsed = rustls::server::ParsedCertificate::try_from(&leaf).expect("webpki parses it");
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &roots,
            &[],
            now,
            provider.signature_verification_algorithms.all,
        )
        .expect("valid server certificate");

        // As a client's certificate.
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("a verifier");
        verifier
            .verify_client_cert(&leaf, &[], now)
            .expect("valid client certificate");

        // And not against another mesh's CA.
        let other = MeshCa::new(td("cluster.local"), HOUR).expect("other CA");
        let mut other_roots = rustls::RootCertStore::empty();
        other_roots
            .add(CertificateDer::from(der(other.cert_pem())))
            .expect("anchor");
        let provider = crate::tls::provider();
        assert!(rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &other_roots,
            &[],
            now,
            provider.signature_verification_algorithms.all,
        )
        .is_err());
    }

    #[test]
    fn a_ca_loads_back_from_its_pem_and_signs() {
        let ca = ca();
        let loaded = MeshCa::from_pem(ca.cert_pem(), ca.key_pem()).expect("loads");
        assert_eq!(loaded.trust_domain(), ca.trust_domain());
        assert_eq!(unix(loaded.not_after()), unix(ca.not_after()));
        let issued = loaded.issue("shop", "reviews", HOUR).expect("issued");
        let (ca_der, leaf_der) = (der(ca.cert_pem()), der(&issued.cert_pem));
        let (ca_cert, leaf) = (parse(&ca_der), parse(&leaf_der));
        assert!(leaf.verify_signature(Some(ca_cert.public_key())).is_ok());
        assert_eq!(leaf.issuer(), ca_cert.subject());
    }

    fn invalid_ca(cert_pem: &str, key_pem: &str) -> String {
        match MeshCa::from_pem(cert_pem, key_pem) {
            Err(e @ MintError::InvalidCa(_)) => {
                assert!(e.is_input());
                e.to_string()
            }
            other => panic!("expected InvalidCa, got {other:?}"),
        }
    }

    #[test]
    fn what_is_not_a_mesh_ca_is_refused_with_the_reason() {
        let ca = ca();
        let other = MeshCa::new(td("cluster.local"), HOUR).expect("other");
        let leaf = ca.issue("shop", "reviews", HOUR).expect("leaf");
        for (cert, key, says) in [
            ("", ca.key_pem(), "not PEM"),
            ("hello", ca.key_pem(), "not PEM"),
            (ca.key_pem(), ca.key_pem(), "holds a `PRIVATE KEY`"),
            (leaf.cert_pem.as_str(), leaf.key_pem.as_str(), "not a CA"),
            (
                ca.cert_pem(),
                other.key_pem(),
                "not the CA certificate's key",
            ),
            (ca.cert_pem(), "", "not a PEM private key"),
            (ca.cert_pem(), ca.cert_pem(), "not a PEM private key"),
        ] {
            let msg = invalid_ca(cert, key);
            assert!(msg.contains(says), "{says}: {msg}");
        }
        let garbled = ca.cert_pem().replacen("MII", "MIJ", 1);
        assert!(MeshCa::from_pem(&garbled, ca.key_pem()).is_err());
    }

    /// A CA certificate made with rcgen directly, to hold what `MeshCa::new` never makes.
    fn foreign_ca(sans: Vec<SanType>, not_after: time::OffsetDateTime) -> (String, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.subject_alt_names = sans;
        params.not_after = not_after;
        let cert = params.self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(s.to_string().try_into().expect("ia5"))
    }

    #[test]
    fn a_ca_needs_exactly_one_trust_domain_and_time_left() {
        let far = rcgen::date_time_ymd(2200, 1, 1);
        let (cert, key) = foreign_ca(vec![], far);
        assert!(invalid_ca(&cert, &key).contains("no `spiffe://<trust-domain>` URI SAN"));
        let (cert, key) = foreign_ca(vec![uri("https://example.org")], far);
        assert!(invalid_ca(&cert, &key).contains("no `spiffe://<trust-domain>` URI SAN"));
        let (cert, key) = foreign_ca(vec![uri("spiffe://a.org"), uri("spiffe://b.org")], far);
        assert!(invalid_ca(&cert, &key).contains("carries 2 SPIFFE IDs"));
        let (cert, key) = foreign_ca(vec![uri("spiffe://a.org/ns/x/sa/y")], far);
        assert!(invalid_ca(&cert, &key).contains("it has a path"));
        let (cert, key) = foreign_ca(
            vec![uri("spiffe://a.org")],
            rcgen::date_time_ymd(2001, 1, 1),
        );
        assert!(invalid_ca(&cert, &key).contains("the CA expired at 2001-01-01 00:00:00 UTC"));
        let (cert, key) = foreign_ca(vec![uri("spiffe://a.org")], far);
        let ca = MeshCa::from_pem(&cert, &key).expect("a CA minted elsewhere loads");
        assert_eq!(ca.trust_domain().as_str(), "a.org");
    }

    #[test]
    fn a_workload_certificate_never_outlives_its_ca() {
        let ca = MeshCa::new(td("cluster.local"), 2 * HOUR).expect("ca");
        let err = ca.issue("shop", "reviews", 3 * HOUR).expect_err("outlives");
        assert!(matches!(err, MintError::Lifetime(_)));
        assert!(err.to_string().contains("would outlive the CA"), "{err}");
        assert!(ca.issue("shop", "reviews", HOUR).is_ok());
    }

    #[test]
    fn bad_names_lifetimes_and_trust_domains_are_input_errors() {
        let ca = ca();
        let err = ca
            .issue("Shop", "reviews", HOUR)
            .expect_err("bad namespace");
        assert!(matches!(err, MintError::Name(_)) && err.is_input());
        let err = ca.issue("shop", "", HOUR).expect_err("bad service account");
        assert!(matches!(err, MintError::Name(_)));
        let err = ca
            .issue("shop", "reviews", Duration::ZERO)
            .expect_err("zero");
        assert!(matches!(err, MintError::Lifetime(_)) && err.is_input());
        let id = SpiffeId::new(td("other.org"), "shop", "reviews").expect("id");
        let err = ca.issue_for(&id, HOUR).expect_err("other trust domain");
        assert!(matches!(err, MintError::OtherTrustDomain(_)) && err.is_input());
        assert!(
            err.to_string().contains("`cluster.local`, not `other.org`"),
            "{err}"
        );
        let err = MeshCa::new(td("x.org"), Duration::ZERO).expect_err("zero");
        assert!(matches!(err, MintError::Lifetime(_)));
    }
}
