//! The Kubernetes API client: one HTTP/1.1 GET per connection (a list, or a watch that
//! streams for minutes), over TCP or rustls, with the bearer token of the configuration.
//! Small on purpose: discovery needs two requests, not a general client.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

/// How long connecting and getting the response head may take (a watch's body then streams
/// for as long as the server keeps it open).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// An API server weir can ask: where it is, the credentials, the TLS settings.
#[derive(Debug, Clone)]
pub struct ApiServer {
    /// `http://host:port` or `https://host:port` (a path prefix is kept).
    pub uri: Uri,
    /// What proves weir's identity besides a client certificate.
    pub auth: Auth,
    /// For `https`: the cluster's CA and any client certificate.
    pub tls: Option<Arc<ClientConfig>>,
}

/// A bearer token, fixed or read from a file before each request (so rotated service-account
/// tokens are picked up). Its `Debug` hides the token.
#[derive(Clone)]
pub enum Auth {
    /// No `Authorization` header (a client certificate, or an open test server).
    None,
    /// A token from the kubeconfig file.
    Token(String),
    /// A token file (the pod's service account, or `tokenFile`).
    TokenFile(PathBuf),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<hidden>)"),
            Auth::TokenFile(path) => f.debug_tuple("TokenFile").field(path).finish(),
        }
    }
}

/// Why a request got no response head.
#[derive(Debug)]
pub struct RequestError(String);

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RequestError {}

impl ApiServer {
    /// GETs `path_and_query` (e.g. `/apis/…?watch=true`) on a new connection and returns the
    /// response with its body still streaming.
    pub async fn get(&self, path_and_query: &str) -> Result<Response<Incoming>, RequestError> {
        tokio::time::timeout(HEAD_TIMEOUT, self.get_head(path_and_query))
            .await
            .unwrap_or_else(|_| {
                Err(RequestError(format!(
                    "no response within {}s",
                    HEAD_TIMEOUT.as_secs()
                )))
            })
    }

    async fn get_head(&self, path_and_query: &str) -> Result<Response<Incoming>, RequestError> {
        let fail = |what: &str, e: &dyn std::fmt::Display| RequestError(format!("{what}: {e}"));
        let host = self
            .uri
            .host()
            .ok_or_else(|| RequestError(format!("server {} has no host", self.uri)))?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let port = self
            .uri
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let tcp = TcpStream::connect((bare_host, port))
            .await
            .map_err(|e| fail(&format!("connect to {host}:{port}"), &e))?;
        let _ = tcp.set_nodelay(true);
        // A watch can sit quiet for minutes: keepalive finds a peer that vanished (a node
        // gone, a load balancer that dropped the flow) long before the idle timeout.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(std::time::Duration::from_secs(30))
            .with_interval(std::time::Duration::from_secs(10));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let prefix = self.uri.path().trim_end_matches('/');
        let mut request = Request::get(format!("{prefix}{path_and_query}"))
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "weir");
        if let Some(token) = self.token().await? {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail("request", &e))?;
        match &self.tls {
            None => send(TokioIo::new(tcp), request).await,
            Some(tls) => {
                let name = ServerName::try_from(bare_host.to_string())
                    .map_err(|e| fail(&format!("server name {bare_host}"), &e))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| fail("TLS handshake with the API server", &e))?;
                send(TokioIo::new(stream), request).await
            }
        }
    }

    async fn token(&self) -> Result<Option<String>, RequestError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::TokenFile(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| RequestError(format!("token file {}: {e}", path.display()))),
        }
    }
}

/// Sends one request on a new HTTP/1.1 connection, driven by its own task until the body
/// is read or dropped.
async fn send<I>(io: I, request: Request<Empty<Bytes>>) -> Result<Response<Incoming>, RequestError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| RequestError(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(request)
        .await
        .map_err(|e| RequestError(format!("request: {e}")))
}
