//! The request body type weir sends upstream: either the client's body, streamed frame by
//! frame, or bytes weir holds itself (health checks, the demo's load generator, a buffered
//! body replayed for a retry or a mirror).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The client's request body, shared between the upstream connection that streams it and
/// the exchange that may end it early. When the upstream has answered completely, the
/// exchange takes the body away, so the client is told to stop sending (HTTP/2 RST_STREAM
/// NO_ERROR, RFC 9113 §8.1) even while the upstream connection is still trying to send it.
pub type SharedBody = Arc<Mutex<Option<Incoming>>>;

/// A request body headed upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// The downstream client's body, streamed without buffering.
    Streaming(Incoming),
    /// The downstream client's body, which the exchange may take away (see [`SharedBody`]).
    Shared(SharedBody),
    /// A body weir owns; `None` once sent (or for an empty body).
    Full(Option<Bytes>),
    /// The client's body after weir read its start (looking for a body small enough to
    /// replay) and found it too large: the bytes already read go first, then the rest
    /// streams, so nothing is lost. The prefix is `None` once sent.
    Prefixed(Option<Bytes>, Incoming),
    /// A buffered client body sent again (a retry or a mirror copy), with the trailers it
    /// came with (gRPC). Each field is `None` once sent.
    Replay {
        /// The body's bytes.
        data: Option<Bytes>,
        /// The trailers, sent after the data.
        trailers: Option<HeaderMap>,
    },
}

impl RequestBody {
    /// An empty body.
    pub fn empty() -> Self {
        RequestBody::Full(None)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Streaming(body) => Pin::new(body).poll_frame(cx),
            RequestBody::Shared(slot) => {
                match slot.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
            RequestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            RequestBody::Prefixed(prefix, rest) => match prefix.take() {
                Some(p) if !p.is_empty() => Poll::Ready(Some(Ok(Frame::data(p)))),
                _ => Pin::new(rest).poll_frame(cx),
            },
            RequestBody::Replay { data, trailers } => {
                if let Some(d) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(body) => body.is_end_stream(),
            RequestBody::Shared(slot) => slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_none_or(Body::is_end_stream),
            RequestBody::Full(data) => data.is_none(),
            RequestBody::Prefixed(prefix, rest) => {
                prefix.as_ref().is_none_or(Bytes::is_empty) && rest.is_end_stream()
            }
            RequestBody::Replay { data, trailers } => {
                data.as_ref().is_none_or(Bytes::is_empty) && trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(body) => body.size_hint(),
            RequestBody::Shared(slot) => slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Body::size_hint),
            RequestBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            RequestBody::Prefixed(prefix, rest) => {
                let len = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(len));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(len));
                }
                hint
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
