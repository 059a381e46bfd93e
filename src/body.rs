//! The request body type weir sends upstream: either the client's body, streamed frame by
//! frame, or bytes weir holds itself (health checks, the demo's load generator).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A request body headed upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// The downstream client's body, streamed without buffering.
    Streaming(Incoming),
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
            RequestBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(body) => body.is_end_stream(),
            RequestBody::Full(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(body) => body.size_hint(),
            RequestBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
