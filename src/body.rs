//! The request body type weir sends upstream: either the client's body, streamed frame by
//! frame, or bytes weir holds itself (health checks, the demo's load generator, a buffered
//! body replayed for a retry or a mirror).
//!
//! The client's body is watched as it streams ([`ClientBody`]), so that when an upstream
//! exchange fails weir can tell whose fault it was: a body that broke off or was malformed,
//! or a client too slow to send it, is the client's fault and is never held against the
//! endpoint or its circuit breaker.

use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::stall::StallTimer;

/// Errors of a request body, boxed as hyper's client takes them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body headed upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// The downstream client's body, streamed without buffering, after `prefix` (bytes weir
    /// already read looking for a body small enough to replay; `None` once sent).
    Client {
        /// Bytes read before the body turned out too large to buffer.
        prefix: Option<Bytes>,
        /// The rest, as the client sends it.
        body: Arc<ClientBody>,
        /// Ends the body when the client stops sending it (`stream_idle`).
        stall: StallTimer,
    },
    /// A body weir owns; `None` once sent (or for an empty body).
    Full(Option<Bytes>),
    /// A buffered client body sent again (a retry or a mirror copy), with the trailers it
    /// came with (gRPC). Each field is `None` once sent.
    Replay {
        /// The body's bytes.
        data: Option<Bytes>,
        /// The trailers, sent after the data (boxed: rare, and a `HeaderMap` would make
        /// every request body four times larger).
        trailers: Option<Box<HeaderMap>>,
    },
}

impl RequestBody {
    /// An empty body.
    pub fn empty() -> Self {
        RequestBody::Full(None)
    }

    /// The client's body, streamed as it comes, after `prefix`; a client that sends
    /// nothing of it for `stream_idle` has it ended as too slow.
    pub fn client(prefix: Option<Bytes>, body: Incoming, stream_idle: Duration) -> Self {
        RequestBody::Client {
            prefix: prefix.filter(|p| !p.is_empty()),
            body: Arc::new(ClientBody::new(body)),
            stall: StallTimer::new(stream_idle),
        }
    }

    /// The watch on the client's body, when this body is the client's.
    pub fn client_body(&self) -> Option<&Arc<ClientBody>> {
        match self {
            RequestBody::Client { body, .. } => Some(body),
            _ => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Client {
                prefix,
                body,
                stall,
            } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match body.poll_frame(cx) {
                    Poll::Pending => match stall.poll_stalled(cx) {
                        Poll::Ready(stalled) => {
                            body.fail(ClientFault::TooSlow);
                            Poll::Ready(Some(Err(stalled.into())))
                        }
                        Poll::Pending => Poll::Pending,
                    },
                    Poll::Ready(Some(Ok(frame))) => {
                        stall.progressed();
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(None) => Poll::Ready(None),
                }
            }
            RequestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Replay { data, trailers } => {
                if let Some(d) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Client { prefix, body, .. } => prefix.is_none() && body.is_end_stream(),
            RequestBody::Full(data) => data.is_none(),
            RequestBody::Replay { data, trailers } => {
                data.as_ref().is_none_or(Bytes::is_empty) && trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Client { prefix, body, .. } => {
                let len = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = body.size_hint();
                if len == 0 {
                    return rest;
                }
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(len));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(len));
                }
                hint
            }
            RequestBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Replay { data, trailers } => {
                let len = data.as_ref().map_or(0, |d| d.len() as u64);
                if trailers.is_none() {
                    SizeHint::with_exact(len)
                } else {
                    // Not exact, so HTTP/1.1 chunks the body and trailers can follow it.
                    let mut hint = SizeHint::new();
                    hint.set_lower(len);
                    hint
                }
            }
        }
    }
}

/// What went wrong on the client's side of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFault {
    /// The body was malformed (a bad chunk, a length mismatch): 400 `bad_request`.
    Malformed(String),
    /// The client went away before its body was complete: 499, logged.
    Gone,
    /// The client had not sent the rest of its body when time ran out: 408
    /// `client_timeout`.
    TooSlow,
}

impl ClientFault {
    /// Judges an error the client's body stream returned: a connection that ended early is
    /// a client that left; anything else is a malformed body.
    pub fn of_body_error(e: &hyper::Error) -> ClientFault {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                if matches!(
                    io.kind(),
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
                ) {
                    return ClientFault::Gone;
                }
            }
            source = err.source();
        }
        if e.is_incomplete_message() || e.is_canceled() {
            return ClientFault::Gone;
        }
        ClientFault::Malformed(e.to_string())
    }
}

impl fmt::Display for ClientFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientFault::Malformed(why) => f.write_str(why),
            ClientFault::Gone => f.write_str("the client went away before its body was complete"),
            ClientFault::TooSlow => f.write_str("the client was too slow to send its body"),
        }
    }
}

/// Where the client's body stands, as last seen by the exchange sending it.
const SENDING: u8 = 0;
const WAITING_FOR_CLIENT: u8 = 1;
const ENDED: u8 = 2;
const FAILED: u8 = 3;

/// The client's request body while it streams upstream, shared between the upstream
/// connection that sends it and the exchange that judges failures and may end it early.
///
/// When the upstream has answered completely, the exchange takes the body away
/// ([`ClientBody::stop`]), so the client is told to stop sending (HTTP/2 RST_STREAM
/// NO_ERROR, RFC 9113 §8.1) even while the upstream connection is still trying to send it.
#[derive(Debug)]
pub struct ClientBody {
    body: Mutex<Option<Incoming>>,
    state: AtomicU8,
    fault: OnceLock<ClientFault>,
}

// === impl ClientBody ===

impl ClientBody {
    fn new(body: Incoming) -> Self {
        let state = if body.is_end_stream() { ENDED } else { SENDING };
        ClientBody {
            body: Mutex::new(Some(body)),
            state: AtomicU8::new(state),
            fault: OnceLock::new(),
        }
    }

    fn poll_frame(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut slot = self.body.lock().unwrap_or_else(|p| p.into_inner());
        let Some(body) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        let state = match &polled {
            Poll::Pending => WAITING_FOR_CLIENT,
            Poll::Ready(Some(Ok(_))) => SENDING,
            Poll::Ready(None) => ENDED,
            Poll::Ready(Some(Err(e))) => {
                let _ = self.fault.set(ClientFault::of_body_error(e));
                FAILED
            }
        };
        self.state.store(state, Ordering::Release);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }

    /// Marks the body failed by `fault` (found by weir, not by the body stream) and ends it.
    fn fail(&self, fault: ClientFault) {
        let _ = self.fault.set(fault);
        self.state.store(FAILED, Ordering::Release);
        self.stop();
    }

    /// Ends the upload: whatever of the body the upstream has not read is unwanted.
    pub fn stop(&self) {
        let body = self.body.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(body);
    }

    /// The client's fault, if the exchange failed because of it. `timed_out` says whether
    /// the exchange failed by running out of time: then a body still waiting on the client
    /// makes it the client's fault.
    pub fn fault(&self, timed_out: bool) -> Option<ClientFault> {
        match self.state.load(Ordering::Acquire) {
            FAILED => self.fault.get().cloned(),
            WAITING_FOR_CLIENT if timed_out => Some(ClientFault::TooSlow),
            _ => None,
        }
    }
}
