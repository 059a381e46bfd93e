//! Making a request body replayable: a retry or a mirror copy needs the body again after the
//! first attempt consumed it, so a small body is read into memory first (as Envoy buffers
//! up to its per-request buffer limit); a large or endless one keeps streaming and is sent
//! once.
//!
//! Buffering is store-and-forward: the first attempt starts only when the whole body is in.
//! Call this only for routes that retry or mirror.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::body::RequestBody;

/// The buffer limit weir uses: bodies up to 64 KiB are replayable.
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// A request body after [`buffer_for_replay`] looked at it.
#[derive(Debug)]
pub enum Replayable {
    /// The whole body, in memory, and its trailers (gRPC sends `grpc-*` trailers on unary
    /// calls too): can be sent any number of times.
    Bytes(Bytes, Option<HeaderMap>),
    /// Too large to hold: the body to send once (what was already read goes first).
    NotReplayable(RequestBody),
}

/// Reads `body` into memory when it fits in `limit` bytes; otherwise returns it, with the
/// bytes read so far put back in front, so the request still streams and loses nothing.
///
/// A body whose declared length already exceeds `limit` is not read at all. Trailers of a
/// buffered body are kept. An error reading the body is returned as is: the client's body
/// is broken and the request cannot be sent. A body that streams on is ended when the
/// client stops sending it for `stream_idle`.
pub async fn buffer_for_replay(
    mut body: Incoming,
    limit: usize,
    stream_idle: std::time::Duration,
) -> Result<Replayable, hyper::Error> {
    if body.is_end_stream() {
        return Ok(Replayable::Bytes(Bytes::new(), None));
    }
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Ok(Replayable::NotReplayable(RequestBody::client(
            None,
            body,
            stream_idle,
        )));
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame?.into_data() {
            Ok(data) => {
                total += data.len();
                chunks.push(data);
                if total > limit {
                    let read = concat(chunks, total);
                    return Ok(Replayable::NotReplayable(RequestBody::client(
                        Some(read),
                        body,
                        stream_idle,
                    )));
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(t) = frame.into_trailers() {
            trailers.get_or_insert_with(HeaderMap::new).extend(t);
        }
    }
    Ok(Replayable::Bytes(concat(chunks, total), trailers))
}

/// Joins chunks, without copying when there is only one.
fn concat(mut chunks: Vec<Bytes>, total: usize) -> Bytes {
    if chunks.len() <= 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut joined = BytesMut::with_capacity(total);
    for chunk in chunks {
        joined.extend_from_slice(&chunk);
    }
    joined.freeze()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use http::{Request, Response};
    use http_body::Frame;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A copy of a buffered body as a retry sends it, or `None` when it cannot be replayed.
    fn replay(replayable: &Replayable) -> Option<RequestBody> {
        match replayable {
            Replayable::Bytes(data, trailers) => Some(RequestBody::Replay {
                data: Some(data.clone()).filter(|d| !d.is_empty()),
                trailers: trailers.clone().map(Box::new),
            }),
            Replayable::NotReplayable(_) => None,
        }
    }

    /// The body as the first attempt sends it.
    fn first_attempt(replayable: Replayable) -> RequestBody {
        match replayable {
            Replayable::Bytes(data, trailers) => RequestBody::Replay {
                data: Some(data).filter(|d| !d.is_empty()),
                trailers: trailers.map(Box::new),
            },
            Replayable::NotReplayable(body) => body,
        }
    }

    /// The byte at offset `i` of every test body, so a reordering or loss shows.
    fn pattern(len: usize) -> Bytes {
        (0..len)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    /// A body sent in chunks of unknown total length (HTTP/1.1 chunked encoding).
    struct Chunked {
        data: Bytes,
        chunk: usize,
        trailers: Option<HeaderMap>,
    }

    impl Body for Chunked {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if !self.data.is_empty() {
                let n = self.chunk.min(self.data.len());
                let chunk = self.data.split_to(n);
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
        }
    }

    /// Serves HTTP/1.1 and HTTP/2 on a free port; every request's body goes through
    /// `buffer_for_replay` and the answer says what came of it: `bytes trailers=N`,
    /// `prefixed` (read past the limit) or `streamed` (not read: declared too large), then
    /// the length the body yields afterwards and `intact` when those bytes are the expected
    /// pattern (and a replay yields the same bytes and trailers).
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let handler = service_fn(|req: Request<Incoming>| async move {
                        let answer = match buffer_for_replay(
                            req.into_body(),
                            REPLAY_LIMIT,
                            std::time::Duration::from_secs(300),
                        )
                        .await
                        {
                            Err(e) => format!("error {e}"),
                            Ok(replayable) => {
                                let kind = match &replayable {
                                    Replayable::Bytes(_, t) => {
                                        format!(
                                            "bytes trailers={}",
                                            t.as_ref().map_or(0, HeaderMap::len)
                                        )
                                    }
                                    Replayable::NotReplayable(RequestBody::Client {
                                        prefix: Some(_),
                                        ..
                                    }) => "prefixed".to_string(),
                                    Replayable::NotReplayable(_) => "streamed".to_string(),
                                };
                                // Drain what would be sent upstream (twice when replayable).
                                let again = replay(&replayable);
                                let sent = first_attempt(replayable).collect().await;
                                let (sent, trailers) = match sent {
                                    Ok(c) => {
                                        let trailers = c.trailers().cloned();
                                        (c.to_bytes(), trailers)
                                    }
                                    Err(_) => (Bytes::new(), None),
                                };
                                let mut intact = sent == pattern(sent.len());
                                if let Some(again) = again {
                                    let replayed = again
                                        .collect()
                                        .await
                                        .map(|c| (c.trailers().cloned(), c.to_bytes()));
                                    intact &= replayed.ok() == Some((trailers, sent.clone()));
                                }
                                format!(
                                    "{kind} {} {}",
                                    sent.len(),
                                    if intact { "intact" } else { "corrupt" }
                                )
                            }
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        address
    }

    async fn send<B>(address: SocketAddr, http2: bool, body: B) -> String
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let io = TokioIo::new(TcpStream::connect(address).await.expect("connect"));
        let uri = format!("http://{address}/");
        let req = Request::post(uri).body(body).expect("request");
        let response = if http2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .expect("handshake");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .expect("handshake");
            tokio::spawn(conn);
            sender.send_request(req).await.expect("response")
        };
        let body = response
            .into_body()
            .collect()
            .await
            .expect("answer")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    const BUFFERED: [(usize, &str); 3] = [
        (0, "bytes trailers=0 0 intact"),
        (10, "bytes trailers=0 10 intact"),
        (65_536, "bytes trailers=0 65536 intact"),
    ];

    #[tokio::test]
    async fn bodies_up_to_64k_of_known_length_are_buffered_and_larger_ones_stream_whole() {
        let address = server().await;
        for http2 in [false, true] {
            let large = [
                (65_537, "streamed 65537 intact"),
                (1 << 20, "streamed 1048576 intact"),
            ];
            for (len, expected) in BUFFERED.into_iter().chain(large) {
                let answer = send(address, http2, Full::new(pattern(len))).await;
                assert_eq!(answer, expected, "{len} bytes, known length, http2={http2}");
            }
        }
    }

    #[tokio::test]
    async fn chunked_bodies_are_buffered_until_they_outgrow_64k_and_then_stream_without_loss() {
        let address = server().await;
        for http2 in [false, true] {
            let large = [
                (65_537, "prefixed 65537 intact"),
                (1 << 20, "prefixed 1048576 intact"),
            ];
            for (len, expected) in BUFFERED.into_iter().chain(large) {
                let body = Chunked {
                    data: pattern(len),
                    chunk: 10_000,
                    trailers: None,
                };
                let answer = send(address, http2, body).await;
                assert_eq!(answer, expected, "{len} bytes, chunked, http2={http2}");
            }
        }
    }

    #[tokio::test]
    async fn a_small_body_keeps_its_trailers_for_every_replay() {
        let address = server().await;
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        trailers.insert("x-checksum", http::HeaderValue::from_static("abc"));
        let body = Chunked {
            data: pattern(100),
            chunk: 30,
            trailers: Some(trailers),
        };
        let answer = send(address, true, body).await;
        assert_eq!(answer, "bytes trailers=2 100 intact");
    }

    #[test]
    fn concat_joins_chunks_in_order() {
        let joined = concat(
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")],
            4,
        );
        assert_eq!(joined, Bytes::from_static(b"abcd"));
        assert_eq!(concat(Vec::new(), 0), Bytes::new());
    }
}
