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
        [uri] => match uri.strip_prefix("spiffe://") {
            Some(rest)
                if rest
                    .split_once('/')
                    .is_some_and(|(td, path)| !td.is_empty() && !path.is_empty()) =>
            {
                Ok((*uri).to_string())
            }
            _ => Err(format!(
                "its URI SAN {uri} is not a SPIFFE ID (spiffe://TRUST-DOMAIN/PATH)"
            )),
        },
        many => Err(format!(
            "the certificate has {} URI SANs; a SPIFFE identity has exactly one",
            many.len()
        )),
    }
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
    provider: Arc<CryptoProvider>,
}

impl SpiffeServerVerifier {
    /// Expects `expected` from servers whose chains end in `roots`.
    pub fn new(roots: Arc<RootCertStore>, expected: String, provider: Arc<CryptoProvider>) -> Self {
        SpiffeServerVerifier {
            roots,
            expected,
            provider,
        }
    }

    fn expects(&self, id: &str) -> bool {
        match self.expected.strip_suffix('*') {
            Some(prefix) => id.starts_with(prefix),
            None => id == self.expected,
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
        if !self.expects(&id) {
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
