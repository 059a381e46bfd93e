//! What a peer's certificate must be beyond chaining to the trust bundle: a SPIFFE
//! X.509-SVID, with exactly one URI SAN, a `spiffe://` ID in this mesh's trust domain.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use x509_parser::extensions::GeneralName;

/// The SPIFFE ID of a certificate: its one URI SAN, which must be a `spiffe://` URI with a
/// trust domain and a path. Anything else says why it is not an identity.
pub fn spiffe_id(cert: &CertificateDer<'_>) -> Result<String, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| format!("its subjectAltName does not parse: {e}"))?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(uri) => Some(*uri),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [] => Err("the certificate has no URI SAN, so no SPIFFE ID".to_string()),
        [uri] if is_spiffe_id(uri) => Ok((*uri).to_string()),
        [uri] => Err(format!(
            "its URI SAN {} is not a SPIFFE ID (spiffe://TRUST-DOMAIN/PATH, segments of letters, digits, `.`, `-`, `_`)",
            uri.escape_debug()
        )),
        many => Err(format!(
            "the certificate has {} URI SANs; a SPIFFE identity has exactly one",
            many.len()
        )),
    }
}

/// An identity a listener allows, a route matches or a service expects: an exact SPIFFE ID,
/// or a prefix of whole path segments (`spiffe://cluster.local/ns/shop/*`; the configuration
/// accepts `*` only right after a `/`, so a pattern never reaches into a longer name or
/// another trust domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityPattern {
    text: String,
    prefix: bool,
}

impl IdentityPattern {
    /// The pattern as configured.
    pub fn new(pattern: &str) -> Self {
        match pattern.strip_suffix('*') {
            Some(prefix) => IdentityPattern {
                text: prefix.to_string(),
                prefix: true,
            },
            None => IdentityPattern {
                text: pattern.to_string(),
                prefix: false,
            },
        }
    }

    /// Whether `id` is this identity, or under this prefix.
    pub fn matches(&self, id: &str) -> bool {
        match self.prefix {
            true => id.starts_with(&self.text),
            false => id == self.text,
        }
    }
}

/// Whether `uri` is a SPIFFE ID as the SPIFFE standard defines it: `spiffe://`, a trust
/// domain of lower-case letters, digits, `.`, `-`, `_`, and a path of one or more segments
/// of letters, digits, `.`, `-`, `_` (no empty, `.` or `..` segment, no query, fragment or
/// percent-encoding). Anything looser could dodge a prefix (`ns/shop/../ops`) or carry a
/// line break into a log.
fn is_spiffe_id(uri: &str) -> bool {
    let Some((domain, path)) = uri
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return false;
    };
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let segments_ok = path.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    });
    domain_ok && segments_ok && uri.len() <= 2048
}

/// The trust domain of a SPIFFE ID (`cluster.local` of `spiffe://cluster.local/ns/a/sa/b`).
pub fn trust_domain(id: &str) -> &str {
    id.strip_prefix("spiffe://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
}

/// Verifies client certificates: the chain (by rustls's WebPKI verifier over the trust
/// bundle), then the SPIFFE rules. A client that fails either gets a TLS alert, before any
/// byte of HTTP.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    chain: Arc<dyn ClientCertVerifier>,
    trust_domain: String,
}

impl SpiffeClientVerifier {
    /// Checks chains with `chain` and identities against `trust_domain`.
    pub fn new(chain: Arc<dyn ClientCertVerifier>, trust_domain: String) -> Self {
        SpiffeClientVerifier {
            chain,
            trust_domain,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .chain
            .verify_client_cert(end_entity, intermediates, now)?;
        let id = spiffe_id(end_entity).map_err(refused)?;
        if trust_domain(&id) != self.trust_domain {
            return Err(refused(format!(
                "peer {id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// Verifies an upstream sidecar's certificate: the chain against the trust bundle (no
/// host name: mesh certificates name a SPIFFE ID, not a host), then its SPIFFE ID against
/// the identity the service expects (exact, or a prefix ending in `*`).
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    expected: String,
    pattern: IdentityPattern,
    trust_domain: String,
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    /// Expects `expected` (in `trust_domain`) from servers whose chains end in `roots`.
    pub fn new(
        roots: Arc<RootCertStore>,
        expected: String,
        trust_domain: String,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        SpiffeServerVerifier {
            roots,
            pattern: IdentityPattern::new(&expected),
            expected,
            trust_domain,
            provider,
        }
    }
}

/// A certificate refused for what it says, with the reason in words (rustls shows it as
/// "invalid peer certificate: REASON").
fn refused(why: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(why)))))
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let id = spiffe_id(end_entity).map_err(refused)?;
        if trust_domain(&id) != self.trust_domain {
            return Err(refused(format!(
                "peer {id} is not in trust domain {}",
                self.trust_domain
            )));
        }
        if !self.pattern.matches(&id) {
            return Err(refused(format!(
                "identity mismatch: expected {}, got {id}",
                self.expected
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_spiffe_ids_by_the_standard_are_identities() {
        for good in [
            "spiffe://cluster.local/ns/shop/sa/frontend",
            "spiffe://example.org/a_b/c-d/e.f",
        ] {
            assert!(is_spiffe_id(good), "{good}");
        }
        for bad in [
            "spiffe://cluster.local",
            "spiffe://cluster.local/",
            "spiffe://cluster.local/ns/shop/sa/a/../../ops",
            "spiffe://cluster.local/ns//sa/a",
            "spiffe://Cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a/sa/b?x=1",
            "spiffe://cluster.local/ns/a%2f/sa/b",
            "spiffe://cluster.local/ns/a/sa/b\nforged=1",
            "https://cluster.local/ns/a/sa/b",
        ] {
            assert!(!is_spiffe_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_pattern_matches_its_identity_or_whole_segments_under_its_prefix() {
        let exact = IdentityPattern::new("spiffe://cluster.local/ns/shop/sa/frontend");
        assert!(exact.matches("spiffe://cluster.local/ns/shop/sa/frontend"));
        assert!(!exact.matches("spiffe://cluster.local/ns/shop/sa/frontend2"));
        let namespace = IdentityPattern::new("spiffe://cluster.local/ns/shop/*");
        assert!(namespace.matches("spiffe://cluster.local/ns/shop/sa/a"));
        assert!(!namespace.matches("spiffe://cluster.local/ns/shopping/sa/a"));
        assert!(!namespace.matches("spiffe://cluster.local.evil/ns/shop/sa/a"));
    }
}
