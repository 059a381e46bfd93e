//! HTTP/2 floods with hand-made frames (RFC 9113), which no well-behaved client library
//! sends: streams opened and reset at once (rapid reset, CVE-2023-44487), a header block
//! continued without end (CONTINUATION flood, CVE-2024-27316), and header blocks that
//! decompress past the header list limit: a little (431, the connection goes on) or far
//! (an HPACK bomb: the connection ends).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{a_good_client_is_served, config, local};
use crate::support::{free_port, metric_settles, Upstream, Weir};

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// RST_STREAM and GOAWAY error codes.
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// `GET /` with `:authority: 127.0.0.1` (static table entries and one literal).
const GET_ROOT: &[u8] = &[
    0x82, 0x86, 0x84, 0x01, 0x09, b'1', b'2', b'7', b'.', b'0', b'.', b'0', b'.', b'1',
];

/// One frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A frame read back: (type, flags, stream, payload).
type Frame = (u8, u8, u32, Vec<u8>);

/// The next frame from `stream`, or `None` when it closed (or sent nothing for 3 s).
async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    tokio::time::timeout(Duration::from_secs(3), async {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await.ok()?;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        Some((head[3], head[4], id, payload))
    })
    .await
    .ok()
    .flatten()
}

/// Opens an h2c connection to weir: the preface and an empty SETTINGS, then weir's
/// SETTINGS acknowledged.
async fn h2c(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(local(port)).await.expect("connect");
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    loop {
        let (kind, flags, _, _) = read_frame(&mut stream).await.expect("weir's SETTINGS");
        if kind == SETTINGS && flags & ACK == 0 {
            break;
        }
    }
    stream
        .write_all(&frame(SETTINGS, ACK, 0, &[]))
        .await
        .expect("SETTINGS ACK");
    stream
}

/// Reads frames until the connection closes (3 s without one ends it too); the frames.
async fn frames_until_closed(stream: &mut TcpStream) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(f) = read_frame(stream).await {
        frames.push(f);
    }
    frames
}

/// The error code of the GOAWAY among `frames`, if there is one.
fn goaway(frames: &[Frame]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.0 == GOAWAY)
        .map(|f| u32::from_be_bytes([f.3[4], f.3[5], f.3[6], f.3[7]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_opened_and_reset_at_once_end_in_goaway_enhance_your_calm() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut attack = h2c(port).await;
    // Up to 10,000 streams, each HEADERS then RST_STREAM(CANCEL), 100 to a write.
    const STREAMS: u32 = 10_000;
    let started = Instant::now();
    let mut sent = 0;
    while sent < STREAMS {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let id = 2 * sent + 1;
            batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, GET_ROOT));
            batch.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
            sent += 1;
        }
        // A write weir never reads ends the attack too (1 s at most each).
        let written = tokio::time::timeout(Duration::from_secs(1), attack.write_all(&batch)).await;
        if !matches!(written, Ok(Ok(()))) {
            break;
        }
        if sent == 1_000 {
            a_good_client_is_served(port, "up", Duration::ZERO).await;
        }
    }
    let frames = frames_until_closed(&mut attack).await;
    assert_eq!(
        goaway(&frames),
        Some(ENHANCE_YOUR_CALM),
        "after {sent} streams in {:?}: {:?}",
        started.elapsed(),
        frames.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>()
    );
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    // Streams weir accepted before the reset may have reached the upstream; what matters
    // is that none is left in flight and the flood did not run on.
    assert_eq!(
        metric_settles(&weir, "weir_http_requests_in_flight", &[], 0.0).await,
        0.0
    );
    let reached = up.paths().iter().filter(|p| *p == "/").count();
    eprintln!("rapid reset: {sent} streams sent, {reached} reached the upstream");
    assert!(
        reached < 1_000,
        "{reached} reset streams reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_continued_without_end_ends_in_goaway_and_reaches_no_upstream() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut attack = h2c(port).await;
    let mut flood = frame(HEADERS, END_STREAM, 1, GET_ROOT);
    // Up to 10,000 CONTINUATION frames, none ending the block, each one small field
    // (`x-c: c`, a literal never indexed).
    let field = [0x10, 0x03, b'x', b'-', b'c', 0x01, b'c'];
    let mut sent = 0;
    while sent < 10_000 {
        for _ in 0..100 {
            flood.extend(frame(CONTINUATION, 0, 1, &field));
        }
        sent += 100;
        // A write weir never reads ends the attack too (1 s at most each).
        let written = tokio::time::timeout(Duration::from_secs(1), attack.write_all(&flood)).await;
        if !matches!(written, Ok(Ok(()))) {
            break;
        }
        flood.clear();
        if sent == 100 {
            a_good_client_is_served(port, "up", Duration::ZERO).await;
        }
    }
    let frames = frames_until_closed(&mut attack).await;
    assert_eq!(
        goaway(&frames),
        Some(ENHANCE_YOUR_CALM),
        "after {sent} CONTINUATION frames: {:?}",
        frames.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>()
    );
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    assert_eq!(
        up.paths(),
        ["/good", "/good"],
        "the endless head reached no upstream"
    );
}

