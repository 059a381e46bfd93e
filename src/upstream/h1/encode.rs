//! Writing an HTTP/1.1 request: the head, in the framing the body needs (RFC 9112 §6), and
//! the body's frames in that framing.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::AsyncWrite;

use crate::upstream::io::{UpstreamIo, UpstreamSocket};
use bytes::{Buf, Bytes};
use http::header::{self, HeaderMap, HeaderValue};
use http::request;
use http_body::Body;

use crate::body::RequestBody;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `content-length: N`; the body must bring exactly N bytes.
    Length(u64),
    /// `transfer-encoding: chunked` (trailers allowed).
    Chunked,
}

/// Writes the request line and header fields of `parts` into `out`, choosing and writing
/// the body's framing. Like hyper's client: a `content-length` the request carries is kept
/// and enforced; otherwise a body of known size gets one, and a body of unknown size is
/// chunked. A body that is already over sends none (and no framing field but the
/// request's own).
///
/// `parts` carries no hop-by-hop fields: every request weir sends upstream went through
/// [`crate::headers::strip_connection_fields`] (or was built by weir without them), so a
/// client's `transfer-encoding` never reaches here and is not looked for again.
pub fn head(parts: &mut request::Parts, body: &RequestBody, out: &mut Vec<u8>) -> Framing {
    let declared = content_length(&parts.headers);
    let framing = if body.is_end_stream() {
        Framing::Length(0)
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        Framing::Length(n)
    } else {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        Framing::Chunked
    };
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    match parts.uri.path_and_query() {
        Some(pq) => out.extend_from_slice(pq.as_str().as_bytes()),
        None => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// The value of a request's `content-length` fields when they agree and parse.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    let n: u64 = std::str::from_utf8(first.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    values.all(|v| v == first).then_some(n)
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadError {
    /// The client's body failed (the client's fault: the body says which).
    Body,
    /// The body brought more or fewer bytes than its `content-length`.
    Length,
    /// Writing to the upstream failed.
    Io(io::Error),
}

/// A request on its way to the upstream: bytes queued for the socket, and the rest of the
/// body, encoded in the request's framing as its frames come.
#[derive(Debug)]
pub struct Upload {
    body: RequestBody,
    framing: Framing,
    /// Body bytes still owed under `content-length`.
    owed: u64,
    queue: VecDeque<Bytes>,
    /// The head (and a small body), written first.
    head: Vec<u8>,
    head_written: usize,
    body_done: bool,
}

/// A body at most this large is copied behind the head so both leave in one write.
const COALESCE: usize = 16 * 1024;

// === impl Upload ===

impl Upload {
    /// The upload of `head` (see [`head`]) and `body`.
    pub fn new(head: Vec<u8>, body: RequestBody, framing: Framing) -> Self {
        let owed = match framing {
            Framing::Length(n) => n,
            Framing::Chunked => 0,
        };
        let body_done = body.is_end_stream() && framing == Framing::Length(0);
        let mut upload = Upload {
            body,
            framing,
            owed,
            queue: VecDeque::new(),
            head,
            head_written: 0,
            body_done,
        };
        upload.take_held_body();
        upload
    }

    /// Queues a body weir holds itself (a retry's or mirror's copy, a health check) at
    /// once, so a small one leaves with the head in one write and can be sent again.
    fn take_held_body(&mut self) {
        if matches!(self.body, RequestBody::Client { .. }) {
            return;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !self.body_done {
            let queued = match std::pin::Pin::new(&mut self.body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => self.queue_frame(frame),
                Poll::Ready(None) => self.queue_end(),
                Poll::Ready(Some(Err(_))) | Poll::Pending => return,
            };
            if queued.is_err() {
                return;
            }
        }
    }

    /// Takes back the head buffer (its allocation is reused for the next request).
    pub fn into_head_buffer(self) -> Vec<u8> {
        self.head
    }

    /// The same request from its first byte, when weir holds all of it (the body was
    /// small enough to travel in the head's buffer): it can be sent on another connection.
    pub fn rewound(mut self) -> Option<Upload> {
        if !self.body_done || !self.queue.is_empty() {
            return None;
        }
        self.head_written = 0;
        Some(self)
    }

    /// Whether every byte of the request has been written.
    pub fn is_done(&self) -> bool {
        self.body_done && self.head_written == self.head.len() && self.queue.is_empty()
    }

    /// Writes as much of the request as the socket and the body allow; ready once all of
    /// it is written.
    pub fn poll(
        &mut self,
        io: &mut UpstreamIo,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), UploadError>> {
        loop {
            ready!(self.poll_flush(io, cx)).map_err(UploadError::Io)?;
            if self.body_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => self.queue_frame(frame)?,
                Some(Err(_)) => return Poll::Ready(Err(UploadError::Body)),
                None => self.queue_end()?,
            }
        }
    }

    /// Queues one frame of the body: data in the request's framing, trailers as the end of
    /// a chunked body (a body framed by length has no place for them: they are dropped, as
    /// hyper does).
    fn queue_frame(&mut self, frame: http_body::Frame<Bytes>) -> Result<(), UploadError> {
        match frame.into_data() {
            Ok(data) => self.queue_data(data),
            Err(frame) => {
                if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), self.framing) {
                    self.push(Bytes::from_static(b"0\r\n"));
                    self.push(trailer_block(&trailers));
                    self.body_done = true;
                }
                Ok(())
            }
        }
    }

    fn queue_data(&mut self, data: Bytes) -> Result<(), UploadError> {
        if data.is_empty() {
            return Ok(());
        }
        match self.framing {
            Framing::Length(_) => {
                self.owed = self
                    .owed
                    .checked_sub(data.len() as u64)
                    .ok_or(UploadError::Length)?;
                self.push(data);
            }
            Framing::Chunked => {
                self.push(Bytes::from(format!("{:x}\r\n", data.len())));
                self.push(data);
                self.push(Bytes::from_static(b"\r\n"));
            }
        }
        Ok(())
    }

    /// Queues bytes for the socket; small ones ride in the head's buffer while nothing of
    /// it has been written, so a small request leaves in one write.
    fn push(&mut self, bytes: Bytes) {
        if self.head_written == 0 && self.queue.is_empty() && bytes.len() <= COALESCE {
            self.head.extend_from_slice(&bytes);
        } else {
            self.queue.push_back(bytes);
        }
    }

    fn queue_end(&mut self) -> Result<(), UploadError> {
        if self.body_done {
            return Ok(());
        }
        match self.framing {
            Framing::Length(_) if self.owed != 0 => return Err(UploadError::Length),
            Framing::Length(_) => {}
            Framing::Chunked => self.push(Bytes::from_static(b"0\r\n\r\n")),
        }
        self.body_done = true;
        Ok(())
    }

    /// Writes the queued bytes, several buffers per system call.
    fn poll_flush(&mut self, io: &mut UpstreamIo, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.head_written < self.head.len() || !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 16];
            let mut n = 0;
            if self.head_written < self.head.len() {
                slices[0] = IoSlice::new(&self.head[self.head_written..]);
                n = 1;
            }
            for b in self.queue.iter().take(slices.len() - n) {
                slices[n] = IoSlice::new(b);
                n += 1;
            }
            let written = match ready!(io.poll_write_slices(cx, &slices[..n]))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                written => written,
            };
            self.advance(written);
        }
        // TLS holds written records until flushed (plain TCP has nothing to flush).
        Pin::new(&mut *io).poll_flush(cx)
    }

    fn advance(&mut self, mut written: usize) {
        let head_left = self.head.len() - self.head_written;
        let from_head = written.min(head_left);
        self.head_written += from_head;
        written -= from_head;
        while written > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if written >= front.len() {
                written -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }
}

