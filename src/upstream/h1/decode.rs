//! Reading an HTTP/1.1 response: the head (parsed with httparse, as hyper does), how its
//! body is delimited (RFC 9112 §6.3), and the body itself, chunked or not. Everything here
//! works on bytes already read; the connection does the reading.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body::Frame;

/// Header fields a response may have (hyper's default).
const MAX_HEADERS: usize = 100;

/// Largest response head weir reads.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Longest chunk-size line (with extensions) weir accepts.
const MAX_CHUNK_LINE: usize = 4096;

/// Largest trailer block weir accepts.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed response: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// A parsed response head and what it says about the body and the connection.
#[derive(Debug)]
pub struct Head {
    /// Status and header fields.
    pub response: Response<()>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// What the request asked that decides how its answer is framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Asked {
    /// The request was a HEAD: its answer has no body.
    pub head: bool,
    /// The request asked to switch protocols (`upgrade`): a 101 hands the connection over.
    pub upgrade: bool,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `101 Switching Protocols` to a request that asked for it: no body; the connection
    /// now carries the new protocol.
    Switched,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes.
    UntilClose,
}

/// Parses a response head at the start of `buf`, taking it out of the buffer; `Ok(None)`
/// when more bytes are needed. Interim 1xx responses (other than 101) are skipped.
pub fn head(buf: &mut BytesMut, asked: Asked) -> Result<Option<Head>, Malformed> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut fields);
        let len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(Malformed("the head is too large"))
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Malformed("too many header fields"))
            }
            Err(_) => return Err(Malformed("the head does not parse")),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| Malformed("bad status code"))?;
        if status.is_informational() && code != 101 {
            buf.advance(len);
            continue;
        }
        let version = match parsed.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let count = parsed.headers.len();
        // Field values are sliced out of the head's bytes, not copied. The list of spans is
        // allocated: a fixed array of 100 spans, zeroed for every response, measured about
        // 3,000 instructions a request more than this allocation.
        let offsets: Vec<(HeaderName, usize, usize)> = {
            let base = buf.as_ptr() as usize;
            let mut v = Vec::with_capacity(count);
            for f in parsed.headers.iter() {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| Malformed("bad header name"))?;
                let start = f.value.as_ptr() as usize - base;
                v.push((name, start, f.value.len()));
            }
            v
        };
        let bytes = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        for (name, start, n) in offsets {
            let value = HeaderValue::from_maybe_shared(bytes.slice(start..start + n))
                .map_err(|_| Malformed("bad header value"))?;
            headers.append(name, value);
        }
        let (body, keep_alive) = framing(status, version, &mut headers, asked)?;
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            body,
            keep_alive,
        }));
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3) and whether the connection
/// stays open. A response with both `transfer-encoding` and `content-length` is framed by
/// the former and loses the latter, so nothing downstream trusts a length that lies.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    asked: Asked,
) -> Result<(BodyKind, bool), Malformed> {
    let mut keep_alive = match version {
        Version::HTTP_10 => has_token(headers, "keep-alive"),
        _ => !has_token(headers, "close"),
    };
    let no_body = asked.head
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // A switch nobody asked for would leave the connection in an unknown protocol.
        return match asked.upgrade {
            true => Ok((BodyKind::Switched, false)),
            false => Err(Malformed(
                "101 Switching Protocols to a request that asked for no upgrade",
            )),
        };
    }
    if no_body {
        return Ok((BodyKind::Empty, keep_alive));
    }
    if let Some(te) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let chunked = te
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        headers.remove(header::CONTENT_LENGTH);
        return Ok(if chunked {
            (BodyKind::Chunked, keep_alive)
        } else {
            (BodyKind::UntilClose, false)
        });
    }
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let n = std::str::from_utf8(first.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(Malformed("bad content-length"))?;
        if lengths.any(|v| v != first) {
            return Err(Malformed("conflicting content-length fields"));
        }
        return Ok((BodyKind::Length(n), keep_alive));
    }
    keep_alive = false;
    Ok((BodyKind::UntilClose, keep_alive))
}

/// Whether a `connection` field lists `token`.
fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        let v = v.as_bytes();
        // The common field holds one token: compare it whole before splitting.
        v.eq_ignore_ascii_case(token.as_bytes())
            || v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Where a chunked body's decoding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk with this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailers,
    /// The body is complete.
    Done,
}

/// What decoding found in the buffer.
#[derive(Debug)]
pub enum Decoded {
    /// A frame for the client.
    Frame(Frame<Bytes>),
    /// More bytes are needed.
    NeedMore,
    /// The body is complete.
    End,
}

impl Chunked {
    /// Decodes the next frame of a chunked body out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Malformed> {
        loop {
            match *self {
                Chunked::Done => return Ok(Decoded::End),
                Chunked::Size => {
                    let Some(end) = find_crlf(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let line = &buf[..end];
                    let digits = line
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    if digits.is_empty() || digits.len() > 16 {
                        return Err(Malformed("bad chunk size"));
                    }
                    let size = digits.iter().try_fold(0u64, |n, &b| {
                        let d = (b as char).to_digit(16)?;
                        n.checked_mul(16)?.checked_add(u64::from(d))
                    });
                    let size = size.ok_or(Malformed("bad chunk size"))?;
                    buf.advance(end + 2);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (left.min(buf.len() as u64)) as usize;
                    let data = buf.split_to(n).freeze();
                    *self = if left == n as u64 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n as u64)
                    };
                    return Ok(Decoded::Frame(Frame::data(data)));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.len() >= 2 && &buf[..2] == b"\r\n" {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Decoded::End);
                    }
                    let Some(end) = find(buf, b"\r\n\r\n", MAX_TRAILERS)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let block = buf.split_to(end + 4);
                    *self = Chunked::Done;
                    return Ok(Decoded::Frame(Frame::trailers(trailers(&block)?)));
                }
            }
        }
    }
}