/// Stream 1: `GET /` that puts `x-bomb: a…` (4,000 bytes) into the dynamic table (index 62)
/// and then refers to it `references` times, one byte each (about 4 KB of fields per byte
/// on the wire), in HEADERS and CONTINUATION frames of 16 KiB.
fn bomb(references: usize) -> Vec<u8> {
    let mut block = GET_ROOT.to_vec();
    block.extend([0x40, 0x06]);
    block.extend(b"x-bomb");
    block.extend([0x7f, 0xa1, 0x1e]); // 4,000 = 127 + 3,873 (HPACK integer, 7-bit prefix)
    block.extend(std::iter::repeat_n(b'a', 4_000));
    block.extend(std::iter::repeat_n(0x80 | 62, references));
    let mut frames = Vec::new();
    for start in (0..block.len()).step_by(16_384) {
        let chunk = &block[start..block.len().min(start + 16_384)];
        let last = start + 16_384 >= block.len();
        let (kind, flags) = match (start == 0, last) {
            (true, true) => (HEADERS, END_STREAM | END_HEADERS),
            (true, false) => (HEADERS, END_STREAM),
            (false, true) => (CONTINUATION, END_HEADERS),
            (false, false) => (CONTINUATION, 0),
        };
        frames.extend(frame(kind, flags, 1, chunk));
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpack_bomb_ends_in_goaway_enhance_your_calm_and_reaches_no_upstream() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut attack = h2c(port).await;
    // 1,000 references: about 4 MB of fields from 5 KB, the limit being 60 KiB.
    attack.write_all(&bomb(1_000)).await.expect("write");
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    let frames = frames_until_closed(&mut attack).await;
    let goaway_frame = frames.iter().find(|f| f.0 == GOAWAY);
    assert_eq!(
        goaway(&frames),
        Some(ENHANCE_YOUR_CALM),
        "{:?}",
        frames.iter().map(|f| (f.0, f.1, f.2)).collect::<Vec<_>>()
    );
    assert_eq!(
        goaway_frame.map(|f| String::from_utf8_lossy(&f.3[8..]).into_owned()),
        Some("header_list_way_too_large".to_string())
    );
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    assert_eq!(
        up.paths(),
        ["/good", "/good"],
        "the bomb reached no upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_that_decompresses_past_the_limit_gets_431_and_the_connection_goes_on() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let _weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut attack = h2c(port).await;
    // 20 references: about 80 KB of fields, over the 60 KiB limit but not abusively.
    attack.write_all(&bomb(20)).await.expect("write");
    // Then a plain request on the same connection.
    attack
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 3, GET_ROOT))
        .await
        .expect("write");
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    let mut status = [None, None];
    let deadline = Instant::now() + Duration::from_secs(5);
    while status.iter().any(Option::is_none) && Instant::now() < deadline {
        let Some((kind, _, id, payload)) = read_frame(&mut attack).await else {
            break;
        };
        assert_ne!(kind, GOAWAY, "the connection is not torn down: {payload:?}");
        if kind == HEADERS && (id == 1 || id == 3) {
            status[(id / 2) as usize] = Some(payload);
        }
    }
    // `:status: 431` (name index 8, value "431" Huffman-coded); `:status: 200` is index 8.
    let over = status[0].clone().expect("an answer to the oversized block");
    assert!(
        over[0] & 0x0f == 8 && over[1..5] == [0x83, 0x69, 0x90, 0xff],
        "431 to the oversized block: {over:02x?}"
    );
    let plain = status[1].clone().expect("an answer to the plain request");
    assert_eq!(plain[0], 0x88, "200 to the plain request: {plain:02x?}");
    let mut paths = up.paths();
    paths.sort();
    assert_eq!(
        paths,
        ["/", "/good"],
        "the oversized block reached no upstream"
    );
}
