//! `weir-error` on the answers hyper's HTTP/1.1 server makes itself when it cannot parse a
//! request head: `400 Bad Request`, `414 URI Too Long` and `431 Request Header Fields Too
//! Large`.
//!
//! **Why at the socket.** hyper writes these answers on its own, before any request exists,
//! and offers no hook to add a field to them; it only reports the parse error once the
//! connection is over. So the connection's socket, [`Tagged`] around the watched one, looks
//! at what hyper writes *between messages* and inserts `weir-error: <code>\r\n` right after
//! one of those status lines.
//!
//! **When it looks.** Only at the first write after hyper completed a flush while no
//! request was in progress, and only if still no request is in progress and none has
//! started and ended since that flush (see [`ClientClock::between_requests`]). hyper calls
//! the socket's flush only once its own buffer is empty, and it parses the next head only
//! after the previous response is flushed (its keep-alive step runs after the flush); every
//! response it makes for a request comes after that request started. So the first write
//! after such a flush starts a new message, and with no request it can only be hyper's own
//! answer to a head it refused. A write while a request is in progress is passed on
//! untouched after a comparison or two; nothing is copied or allocated unless an answer is
//! recognised.
//!
//! Watching for a pending head instead (client bytes since the last request ended) would
//! miss and mistake: a pipelined head often arrives in the same read as the request before
//! it, so no byte comes after that request ends; and weir ends a request on the clock as its
//! last frame is handed to hyper, before hyper writes it (an upstream's own `400 Bad
//! Request` with an empty body is written after its request ended). The completed flush is
//! the message boundary, whatever the client pipelines: a response whose last body chunk
//! begins with such a status line, flushed while the client pipelines a bad head, keeps its
//! bytes, and only the answer to that head is tagged (tests/it/parse_errors.rs).
//!
//! **The narrow ambiguity.** An answer is recognised by its first bytes alone, so it rests
//! on the clock saying truly when a response is over. If a request were ended on the clock
//! while hyper still had body bytes of its response to take, and hyper flushed in between,
//! a later chunk beginning with such a status line would get a `weir-error` line inside the
//! body. weir ends a request as its last frame is handed over (or at once for a body that is
//! already over, or when the body is dropped), so this cannot happen today; code that ends
//! requests earlier must keep it so. The converse miss is harmless: an answer that shares a
//! write with the end of the previous response goes out untagged (hyper's `pipeline_flush`,
//! off in weir, would do that to every pipelined one) and is still counted and logged.
//!
//! **Partial writes.** The rewritten head is held here: hyper is told its bytes were taken,
//! and what the socket did not take yet is written before anything else, by the next
//! write, flush or shutdown.
//!
//! HTTP/2 is left alone: h2 answers an oversized header list itself, HPACK-encoded, where no
//! field can be added (see docs/errors.md).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::client_timeouts::ClientClock;
use crate::error::ErrorCode;

/// An answer hyper's HTTP/1.1 server writes itself for a request head it refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorAnswer {
    /// `400 Bad Request`: a head hyper could not parse.
    BadRequest,
    /// `414 URI Too Long`: a request target over hyper's fixed 65,534 bytes.
    UriTooLong,
    /// `431 Request Header Fields Too Large`: a head over `max_request_header_bytes`, or
    /// with more than `max_request_headers` fields.
    HeaderTooLarge,
}

impl ParseErrorAnswer {
    /// The status.
    pub fn status(self) -> u16 {
        match self {
            ParseErrorAnswer::BadRequest => 400,
            ParseErrorAnswer::UriTooLong => 414,
            ParseErrorAnswer::HeaderTooLarge => 431,
        }
    }

    /// The `weir-error` code it carries.
    pub fn code(self) -> ErrorCode {
        match self {
            ParseErrorAnswer::BadRequest => ErrorCode::BadRequest,
            ParseErrorAnswer::UriTooLong => ErrorCode::UriTooLong,
            ParseErrorAnswer::HeaderTooLarge => ErrorCode::HeaderTooLarge,
        }
    }

