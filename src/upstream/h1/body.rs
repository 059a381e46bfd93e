//! The body of an HTTP/1.1 response, read straight from the upstream socket. It owns the
//! connection while it streams; once it has ended cleanly the exchange takes the
//! connection back for the pool ([`H1Body::take_connection`]).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::decode::{BodyKind, Chunked, Decoded};
use super::encode::Upload;
use super::{reusable_after, Connection, Switched};

/// Where the body's decoding stands.
#[derive(Debug)]
enum State {
    /// Exactly this many bytes are left.
    Length(u64),
    /// A chunked body.
    Chunked(Chunked),
    /// Bytes until the upstream closes.
    UntilClose,
    /// The body is over.
    Done,
}

/// A response body from an HTTP/1.1 upstream.
#[derive(Debug)]
pub struct H1Body {
    conn: Option<Box<Connection>>,
    state: State,
    keep_alive: bool,
    /// The rest of a request body the upstream answered before it was all sent.
    upload: Option<Box<Upload>>,
    /// The answer was `101 Switching Protocols`: the connection now carries another
    /// protocol and is taken whole ([`H1Body::take_switched`]).
    switched: bool,
}

// === impl H1Body ===

impl H1Body {
    pub(super) fn new(
        conn: Box<Connection>,
        kind: BodyKind,
        keep_alive: bool,
        upload: Option<Box<Upload>>,
    ) -> Self {
        let state = match kind {
            BodyKind::Empty | BodyKind::Switched | BodyKind::Length(0) => State::Done,
            BodyKind::Length(n) => State::Length(n),
            BodyKind::Chunked => State::Chunked(Chunked::Size),
            BodyKind::UntilClose => State::UntilClose,
        };
        H1Body {
            conn: Some(conn),
            state,
            keep_alive: keep_alive && reusable_after(kind),
            upload,
            switched: kind == BodyKind::Switched,
        }
    }

    /// The connection of a `101 Switching Protocols` answer, to relay the new protocol
    /// over; with it come the bytes the upstream already sent in that protocol.
    pub fn take_switched(&mut self) -> Option<Switched> {
        if !self.switched {
            return None;
        }
        self.conn.take().map(Switched::new)
    }

    /// The connection, once the body ended cleanly on a connection that may carry another
    /// request (the request fully sent, nothing unread left over).
    pub fn take_connection(&mut self) -> Option<Box<Connection>> {
        if !matches!(self.state, State::Done) || !self.keep_alive || self.upload.is_some() {
            return None;
        }
        self.conn.take().filter(|c| c.read_buf.is_empty())
    }
}

/// Why an upstream response body broke off.
#[derive(Debug)]
pub struct BodyError(BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the upstream response body broke off: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// A boxed error, as hyper's server takes them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Decodes the next frame from `conn`; `Ok(None)` at the end of the body.
fn poll_decode(
    conn: &mut Connection,
    state: &mut State,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<Frame<Bytes>>, BoxError>> {
    loop {
        match state {
            State::Done => return Poll::Ready(Ok(None)),
            State::Length(left) => {
                if !conn.read_buf.is_empty() {
                    let n = (*left).min(conn.read_buf.len() as u64) as usize;
                    let data = conn.read_buf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        *state = State::Done;
                    }
                    return Poll::Ready(Ok(Some(Frame::data(data))));
                }
                if ready!(conn.poll_read(cx))? == 0 {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed before the end of the body",
                    )
                    .into()));
                }
            }
            State::Chunked(chunked) => match chunked.decode(&mut conn.read_buf)? {
                Decoded::Frame(frame) => return Poll::Ready(Ok(Some(frame))),
                Decoded::End => *state = State::Done,
                Decoded::NeedMore => {
                    if ready!(conn.poll_read(cx))? == 0 {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the upstream closed in the middle of a chunked body",
                        )
                        .into()));
                    }
                }
            },
            State::UntilClose => {
                if !conn.read_buf.is_empty() {
                    let n = conn.read_buf.len();
                    let data = conn.read_buf.split_to(n).freeze();
                    return Poll::Ready(Ok(Some(Frame::data(data))));
                }
                if ready!(conn.poll_read(cx))? == 0 {
                    *state = State::Done;
                }
            }
        }
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(upload) = this.upload.as_mut() {
            match upload.poll(&mut conn.io, cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => this.upload = None,
                // The request cannot be finished: the response may still be; the
                // connection is not reused.
                Poll::Ready(Err(_)) => {
                    this.upload = None;
                    this.keep_alive = false;
                }
            }
        }
        match ready!(poll_decode(conn, &mut this.state, cx)) {
            Ok(frame) => Poll::Ready(frame.map(Ok)),
            Err(e) => {
                this.state = State::Done;
                this.keep_alive = false;
                this.conn = None;
                Poll::Ready(Some(Err(BodyError(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
