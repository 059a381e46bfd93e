//! Request smuggling vectors (RFC 9112 §6.3, §5): heads whose framing or field syntax two
//! HTTP implementations could read differently. Each is refused with 400 and the
//! connection closed before anything reaches an upstream, or, for `content-length` beside
//! `transfer-encoding: chunked`, read by the chunked framing alone with the connection
//! closed after the answer, so that bytes hidden behind the body never become a request.
//!
//! The 400s come from hyper's parser, without a `weir-error` field today (see
//! docs/errors.md), so the tests assert the status line and the close.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{a_good_client_is_served, answer_then_close, config, downstream_errors, local};
use crate::support::{free_port, Upstream, Weir};

/// Heads no server may forward: each is refused by the parser.
const REFUSED: &[(&str, &[u8])] = &[(
    "a space inside a field name",
    b"GET / HTTP/1.1\r\nho st: x\r\n\r\n",
)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_or_malformed_heads_get_400_and_the_connection_is_closed() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, up.addr, "", "")).await;
    let mut attacks = Vec::new();
    for (what, head) in REFUSED {
        let mut stream = TcpStream::connect(local(port)).await.expect("connect");
        stream.write_all(head).await.expect("write");
        let answer = answer_then_close(&mut stream).await;
        let Some(answer) = answer else {
            panic!("{what}: the connection is still open");
        };
        assert!(
            answer.starts_with("http/1.1 400 bad request\r\n"),
            "{what}: {answer}"
        );
        attacks.push(stream);
    }
    a_good_client_is_served(port, "up", Duration::ZERO).await;
    let n = REFUSED.len() as f64;
    assert_eq!(downstream_errors(&weir, "malformed", n).await, n);
    assert_eq!(
        up.paths(),
        ["/good"],
        "no refused head reached the upstream"
    );
}
