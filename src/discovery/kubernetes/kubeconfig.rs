//! Where the Kubernetes API server is and how to prove who weir is to it, found as `kubectl`
//! and kube-rs's `Config::infer` find it: the file named by `KUBECONFIG` (the first of its
//! list) or `~/.kube/config`, else the pod's service account (`KUBERNETES_SERVICE_HOST`,
//! its token and CA under `/var/run/secrets/kubernetes.io/serviceaccount/`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;

use super::client::{ApiServer, Auth};

/// Where a pod's service account is mounted.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why no API server could be configured: each says what to fix.
#[derive(Debug)]
pub enum ConfigError {
    /// Neither a kubeconfig file nor a pod's service account was found.
    NotFound,
    /// A file could not be read.
    Read(PathBuf, std::io::Error),
    /// The kubeconfig file is not what kubectl writes, or lacks what weir needs.
    Invalid(PathBuf, String),
    /// The certificates or key could not be used.
    Tls(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotFound => write!(
                f,
                "no Kubernetes API configuration: set KUBECONFIG, write ~/.kube/config, or run in a pod with a service account"
            ),
            ConfigError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            ConfigError::Invalid(path, why) => write!(f, "kubeconfig {}: {why}", path.display()),
            ConfigError::Tls(why) => write!(f, "Kubernetes API TLS settings: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Finds the API server as `kube::Config::infer` does: a kubeconfig file first, then the
/// in-cluster service account.
pub fn infer() -> Result<ApiServer, ConfigError> {
    if let Some(path) = kubeconfig_path() {
        return from_kubeconfig(&path);
    }
    in_cluster()
}

/// `KUBECONFIG`'s first entry, else `~/.kube/config` when it exists.
fn kubeconfig_path() -> Option<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        if let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty()) {
            return Some(first);
        }
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    let path = home.join(".kube").join("config");
    path.is_file().then_some(path)
}

/// The pod's service account: the API server of `KUBERNETES_SERVICE_HOST`, its CA, and the
/// token file (read again before each request: Kubernetes rotates bound tokens).
fn in_cluster() -> Result<ApiServer, ConfigError> {
    let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) else {
        return Err(ConfigError::NotFound);
    };
    service_account(&host, &port, Path::new(SERVICE_ACCOUNT))
}

/// The API server at `host:port`, trusted through `dir/ca.crt`, with the token `dir/token`.
fn service_account(host: &str, port: &str, dir: &Path) -> Result<ApiServer, ConfigError> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let ca = read(&dir.join("ca.crt"))?;
    let server = format!("https://{host}:{port}");
    let uri = server
        .parse()
        .map_err(|e| ConfigError::Invalid(dir.to_path_buf(), format!("server {server}: {e}")))?;
    Ok(ApiServer {
        uri,
        auth: Auth::TokenFile(dir.join("token")),
        tls: Some(tls_config(&[ca], None)?),
    })
}

/// The parts of a kubeconfig file weir reads (kubectl's names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KubeConfigFile {
    #[serde(default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(default)]
    client_certificate: Option<PathBuf>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key: Option<PathBuf>,
    #[serde(default)]
    client_key_data: Option<String>,
    #[serde(default)]
    exec: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    auth_provider: Option<serde::de::IgnoredAny>,
}

/// The current context of the kubeconfig file at `path`.
fn from_kubeconfig(path: &Path) -> Result<ApiServer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
    let invalid = |why: String| ConfigError::Invalid(path.into(), why);
    let file: KubeConfigFile =
        serde_saphyr::from_str(&text).map_err(|e| invalid(format!("not a kubeconfig: {e}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let current = file
        .current_context
        .as_deref()
        .or_else(|| file.contexts.first().map(|c| c.name.as_str()))
        .ok_or_else(|| invalid("no current-context and no contexts".into()))?;
    let context = &file
        .contexts
        .iter()
        .find(|c| c.name == current)
        .ok_or_else(|| invalid(format!("current-context {current:?} is not among contexts")))?
        .value;
    let cluster = &file
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .ok_or_else(|| {
            invalid(format!(
                "cluster {:?} is not among clusters",
                context.cluster
            ))
        })?
        .value;
    let no_user = User::default();
    let user = match &context.user {
        Some(name) => {
            &file
                .users
                .iter()
                .find(|u| &u.name == name)
                .ok_or_else(|| invalid(format!("user {name:?} is not among users")))?
                .value
        }
        None => &no_user,
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(invalid(
            "exec and auth-provider credential plugins are not supported; give the user a `token`, `tokenFile` or client certificate".into(),
        ));
    }
    let uri: http::Uri = cluster
        .server
        .parse()
        .map_err(|e| invalid(format!("server {:?}: {e}", cluster.server)))?;
    let auth = match (&user.token, &user.token_file) {
        (Some(token), _) => Auth::Token(token.clone()),
        (None, Some(file)) => Auth::TokenFile(base.join(file)),
        (None, None) => Auth::None,
    };
    let tls = match uri.scheme_str() {
        Some("http") => None,
        Some("https") => {
            if cluster.insecure_skip_tls_verify == Some(true) {
                return Err(invalid(
                    "insecure-skip-tls-verify is not supported; give the cluster its certificate-authority".into(),
                ));
            }
            let ca = pem_source(
                base,
                &cluster.certificate_authority,
                &cluster.certificate_authority_data,
            )?
            .ok_or_else(|| {
                invalid(
                    "an https server needs certificate-authority or certificate-authority-data"
                        .into(),
                )
            })?;
            let cert = pem_source(
                base,
                &user.client_certificate,
                &user.client_certificate_data,
            )?;
            let key = pem_source(base, &user.client_key, &user.client_key_data)?;
            let client = match (cert, key) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "a client certificate needs its key, and a key its certificate".into(),
                    ))
                }
            };
            Some(tls_config(&[ca], client)?)
        }
        _ => {
            return Err(invalid(format!(
                "server {uri} is neither http:// nor https://"
            )))
        }
    };
    Ok(ApiServer { uri, auth, tls })
}

