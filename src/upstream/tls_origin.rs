//! The TLS step of connecting to a service with `tls.identity`: after TCP, a mutual TLS
//! handshake that presents this workload's identity and accepts only the service's
//! sidecars. It is part of the pool's connect step, so it is bounded by `connect_timeout`
//! and its failures are connect failures (502 `connect_failed`, and outlier detection).

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::io::UpstreamIo;
use crate::config::{self, UpstreamProtocol};
use crate::telemetry::metrics::{Metrics, TlsHandshakeLabels};
use crate::tls::Identity;

/// A service's mTLS origination: its settings and handshake counters.
#[derive(Debug)]
pub struct OutboundTls {
    settings: Arc<ClientConfig>,
    succeeded: Counter,
    failed: Counter,
}

impl OutboundTls {
    /// The origination of `service`, when it has `tls`: `identity` is what weir presents.
    pub fn new(
        service: &config::Service,
        identity: Option<&Identity>,
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
        let alpn: &[u8] = match service.protocol {
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
        Ok(Some(Arc::new(OutboundTls {
            settings: identity.client_config(&tls.identity, alpn)?,
            succeeded: counter("success"),
            failed: counter("failure"),
        })))
    }

    /// The handshake on a fresh TCP connection to `address`; the error says why, in
    /// words (`invalid peer certificate: identity mismatch: expected X, got Y`).
    pub async fn connect(&self, tcp: TcpStream, address: SocketAddr) -> Result<UpstreamIo, String> {
        // Mesh certificates name a SPIFFE ID, not a host: the name only keys session
        // resumption, per endpoint.
        let name = ServerName::IpAddress(address.ip().into());
        match TlsConnector::from(self.settings.clone())
            .connect(name, tcp)
            .await
        {
            Ok(tls) => {
                self.succeeded.inc();
                Ok(UpstreamIo::Tls(Box::new(tls)))
            }
            Err(e) => {
                self.failed.inc();
                Err(format!("TLS handshake failed: {e}"))
            }
        }
    }
}