/// Parses a trailer block (fields, then the empty line).
fn trailers(block: &[u8]) -> Result<HeaderMap, Malformed> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(block, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => {
            let mut map = HeaderMap::with_capacity(parsed.len());
            for f in parsed {
                let name = HeaderName::from_bytes(f.name.as_bytes())
                    .map_err(|_| Malformed("bad trailer name"))?;
                let value =
                    HeaderValue::from_bytes(f.value).map_err(|_| Malformed("bad trailer value"))?;
                map.append(name, value);
            }
            Ok(map)
        }
        _ => Err(Malformed("the trailers do not parse")),
    }
}

/// Position of the first CRLF in `buf`; an error when none is within `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, Malformed> {
    find(buf, b"\r\n", limit)
}

fn find(buf: &[u8], needle: &[u8], limit: usize) -> Result<Option<usize>, Malformed> {
    match buf.windows(needle.len()).position(|w| w == needle) {
        Some(i) if i <= limit => Ok(Some(i)),
        Some(_) => Err(Malformed("a line is too long")),
        None if buf.len() > limit => Err(Malformed("a line is too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, head_request: bool) -> Result<Option<Head>, Malformed> {
        let asked = Asked {
            head: head_request,
            upgrade: false,
        };
        let mut buf = BytesMut::from(text.as_bytes());
        head(&mut buf, asked)
    }

    #[test]
    fn a_switch_is_accepted_only_when_the_request_asked_for_it() {
        let text = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\x01\x05hello";
        let mut buf = BytesMut::from(text.as_bytes());
        let asked = Asked {
            head: false,
            upgrade: true,
        };
        let h = head(&mut buf, asked).expect("parses").expect("complete");
        assert_eq!((h.body, h.keep_alive), (BodyKind::Switched, false));
        assert_eq!(
            &buf[..],
            b"\x01\x05hello",
            "bytes of the new protocol stay for the tunnel"
        );
        assert_eq!(
            parse(text, false).err(),
            Some(Malformed(
                "101 Switching Protocols to a request that asked for no upgrade"
            ))
        );
    }

    #[test]
    fn heads_say_how_the_body_is_framed_and_whether_the_connection_stays() {
        let h = parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello",
            false,
        )
        .expect("parses")
        .expect("complete");
        assert_eq!((h.body, h.keep_alive), (BodyKind::Length(5), true));
        assert_eq!(h.response.headers()["x-a"], "b");
        let h = parse(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 9\r\n\r\n",
            false,
        )
        .expect("parses")
        .expect("complete");
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(
            h.response.headers().get("content-length").is_none(),
            "a lying length is dropped"
        );
        let h = parse("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", false)
            .expect("parses")
            .expect("complete");
        assert_eq!((h.body, h.keep_alive), (BodyKind::UntilClose, false));
        let h = parse("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", false)
            .expect("parses")
            .expect("complete");
        assert!(!h.keep_alive, "HTTP/1.0 closes unless it says keep-alive");
        let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
            .expect("parses")
            .expect("complete");
        assert_eq!(h.body, BodyKind::Empty, "a HEAD answer has no body");
        let h = parse("HTTP/1.1 204 No Content\r\n\r\n", false)
            .expect("parses")
            .expect("complete");
        assert_eq!(h.body, BodyKind::Empty);
    }

    #[test]
    fn interim_answers_are_skipped_and_partial_heads_wait() {
        let h = parse(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
            false,
        )
        .expect("parses")
        .expect("complete");
        assert_eq!(h.response.status(), 201);
        assert!(parse("HTTP/1.1 200 OK\r\ncontent-le", false)
            .expect("parses")
            .is_none());
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(parse(bad, false).is_err(), "{bad:?}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(parse(&huge, false).is_err());
    }

    fn decode_all(
        mut state: Chunked,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), Malformed> {
        let mut buf = BytesMut::from(wire);
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match state.decode(&mut buf)? {
                Decoded::Frame(f) => match f.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(f) => trailers = f.into_trailers().ok(),
                },
                Decoded::End => return Ok((data, trailers)),
                Decoded::NeedMore => return Err(Malformed("incomplete")),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let (data, trailers) =
            decode_all(Chunked::Size, b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                .expect("decodes");
        assert_eq!(data, b"hello world");
        assert!(trailers.is_none());
        let (data, trailers) =
            decode_all(Chunked::Size, b"2\r\nhi\r\n0\r\ngrpc-status: 0\r\n\r\n").expect("decodes");
        assert_eq!(data, b"hi");
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"ffffffffffffffff0\r\n",
        ] {
            assert!(decode_all(Chunked::Size, bad).is_err(), "{bad:?}");
        }
        let long = [b'1'; MAX_CHUNK_LINE + 10];
        assert!(decode_all(Chunked::Size, &long).is_err());
    }
}
