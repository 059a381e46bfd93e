//! The body of an upstream response, whichever HTTP version brought it: read straight from
//! the socket for HTTP/1.1 (weir's own client), from hyper's shared connection for HTTP/2.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::h1::{Connection, H1Body, Switched};

/// Errors of a response body, boxed as hyper's server takes them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A response body from an upstream.
#[derive(Debug)]
pub enum UpstreamBody {
    /// From an HTTP/1.1 connection the body owns while it streams.
    Http1(H1Body),
    /// From a stream of a shared HTTP/2 connection.
    Http2(Incoming),
}

impl UpstreamBody {
    /// The HTTP/1.1 connection, once the body ended cleanly and the connection may carry
    /// another request.
    pub fn take_connection(&mut self) -> Option<Box<Connection>> {
        match self {
            UpstreamBody::Http1(body) => body.take_connection(),
            UpstreamBody::Http2(_) => None,
        }
    }
}

impl UpstreamBody {
    /// The connection of a `101 Switching Protocols` answer to a request that asked to
    /// switch, to relay the new protocol over (HTTP/1.1 only).
    pub fn take_switched(&mut self) -> Option<Switched> {
        match self {
            UpstreamBody::Http1(body) => body.take_switched(),
            UpstreamBody::Http2(_) => None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Http2(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1(body) => body.is_end_stream(),
            UpstreamBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http1(body) => body.size_hint(),
            UpstreamBody::Http2(body) => body.size_hint(),
        }
    }
}
