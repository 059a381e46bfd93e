//! The first stage of an inbound connection: plaintext, mutual TLS, or (permissive mode)
//! whichever the client's first byte says, and the decision on the peer's identity.
//!
//! A listener in `strict` mode serves only clients whose certificate chains to the trust
//! bundle and names one SPIFFE ID of the mesh's trust domain; anything else fails the
//! handshake. In `permissive` mode a TLS ClientHello (first byte 0x16) gets the same, and
//! anything else is served as plaintext, with no identity. How long a client may take to
//! finish the handshake and send its first request is the listener's `first_byte` timeout,
//! enforced by the connection's watchdog as for plaintext: the watchdog's clock watches the
//! decrypted bytes, so it times HTTP, not TLS records.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rustls::HandshakeKind;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::authorize::{Authorization, PeerDecision};
use crate::config::{self, TlsMode};
use crate::telemetry::metrics::{Metrics, TlsHandshakeLabels};
use crate::tls::store::Rotating;
use crate::tls::stream::MaybeTls;
use crate::tls::{spiffe_id, Identity, IdentityStore};

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// An inbound listener's TLS: its mode, its settings, its `allow` list.
#[derive(Debug)]
pub struct InboundTls {
    mode: TlsMode,
    settings: Rotating<rustls::ServerConfig>,
    authz: Authorization,
    succeeded: Counter,
    resumed: Counter,
    failed: Counter,
}

/// Why a connection was not served.
#[derive(Debug)]
pub struct HandshakeFailed(pub io::Error);

impl std::fmt::Display for HandshakeFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS handshake failed: {}", self.0)
    }
}

impl InboundTls {
    /// The TLS of `listener`, or `None` when it has none (no `tls`, or `mode: disabled`).
    /// A listener with `tls` needs the workload's identity (the configuration is refused
    /// without one).
    pub fn new(
        listener: &config::Listener,
        identity: Option<&Arc<IdentityStore>>,
        metrics: &Metrics,
    ) -> Result<Option<Self>, String> {
        let Some(tls) = listener
            .tls
            .as_ref()
            .filter(|t| t.mode != TlsMode::Disabled)
        else {
            return Ok(None);
        };
        let identity = identity.ok_or_else(|| {
            format!(
                "listener {} has tls but the configuration has no `identity`",
                listener.name
            )
        })?;
        let counter = |result: &str| {
            metrics
                .tls_handshakes
                .get_or_create_owned(&TlsHandshakeLabels {
                    listener: listener.name.clone(),
                    side: "server".to_string(),
                    result: result.to_string(),
                })
        };
        Ok(Some(InboundTls {
            mode: tls.mode,
            settings: Rotating::new(identity.clone(), Identity::server_config)?,
            authz: Authorization::new(&listener.name, &tls.allow, metrics),
            succeeded: counter("success"),
            resumed: counter("resumed"),
            failed: counter("failure"),
        }))
    }

    /// Meets a client: a TLS handshake when the mode and its first byte call for one, then
    /// the decision on its identity. In permissive mode, a client that has sent nothing
    /// within `detect_within` is taken for plaintext (a TCP protocol whose server speaks
    /// first; a TLS client always speaks first); `None` waits for the first byte.
    pub async fn accept(
        &self,
        stream: TcpStream,
        detect_within: Option<Duration>,
    ) -> Result<(ClientStream, PeerDecision), HandshakeFailed> {
        let tls = match self.mode {
            TlsMode::Strict => true,
            _ => {
                let mut first = [0u8; 1];
                let peek = stream.peek(&mut first);
                let peeked = match detect_within {
                    None => Some(peek.await),
                    Some(limit) => tokio::time::timeout(limit, peek).await.ok(),
                };
                match peeked {
                    Some(n) => n.map_err(HandshakeFailed)? == 1 && first[0] == TLS_HANDSHAKE,
                    None => false,
                }
            }
        };
        if !tls {
            return Ok((MaybeTls::Plain(stream), self.authz.decide(None)));
        }
        let settings = self.settings.get();
        match TlsAcceptor::from(settings).accept(stream).await {
            Ok(stream) => {
                match stream.get_ref().1.handshake_kind() {
                    Some(HandshakeKind::Resumed) => self.resumed.inc(),
                    _ => self.succeeded.inc(),
                };
                // The verifier let in only certificates with one SPIFFE ID.
                let peer = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| spiffe_id(leaf).ok());
                let decision = self.authz.decide(peer.as_deref());
                Ok((MaybeTls::Tls(Box::new(stream)), decision))
            }
            Err(e) => {
                self.failed.inc();
                Err(HandshakeFailed(e))
            }
        }
    }
}

/// A client's connection, plaintext or TLS.
pub type ClientStream = MaybeTls<TcpStream, TlsStream<TcpStream>>;