    /// The answer with `status`, if it is one of them.
    pub fn from_status(status: u16) -> Option<Self> {
        match status {
            400 => Some(ParseErrorAnswer::BadRequest),
            414 => Some(ParseErrorAnswer::UriTooLong),
            431 => Some(ParseErrorAnswer::HeaderTooLarge),
            _ => None,
        }
    }

    /// The status line after `HTTP/1.x`, as hyper writes it (the canonical reason).
    fn line_tail(self) -> &'static [u8] {
        match self {
            ParseErrorAnswer::BadRequest => b" 400 Bad Request\r\n",
            ParseErrorAnswer::UriTooLong => b" 414 URI Too Long\r\n",
            ParseErrorAnswer::HeaderTooLarge => b" 431 Request Header Fields Too Large\r\n",
        }
    }

    /// The answer whose status line `head` starts with, and that line's length. hyper
    /// answers in HTTP/1.0 after an HTTP/1.0 request on the connection.
    pub fn recognise(head: &[u8]) -> Option<(Self, usize)> {
        const VERSION: usize = b"HTTP/1.1".len();
        let version = head.get(..VERSION)?;
        if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
            return None;
        }
        let answer = match head.get(VERSION + 1..VERSION + 4)? {
            b"400" => ParseErrorAnswer::BadRequest,
            b"414" => ParseErrorAnswer::UriTooLong,
            b"431" => ParseErrorAnswer::HeaderTooLarge,
            _ => return None,
        };
        let tail = answer.line_tail();
        head[VERSION..]
            .starts_with(tail)
            .then_some((answer, VERSION + tail.len()))
    }

    /// `head` with `weir-error: <code>` inserted after its status line of `line` bytes.
    fn tagged(self, head: &[u8], line: usize) -> Vec<u8> {
        let code = self.code().as_str().as_bytes();
        let mut out = Vec::with_capacity(head.len() + FIELD.len() + code.len() + 2);
        out.extend_from_slice(&head[..line]);
        out.extend_from_slice(FIELD);
        out.extend_from_slice(code);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&head[line..]);
        out
    }
}

/// The inserted field's name and separator.
const FIELD: &[u8] = b"weir-error: ";

/// A client connection's socket that writes hyper's answers to refused heads with
/// `weir-error` (see the module documentation); reads pass through.
#[derive(Debug)]
pub struct Tagged<T> {
    io: T,
    clock: Arc<ClientClock>,
    /// The [`ClientClock::between_requests`] stretch in which hyper last completed a flush,
    /// until the next write is looked at.
    armed: Option<u64>,
    /// A rewritten answer the socket has not taken whole yet.
    held: Vec<u8>,
    /// How much of `held` the socket took.
    sent: usize,
}

impl<T> Tagged<T> {
    /// Wraps `io`, which `clock` (the connection's) watches: its first write, if no
    /// request has started, is looked at.
    pub fn new(io: T, clock: Arc<ClientClock>) -> Self {
        Tagged {
            io,
            armed: clock.between_requests(),
            clock,
            held: Vec::new(),
            sent: 0,
        }
    }

    /// Takes `first`, the first bytes of a write, over when they are hyper's answer to a
    /// refused head: holds them with `weir-error` and returns how many bytes hyper may
    /// count as written.
    fn take_answer(&mut self, first: &[u8]) -> Option<usize> {
        if first.is_empty() {
            return None;
        }
        let stretch = self.armed.take()?;
        if self.clock.between_requests() != Some(stretch) {
            return None;
        }
        let (answer, line) = ParseErrorAnswer::recognise(first)?;
        self.clock.note_parse_error_status(answer.status());
        self.held = answer.tagged(first, line);
        self.sent = 0;
        Some(first.len())
    }
}

