//! weir's own HTTP/1.1 client, driven inside the request's task (as Pingora does): no task
//! per connection, no channel between a request and its connection, no oneshot per
//! request. The request task writes the request, reads the response head, and the response
//! body reads straight from the upstream socket; a request body that is still streaming
//! when the response starts keeps being sent from the response body's polls.
//!
//! A connection is one [`Connection`]: the socket, its read buffer and its head buffer,
//! and the service's `max_connections` slot, all released when it is dropped. The pool
//! keeps idle ones; an exchange checks one out and returns it only after a clean response.

mod body;
mod decode;
mod encode;
mod switched;

use std::future::{poll_fn, Future};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use super::io::{UpstreamIo, UpstreamSocket};
use bytes::BytesMut;
use http::{Method, Request, Response};
use tokio::io::AsyncReadExt;

pub use body::H1Body;
pub use decode::Malformed;
pub use switched::Switched;

use self::decode::{Asked, BodyKind, Head};
pub use self::encode::Upload;
use self::encode::UploadError;
use super::limits::LimitGuard;
use crate::body::RequestBody;

/// Initial read buffer of a connection: a response head and a small body fit.
const READ_BUFFER: usize = 8 * 1024;

/// How an HTTP/1.1 exchange failed before a response head.
#[derive(Debug)]
pub enum SendError {
    /// The client's body failed (the exchange judges whose fault).
    ClientBody,
    /// The connection failed or closed before any answer.
    Io {
        /// What happened.
        error: io::Error,
        /// The request again, when it may be sent on another connection: the connection
        /// had carried requests before (the upstream may have closed it while it was idle),
        /// no byte of an answer came, and weir still holds the whole request.
        resend: Option<Box<Outgoing>>,
    },
    /// The upstream's answer was not HTTP/1.1.
    Malformed(Malformed),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::ClientBody => f.write_str("the request body failed"),
            SendError::Io { error, .. } => write!(f, "{error}"),
            SendError::Malformed(m) => write!(f, "{m}"),
        }
    }
}

/// A request for [`Connection::send`]: new, or sent again after a connection failed it.
// A request is moved in once per exchange; boxing it to even out the variants would cost
// an allocation on every request for the rare resend.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outgoing {
    /// A request not yet encoded.
    Request(Request<RequestBody>),
    /// An encoded request whose every byte weir holds.
    Resend {
        /// The request's bytes.
        upload: Box<Upload>,
        /// What the request asked of its answer's framing.
        asked: Asked,
    },
}

/// Counts a connection in its pool's open connections while it lives.
#[derive(Debug)]
pub struct OpenCount(Arc<AtomicUsize>);

impl OpenCount {
    /// Counts one more open connection in `open`.
    pub fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Relaxed);
        OpenCount(open.clone())
    }

    /// Counts the endpoint's first open connection: `None` unless `open` is 0, decided in
    /// one atomic step so that only one of several racing requests gets it.
    pub fn first(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.compare_exchange(0, 1, Relaxed, Relaxed)
            .ok()
            .map(|_| OpenCount(open.clone()))
    }
}

impl Drop for OpenCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// One HTTP/1.1 connection to an endpoint.
#[derive(Debug)]
pub struct Connection {
    io: UpstreamIo,
    read_buf: BytesMut,
    /// The head buffer, kept between requests so encoding a head allocates nothing.
    head_buf: Vec<u8>,
    /// How many requests this connection has carried.
    requests: u64,
    _slot: LimitGuard,
    _open: OpenCount,
}

// === impl Connection ===

impl Connection {
    /// A fresh connection on `io`, holding its `max_connections` slot.
    pub fn new(io: UpstreamIo, slot: LimitGuard, open: OpenCount) -> Box<Self> {
        Box::new(Connection {
            io,
            read_buf: BytesMut::new(),
            head_buf: Vec::new(),
            requests: 0,
            _slot: slot,
            _open: open,
        })
    }

    /// Whether an idle connection can take a request: the upstream has not closed it and
    /// sent nothing unasked. Costs no system call unless the socket has news.
    pub fn is_usable(&mut self) -> bool {
        self.read_buf.is_empty() && self.io.is_usable()
    }

