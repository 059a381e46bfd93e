//! What a peer's certificate must be beyond chaining to the trust bundle: a SPIFFE
//! X.509-SVID, with exactly one URI SAN, a `spiffe://` ID in this mesh's trust domain.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
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
        let id = spiffe_id(end_entity).map_err(Error::General)?;
        if trust_domain(&id) != self.trust_domain {
            return Err(Error::General(format!(
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
