//! This workload's identity as the configuration's `identity` names it: the certificate
//! chain it presents, its private key, and the trust bundle its peers must chain to. From
//! them come the TLS settings of inbound listeners.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::peer::{self, SpiffeClientVerifier, SpiffeServerVerifier};
use crate::config;

/// Why an identity could not be loaded: the file, and what is wrong with it.
#[derive(Debug)]
pub struct IdentityError {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong, in the user's terms.
    pub why: String,
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for IdentityError {}

/// A loaded, checked identity.
#[derive(Debug)]
pub struct Identity {
    /// This workload's SPIFFE ID (the certificate's one URI SAN).
    pub spiffe_id: String,
    /// When the certificate expires (seconds since the Unix epoch).
    pub not_after: i64,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Arc<RootCertStore>,
    /// The trust bundle's certificates as read (to tell a changed bundle).
    bundle: Vec<CertificateDer<'static>>,
}

impl Identity {
    /// Reads and checks the three files: the certificate is a SPIFFE X.509-SVID, the key
    /// matches it, and the trust bundle holds at least one CA.
    pub fn load(files: &config::Identity) -> Result<Self, IdentityError> {
        let fail = |path: &Path, why: String| IdentityError {
            path: path.to_path_buf(),
            why,
        };
        let chain = certificates(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
            fail(
                &files.key,
                format!("no PEM private key could be read ({e}); write the key as PEM (PKCS#8, SEC1 or PKCS#1)"),
            )
        })?;
        let mut roots = RootCertStore::empty();
        let bundle = certificates(&files.trust_bundle)?;
        for ca in bundle.iter().cloned() {
            roots.add(ca).map_err(|e| {
                fail(
                    &files.trust_bundle,
                    format!("a certificate is not a usable trust anchor: {e}"),
                )
            })?;
        }
        let leaf = &chain[0];
        let spiffe_id = peer::spiffe_id(leaf).map_err(|why| fail(&files.cert, why))?;
        let (not_before, not_after) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| {
                let v = c.validity();
                (v.not_before.timestamp(), v.not_after.timestamp())
            })
            .map_err(|e| fail(&files.cert, format!("the certificate does not parse: {e}")))?;
        chains_to(&chain, &roots, not_before, not_after).map_err(|why| {
            fail(
                &files.cert,
                format!(
                    "the certificate does not chain to the trust bundle {}: {why}",
                    files.trust_bundle.display()
                ),
            )
        })?;
        let identity = Identity {
            spiffe_id,
            not_after,
            chain,
            key,
            roots: Arc::new(roots),
            bundle,
        };
        // Building the settings proves the key belongs to the certificate.
        identity
            .server_config()
            .map_err(|why| fail(&files.key, why))?;
        Ok(identity)
    }

    /// Whether `other` was read from the same certificate, key and trust bundle.
    pub fn same_files_as(&self, other: &Identity) -> bool {
        self.chain == other.chain
            && self.key.secret_der() == other.key.secret_der()
            && self.bundle == other.bundle
    }

    /// The trust domain this workload and its peers belong to.
    pub fn trust_domain(&self) -> &str {
        peer::trust_domain(&self.spiffe_id)
    }

    /// TLS settings for an inbound listener: present this identity, require a client
    /// certificate that chains to the trust bundle and is a SPIFFE ID of this trust domain,
    /// and offer HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = super::provider();
        let chain =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("the trust bundle cannot verify clients: {e}"))?;
        let verifier = SpiffeClientVerifier::new(chain, self.trust_domain().to_string());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("no TLS version is available: {e}"))?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("the key does not match the certificate: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Identity {
    /// TLS settings for connections to a service whose sidecars must present `expected`
    /// (an exact SPIFFE ID or a prefix ending in `*`): present this identity, verify the
    /// server's chain against the trust bundle and its ID against `expected`, offer `alpn`.
    /// Sessions are resumed across connections to the same endpoint (rustls's in-memory
    /// cache, keyed by the endpoint's address).
    pub fn client_config(&self, expected: &str, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
        let provider = super::provider();
        let verifier = SpiffeServerVerifier::new(
            self.roots.clone(),
            expected.to_string(),
            self.trust_domain().to_string(),
            provider.clone(),
        );
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("no TLS version is available: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| format!("the key does not match the certificate: {e}"))?;
        config.alpn_protocols = vec![alpn.to_vec()];
        Ok(Arc::new(config))
    }
}

/// Whether `chain` (the leaf, then its intermediates) is signed by a CA of `roots`, for
/// serving or for connecting (an identity may be used for either), judged at a moment the
/// leaf is valid: expiry is the store's and `/ready`'s business, not a broken chain.
fn chains_to(
    chain: &[CertificateDer<'static>],
    roots: &RootCertStore,
    not_before: i64,
    not_after: i64,
) -> Result<(), String> {
    let provider = super::provider();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let at = now.clamp(not_before, (not_after - 1).max(not_before));
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.max(0) as u64));
    let leaf = ParsedCertificate::try_from(&chain[0]).map_err(|e| e.to_string())?;
    let algorithms = provider.signature_verification_algorithms.all;
    let as_server =
        verify_server_cert_signed_by_trust_anchor(&leaf, roots, &chain[1..], at, algorithms);
    if as_server.is_ok() {
        return Ok(());
    }
    let roots = Arc::new(roots.clone());
    let as_client = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| e.to_string())?
        .verify_client_cert(&chain[0], &chain[1..], at);
    match (as_server, as_client) {
        (_, Ok(_)) => Ok(()),
        (Err(e), Err(_)) => Err(e.to_string()),
        (Ok(()), _) => Ok(()),
    }
}

/// The PEM certificates of `path`, at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let fail = |why: String| IdentityError {
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot be read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(fail(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
        ));
    }
    Ok(certs)
}