/// PEM bytes from a file (relative to the kubeconfig's folder) or from base64 data.
fn pem_source(
    base: &Path,
    file: &Option<PathBuf>,
    data: &Option<String>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    if let Some(data) = data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| ConfigError::Tls(format!("base64 data: {e}")))?;
        return Ok(Some(bytes));
    }
    match file {
        Some(file) => read(&base.join(file)).map(Some),
        None => Ok(None),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::Read(path.into(), e))
}

/// A rustls client (aws-lc-rs) trusting `cas`, with a client certificate when given.
fn tls_config(
    cas: &[Vec<u8>],
    client: Option<(Vec<u8>, Vec<u8>)>,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let tls = |e: &dyn fmt::Display| ConfigError::Tls(e.to_string());
    let mut roots = RootCertStore::empty();
    for pem in cas {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
        }
    }
    if roots.is_empty() {
        return Err(ConfigError::Tls(
            "the certificate authority holds no certificate".into(),
        ));
    }
    let builder = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls(&e))?;
            let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| tls(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls(&e))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).expect("dir");
        let path = dir.join("config");
        std::fs::write(&path, text).expect("write");
        path
    }

    fn dir(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("weir-kubeconfig-{}-{tag}", std::process::id()))
    }

    #[test]
    fn the_current_context_gives_server_and_token() {
        let path = write(
            &dir("token"),
            "apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: c1\n  cluster: { server: \"http://127.0.0.1:1\" }\n- name: c2\n  cluster: { server: \"http://127.0.0.1:2\" }\ncontexts:\n- name: a\n  context: { cluster: c1 }\n- name: b\n  context: { cluster: c2, user: u }\nusers:\n- name: u\n  user: { token: s3cret }\n",
        );
        let api = from_kubeconfig(&path).expect("loads");
        assert_eq!(api.uri.to_string(), "http://127.0.0.1:2/");
        assert!(matches!(api.auth, Auth::Token(ref t) if t == "s3cret"));
        assert!(api.tls.is_none());
    }

    #[test]
    fn a_service_account_gives_https_with_its_ca_and_token_file() {
        let sa = dir("sa");
        std::fs::create_dir_all(&sa).expect("dir");
        let ca =
            rcgen::generate_simple_self_signed(vec!["kubernetes.default.svc".into()]).expect("ca");
        std::fs::write(sa.join("ca.crt"), ca.cert.pem()).expect("write ca");
        let api = service_account("fd00::1", "443", &sa).expect("in-cluster config");
        assert_eq!(api.uri.to_string(), "https://[fd00::1]:443/");
        assert!(matches!(api.auth, Auth::TokenFile(ref p) if p == &sa.join("token")));
        assert!(api.tls.is_some());
        std::fs::write(sa.join("ca.crt"), "not a certificate").expect("write");
        let err = service_account("10.96.0.1", "443", &sa)
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("holds no certificate")),
            "{err:?}"
        );
    }

    #[test]
    fn an_https_cluster_with_inline_ca_and_client_certificate_loads() {
        let ca = rcgen::generate_simple_self_signed(vec!["k".into()]).expect("ca");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!(
            "current-context: x\nclusters:\n- name: c\n  cluster:\n    server: https://k:6443\n    certificate-authority-data: {}\ncontexts:\n- name: x\n  context: {{ cluster: c, user: u }}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&ca.cert.pem()),
            b64(&ca.cert.pem()),
            b64(&ca.signing_key.serialize_pem()),
        );
        let api = from_kubeconfig(&write(&dir("https"), &text)).expect("loads");
        assert!(api
            .tls
            .is_some_and(|t| t.client_auth_cert_resolver.has_certs()));
        assert!(matches!(api.auth, Auth::None));
        assert_eq!(
            format!("{:?}", Auth::Token("s3cret".into())),
            "Token(<hidden>)"
        );
    }

    #[test]
    fn unsupported_or_incomplete_files_say_what_to_fix() {
        for (text, says) in [
            ("clusters: []\ncontexts: []\n", "no current-context"),
            (
                "current-context: x\ncontexts:\n- name: x\n  context: { cluster: gone }\n",
                "cluster \"gone\" is not among clusters",
            ),
            (
                "current-context: x\nclusters:\n- name: c\n  cluster: { server: \"https://k:6443\" }\ncontexts:\n- name: x\n  context: { cluster: c }\n",
                "needs certificate-authority",
            ),
            (
                "current-context: x\nclusters:\n- name: c\n  cluster: { server: \"http://k\" }\ncontexts:\n- name: x\n  context: { cluster: c, user: u }\nusers:\n- name: u\n  user: { exec: { command: aws } }\n",
                "credential plugins are not supported",
            ),
        ] {
            let path = write(&dir("bad"), text);
            let err = from_kubeconfig(&path).err().map(|e| e.to_string());
            assert!(err.as_deref().is_some_and(|e| e.contains(says)), "{err:?} lacks {says}");
        }
    }
}
