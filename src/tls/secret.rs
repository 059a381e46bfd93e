//! A workload certificate as a Kubernetes Secret of type `kubernetes.io/tls`: `tls.crt`,
//! `tls.key` and the trust bundle `ca.crt`, base64-encoded as Kubernetes wants `data`.
//!
//! Mounted into a pod, the Secret gives the same three files that `weir certs issue` writes
//! to its `--out` directory, so a configuration's `identity` works in both places.

use base64::Engine;

use super::mint::Issued;
use super::spiffe::{check_object_name, SpiffeIdError};

/// The manifest (YAML) of Secret `name` in the workload's namespace.
///
/// `name` must be a valid Kubernetes object name; the namespace is the SPIFFE ID's, which
/// was validated when the certificate was issued.
pub fn tls_secret(name: &str, issued: &Issued, ca_pem: &str) -> Result<String, SpiffeIdError> {
    check_object_name(name)?;
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    // Names are quoted: a valid name such as `1e3` would otherwise read as a number. Neither
    // names nor base64 can hold a `"` or a `\`, so no escaping is needed.
    Ok(format!(
        "# The workload certificate of {id}, minted by `weir certs issue`.\n\
         # Apply it with `kubectl apply -f`; it holds a private key: keep it out of version control.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: \"{name}\"\n  namespace: \"{namespace}\"\n\
         type: kubernetes.io/tls\n\
         data:\n  tls.crt: {crt}\n  tls.key: {key}\n  ca.crt: {ca}\n",
        id = issued.spiffe_id,
        namespace = issued.spiffe_id.namespace(),
        crt = b64(&issued.cert_pem),
        key = b64(&issued.key_pem),
        ca = b64(ca_pem),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::mint::MeshCa;
    use crate::tls::spiffe::TrustDomain;
    use std::time::Duration;

    fn decode(b64: &str) -> String {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn the_secret_holds_the_three_files_base64_encoded() {
        let td = TrustDomain::new("cluster.local").expect("td");
        let ca = MeshCa::new(td, Duration::from_secs(3600)).expect("ca");
        let issued = ca
            .issue("shop", "reviews", Duration::from_secs(600))
            .expect("issued");
        let yaml = tls_secret("reviews-tls", &issued, ca.cert_pem()).expect("secret");
        let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("YAML");
        assert_eq!(doc["apiVersion"], "v1");
        assert_eq!(doc["kind"], "Secret");
        assert_eq!(doc["type"], "kubernetes.io/tls");
        assert_eq!(doc["metadata"]["name"], "reviews-tls");
        assert_eq!(doc["metadata"]["namespace"], "shop");
        let data = |k: &str| decode(doc["data"][k].as_str().expect("a string"));
        assert_eq!(data("tls.crt"), issued.cert_pem);
        assert_eq!(data("tls.key"), issued.key_pem);
        assert_eq!(data("ca.crt"), ca.cert_pem());
        assert_eq!(doc["data"].as_object().map(|o| o.len()), Some(3));
    }

    #[test]
    fn a_name_that_reads_as_a_number_stays_a_string() {
        let td = TrustDomain::new("cluster.local").expect("td");
        let ca = MeshCa::new(td, Duration::from_secs(3600)).expect("ca");
        let issued = ca
            .issue("1e3", "x", Duration::from_secs(60))
            .expect("issued");
        let yaml = tls_secret("123", &issued, ca.cert_pem()).expect("secret");
        let doc: serde_json::Value = serde_saphyr::from_str(&yaml).expect("YAML");
        assert_eq!(doc["metadata"]["name"], "123");
        assert_eq!(doc["metadata"]["namespace"], "1e3");
    }

    #[test]
    fn an_invalid_secret_name_is_refused() {
        let td = TrustDomain::new("cluster.local").expect("td");
        let ca = MeshCa::new(td, Duration::from_secs(3600)).expect("ca");
        let issued = ca
            .issue("shop", "x", Duration::from_secs(60))
            .expect("issued");
        for bad in ["", "Reviews", "reviews_tls", "a\nb: c", "-x"] {
            assert!(tls_secret(bad, &issued, ca.cert_pem()).is_err(), "{bad:?}");
        }
    }
}
