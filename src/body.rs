//! The request body type weir sends upstream: either the client's body, streamed frame by
//! frame, or bytes weir holds itself (health checks, the demo's load generator).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
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
        }
    }
}
