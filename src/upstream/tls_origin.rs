//! The TLS step of connecting to a service with `tls.identity`: after TCP, a mutual TLS
//! handshake that presents this workload's identity and accepts only the service's
//! sidecars. It is part of the pool's connect step, so it is bounded by `connect_timeout`
//! and its failures are connect failures (502 `connect_failed`, and outlier detection).

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::io::UpstreamIo;
use crate::config::{self, UpstreamProtocol};
use crate::telemetry::metrics::{Metrics, TlsHandshakeLabels};
use crate::tls::store::Rotating;
use crate::tls::{Identity, IdentityStore};

/// Sessions remembered per service for resumption (rustls's default size).
const SESSIONS: usize = 256;

/// How a service's client settings are built from an identity, resuming sessions from
/// `sessions` whichever identity built them.
fn settings_for(
    expected: String,
    alpn: &'static [u8],
    sessions: Arc<ClientSessionMemoryCache>,
) -> impl Fn(&Identity) -> Result<Arc<ClientConfig>, String> {
    move |identity| {
        let mut config = (*identity.client_config(&expected, alpn)?).clone();
        config.resumption = Resumption::store(sessions.clone());
        Ok(Arc::new(config))
    }
}

/// A service's mTLS origination: its settings and handshake counters.
#[derive(Debug)]
pub struct OutboundTls {
    settings: Rotating<ClientConfig>,
    succeeded: Counter,
    resumed: Counter,
    failed: Counter,
}

impl OutboundTls {
    /// The origination of `service`, when it has `tls`: `identity` is what weir presents.
    pub fn new(
        service: &config::Service,
        identity: Option<&Arc<IdentityStore>>,
        metrics: &Metrics,
    ) -> Result<Option<Arc<Self>>, String> {
        let Some(tls) = &service.tls else {
            return Ok(None);
        };
        let identity = identity.ok_or_else(|| {
            format!(
                "service {} has tls but the configuration has no `identity`",
                service.name
            )
        })?;
        let alpn: &'static [u8] = match service.protocol {
            UpstreamProtocol::Http1 => b"http/1.1",
            UpstreamProtocol::Http2 => b"h2",
        };
        let counter = |result: &str| {
            metrics
                .tls_handshakes
                .get_or_create_owned(&TlsHandshakeLabels {
                    listener: service.name.clone(),
                    side: "client".to_string(),
                    result: result.to_string(),
                })
        };
        let sessions = Arc::new(ClientSessionMemoryCache::new(SESSIONS));
        let build = settings_for(tls.identity.clone(), alpn, sessions);
        Ok(Some(Arc::new(OutboundTls {
            settings: Rotating::new(identity.clone(), build)?,
            succeeded: counter("success"),
            resumed: counter("resumed"),
            failed: counter("failure"),
        })))
    }

    /// The handshake on a fresh TCP connection to `address`; the error says why, in
    /// words (`invalid peer certificate: identity mismatch: expected X, got Y`).
    pub async fn connect(&self, tcp: TcpStream, address: SocketAddr) -> Result<UpstreamIo, String> {
        // Mesh certificates name a SPIFFE ID, not a host: the name only keys session
        // resumption, per endpoint.
        let name = ServerName::IpAddress(address.ip().into());
        match TlsConnector::from(self.settings.get())
            .connect(name, tcp)
            .await
        {
            Ok(tls) => {
                match tls.get_ref().1.handshake_kind() {
                    Some(HandshakeKind::Resumed) => self.resumed.inc(),
                    _ => self.succeeded.inc(),
                };
                Ok(UpstreamIo::Tls(Box::new(tls)))
            }
            Err(e) => {
                self.failed.inc();
                Err(format!("TLS handshake failed: {e}"))
            }
        }
    }
}