/// The trailer fields of a chunked body, ended by the empty line.
fn trailer_block(trailers: &HeaderMap) -> Bytes {
    let mut out = Vec::new();
    for (name, value) in trailers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request};

    fn encode(req: Request<RequestBody>) -> (String, Framing) {
        let (mut parts, body) = req.into_parts();
        let mut out = Vec::new();
        let framing = head(&mut parts, &body, &mut out);
        (String::from_utf8_lossy(&out).into_owned(), framing)
    }

    #[test]
    fn a_bodiless_get_has_no_framing_field() {
        let req = Request::get("/a?b=c")
            .header("host", "up")
            .body(RequestBody::empty())
            .expect("request");
        let (text, framing) = encode(req);
        assert_eq!(text, "GET /a?b=c HTTP/1.1\r\nhost: up\r\n\r\n");
        assert_eq!(framing, Framing::Length(0));
    }

    #[test]
    fn a_body_of_known_size_gets_a_content_length_and_unknown_size_is_chunked() {
        let req = Request::post("/")
            .body(RequestBody::Full(Some(Bytes::from_static(b"hello"))))
            .expect("request");
        let (text, framing) = encode(req);
        assert_eq!(text, "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(framing, Framing::Length(5));

        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let req = Request::builder()
            .method(Method::PUT)
            .uri("/x")
            .body(RequestBody::Replay {
                data: Some(Bytes::from_static(b"hi")),
                trailers: Some(Box::new(trailers)),
            })
            .expect("request");
        let (text, framing) = encode(req);
        assert_eq!(
            text,
            "PUT /x HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing, Framing::Chunked);
    }

    #[test]
    fn the_clients_content_length_is_kept_and_conflicting_ones_are_not_trusted() {
        let req = Request::post("/")
            .header("content-length", "5")
            .body(RequestBody::Full(Some(Bytes::from_static(b"hello"))))
            .expect("request");
        assert_eq!(encode(req).1, Framing::Length(5));
        let mut headers = HeaderMap::new();
        headers.append("content-length", HeaderValue::from_static("5"));
        headers.append("content-length", HeaderValue::from_static("6"));
        assert_eq!(content_length(&headers), None);
    }

    #[test]
    fn uploads_queue_chunks_and_enforce_the_declared_length() {
        let body = RequestBody::Full(Some(Bytes::from_static(b"hello")));
        let up = Upload::new(b"POST / HTTP/1.1\r\n\r\n".to_vec(), body, Framing::Chunked);
        assert_eq!(
            up.head, b"POST / HTTP/1.1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "a small body rides with the head"
        );
        assert!(up.rewound().is_some(), "and can be sent again");

        let mut up = Upload::new(Vec::new(), RequestBody::empty(), Framing::Length(3));
        assert!(matches!(
            up.queue_data(Bytes::from_static(b"four")),
            Err(UploadError::Length)
        ));
        let mut up = Upload::new(Vec::new(), RequestBody::empty(), Framing::Length(3));
        up.queue_data(Bytes::from_static(b"ab")).expect("data");
        assert!(matches!(up.queue_end(), Err(UploadError::Length)));
    }
}