    /// Whether the connection has carried a request before (a failure on a reused
    /// connection before any answer may be the upstream closing it while idle).
    pub fn is_reused(&self) -> bool {
        self.requests > 0
    }

    /// Makes an idle connection small: a buffer emptied by the last response is freed.
    pub fn shrink_when_idle(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
        }
    }

    /// Sends the request and reads the response head; the body streams from the returned
    /// response, which owns the connection until its body ends.
    pub async fn send(mut self: Box<Self>, out: Outgoing) -> Result<Response<H1Body>, SendError> {
        let reused = self.is_reused();
        self.requests += 1;
        let (mut upload, asked) = match out {
            Outgoing::Resend { upload, asked } => (*upload, asked),
            Outgoing::Request(req) => {
                let (mut parts, body) = req.into_parts();
                // Only a request weir lets switch protocols still carries `upgrade` here:
                // every other had it stripped as hop-by-hop.
                let asked = Asked {
                    head: parts.method == Method::HEAD,
                    upgrade: parts.headers.contains_key(http::header::UPGRADE),
                };
                let mut head_buf = std::mem::take(&mut self.head_buf);
                head_buf.clear();
                let framing = encode::head(&mut parts, &body, &mut head_buf);
                (Upload::new(head_buf, body, framing), asked)
            }
        };
        if self.read_buf.capacity() == 0 {
            self.read_buf.reserve(READ_BUFFER);
        }
        let mut upload_failed = false;
        let head = poll_fn(|cx| {
            if !upload_failed && !upload.is_done() {
                match upload.poll(&mut self.io, cx) {
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                    Poll::Ready(Err(UploadError::Body)) => {
                        return Poll::Ready(Err(SendError::ClientBody))
                    }
                    // The upstream may have answered already (an early 413, say) and
                    // closed its read side: look for the answer before failing.
                    Poll::Ready(Err(_)) => upload_failed = true,
                }
            }
            self.poll_head(cx, asked)
        })
        .await;
        let head = match head {
            Ok(head) => head,
            Err(SendError::Io { error, .. }) => {
                let resend = (reused && self.read_buf.is_empty())
                    .then(|| upload.rewound())
                    .flatten()
                    .map(|upload| {
                        Box::new(Outgoing::Resend {
                            upload: Box::new(upload),
                            asked,
                        })
                    });
                return Err(SendError::Io { error, resend });
            }
            Err(e) => return Err(e),
        };
        let Head {
            response,
            body,
            keep_alive,
        } = head;
        let unsent = if upload.is_done() {
            self.head_buf = upload.into_head_buffer();
            None
        } else if upload_failed {
            None
        } else {
            Some(Box::new(upload))
        };
        let keep_alive = keep_alive && !upload_failed;
        let (parts, ()) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            H1Body::new(self, body, keep_alive, unsent),
        ))
    }

    /// Reads until a whole response head is in the buffer.
    fn poll_head(&mut self, cx: &mut Context<'_>, asked: Asked) -> Poll<Result<Head, SendError>> {
        loop {
            if !self.read_buf.is_empty() {
                if let Some(head) =
                    decode::head(&mut self.read_buf, asked).map_err(SendError::Malformed)?
                {
                    return Poll::Ready(Ok(head));
                }
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(SendError::Io {
                        error: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the upstream closed the connection before a complete response head",
                        ),
                        resend: None,
                    }))
                }
                Ok(_) => {}
                Err(error) => {
                    return Poll::Ready(Err(SendError::Io {
                        error,
                        resend: None,
                    }))
                }
            }
        }
    }

    /// Reads what the socket has into the read buffer; `Ok(0)` at the end of the stream.
    /// Goes through tokio's `AsyncRead`, which remembers a short read as "drained": the
    /// next read waits for the socket instead of asking the kernel and hearing EAGAIN.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() - self.read_buf.len() < 1024 {
            self.read_buf.reserve(READ_BUFFER);
        }
        let read = self.io.read_buf(&mut self.read_buf);
        std::pin::pin!(read).poll(cx)
    }
}

/// Whether a response with this framing leaves the connection reusable at its end.
fn reusable_after(kind: BodyKind) -> bool {
    !matches!(kind, BodyKind::UntilClose | BodyKind::Switched)
}