impl<T: AsyncWrite + Unpin> Tagged<T> {
    /// Writes what is held; ready once nothing is.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if !self.held.is_empty() {
            self.held = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Reports `taken` bytes written after a rewrite, sending what the socket takes now;
    /// the rest goes before the next write, flush or shutdown.
    fn accepted(&mut self, cx: &mut Context<'_>, taken: usize) -> Poll<io::Result<usize>> {
        match self.poll_drain(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(taken)),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tagged<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tagged<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.armed.is_some() {
            if let Some(taken) = this.take_answer(buf) {
                return this.accepted(cx, taken);
            }
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    /// hyper's server writes vectored, its head being the first slice with bytes.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if this.armed.is_some() {
            // Slices before the first with bytes are empty: taking it is taking every byte
            // up to its end.
            let first = bufs.iter().find(|b| !b.is_empty());
            if let Some(taken) = first.and_then(|first| this.take_answer(first)) {
                return this.accepted(cx, taken);
            }
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    /// What is held goes first. A flush that completes while no request is in progress
    /// arms the look at the next write.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.armed = this.clock.between_requests();
        Poll::Ready(Ok(()))
    }

    /// What is held goes first.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::proxy::client_timeouts::Watched;

    impl<T> Tagged<T> {
        fn get_ref(&self) -> &T {
            &self.io
        }
    }

    const BAD: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";
    const BAD_TAGGED: &[u8] = b"HTTP/1.1 400 Bad Request\r\nweir-error: bad_request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";

    /// A socket that takes at most `step` bytes a call and keeps them; a `stalling` one
    /// answers every other call `Pending` (after waking its task).
    #[derive(Debug, Default)]
    struct Stingy {
        step: usize,
        stalling: bool,
        written: Vec<u8>,
        calls: usize,
        shut: bool,
    }

    impl AsyncWrite for Stingy {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.stalling && this.calls % 2 == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(this.step);
            this.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            // Takes from the first slice with bytes only, as a short vectored write may.
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            self.poll_write(cx, first)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    fn socket(step: usize, stalling: bool) -> (Tagged<Stingy>, Arc<ClientClock>) {
        let clock = ClientClock::new();
        let io = Stingy {
            step,
            stalling,
            ..Default::default()
        };
        (Tagged::new(io, clock.clone()), clock)
    }

    /// Writes `slices` as hyper's flush loop does: vectored, dropping what each call took,
    /// until nothing is left.
    async fn write_all_vectored(socket: &mut Tagged<Stingy>, mut slices: Vec<&[u8]>) {
        while slices.iter().any(|s| !s.is_empty()) {
            let mut n = {
                let bufs: Vec<IoSlice<'_>> = slices.iter().map(|b| IoSlice::new(b)).collect();
                std::future::poll_fn(|cx| Pin::new(&mut *socket).poll_write_vectored(cx, &bufs))
                    .await
                    .expect("write")
            };
            assert!(n > 0, "progress");
            for s in slices.iter_mut() {
                let k = n.min(s.len());
                *s = &s[k..];
                n -= k;
            }
        }
    }

    fn written(socket: &Tagged<Stingy>) -> &[u8] {
        &socket.get_ref().written
    }

    #[test]
    fn the_answers_hyper_writes_are_recognised_and_nothing_else() {
        type Recognised = Option<(ParseErrorAnswer, usize)>;
        let cases: [(&[u8], Recognised); 9] = [
            (BAD, Some((ParseErrorAnswer::BadRequest, 26))),
            (
                b"HTTP/1.0 400 Bad Request\r\n\r\n",
                Some((ParseErrorAnswer::BadRequest, 26)),
            ),
            (
                b"HTTP/1.1 414 URI Too Long\r\n",
                Some((ParseErrorAnswer::UriTooLong, 27)),
            ),
            (
                b"HTTP/1.0 431 Request Header Fields Too Large\r\nx",
                Some((ParseErrorAnswer::HeaderTooLarge, 46)),
            ),
            (b"HTTP/1.1 200 OK\r\n", None),
            (b"HTTP/1.1 400 Bad Request", None),
            (b"HTTP/1.1 400 Nope\r\n", None),
            (b"HTTP/2.0 400 Bad Request\r\n", None),
            (b"HTTP/1.1 4", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                ParseErrorAnswer::recognise(head),
                want,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[tokio::test]
    async fn an_answer_without_a_request_gets_weir_error_even_one_byte_at_a_time() {
        let (mut socket, clock) = socket(1, true);
        socket.write_all(BAD).await.expect("write");
        socket.flush().await.expect("flush");
        assert_eq!(
            String::from_utf8_lossy(written(&socket)),
            String::from_utf8_lossy(BAD_TAGGED)
        );
        assert_eq!(clock.parse_error_status(), Some(400));
    }

    #[tokio::test]
    async fn held_bytes_go_before_the_next_write_and_before_shutdown() {
        let (mut socket, _clock) = socket(3, true);
        // hyper writes its head, then (were there one) more bytes, then shuts down.
        let n = socket.write(BAD).await.expect("write");
        assert_eq!(n, BAD.len(), "hyper is told its head was taken");
        socket.write_all(b"after").await.expect("write");
        socket.shutdown().await.expect("shutdown");
        let mut want = BAD_TAGGED.to_vec();
        want.extend_from_slice(b"after");
        assert_eq!(written(&socket), &want[..]);
        assert!(socket.get_ref().shut);
    }

    #[tokio::test]
    async fn a_vectored_answer_is_tagged_and_later_slices_follow_in_order() {
        let (mut socket, _clock) = socket(5, true);
        write_all_vectored(&mut socket, vec![b"", BAD, b"tail"]).await;
        socket.flush().await.expect("flush");
        let mut want = BAD_TAGGED.to_vec();
        want.extend_from_slice(b"tail");
        assert_eq!(
            String::from_utf8_lossy(written(&socket)),
            String::from_utf8_lossy(&want)
        );
    }

    #[tokio::test]
    async fn a_vectored_response_passes_through_untouched() {
        let (mut socket, clock) = socket(usize::MAX, false);
        clock.request_started();
        write_all_vectored(
            &mut socket,
            vec![b"HTTP/1.1 400 Bad Request\r\n\r\n", b"body"],
        )
        .await;
        assert_eq!(written(&socket), b"HTTP/1.1 400 Bad Request\r\n\r\nbody");
        assert_eq!(
            socket.get_ref().calls,
            2,
            "one call a slice, as the socket took them"
        );
    }

    #[tokio::test]
    async fn responses_to_requests_pass_through_untouched() {
        let (mut socket, clock) = socket(usize::MAX, false);
        // A request in progress: even an answer-like head is the response's.
        clock.request_started();
        socket.write_all(BAD).await.expect("write");
        // The request ends as its last frame is handed over, before hyper writes it.
        clock.request_ended();
        socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nlast chunk")
            .await
            .expect("write");
        socket.flush().await.expect("flush");
        // The next request's response, ended before it is written (an empty upstream body).
        clock.request_started();
        clock.request_ended();
        socket.write_all(BAD).await.expect("write");
        socket.flush().await.expect("flush");
        let mut want = BAD.to_vec();
        want.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n\r\nlast chunk");
        want.extend_from_slice(BAD);
        assert_eq!(written(&socket), &want[..]);
        assert_eq!(clock.parse_error_status(), None);
        assert_eq!(socket.get_ref().calls, 3, "one write each, nothing held");
    }

    #[tokio::test]
    async fn after_a_flushed_response_hypers_answer_to_the_next_head_is_tagged() {
        let (mut socket, clock) = socket(usize::MAX, false);
        clock.request_started();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
            .await
            .expect("write");
        clock.request_ended();
        socket.write_all(b"ok").await.expect("write");
        socket.flush().await.expect("flush");
        // The pipelined head after it did not parse.
        socket.write_all(BAD).await.expect("write");
        socket.flush().await.expect("flush");
        let mut want = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec();
        want.extend_from_slice(BAD_TAGGED);
        assert_eq!(
            String::from_utf8_lossy(written(&socket)),
            String::from_utf8_lossy(&want)
        );
    }

    #[tokio::test]
    async fn http2_connections_are_not_looked_at() {
        let (mut socket, clock) = socket(usize::MAX, false);
        let mut preface = [0u8; 24];
        preface.copy_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let mut reader = Watched::new(&preface[..], clock.clone());
        let mut read = Vec::new();
        reader.read_to_end(&mut read).await.expect("read");
        socket.write_all(BAD).await.expect("write");
        assert_eq!(written(&socket), BAD);
    }
}
