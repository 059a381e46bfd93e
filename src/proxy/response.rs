//! The response body weir sends downstream: the upstream's body relayed frame by frame
//! (trailers included), or a one-line error weir wrote itself. When it ends or is dropped,
//! the request's logging phase runs.

use std::pin::Pin;
use std::task::{Context, Poll};

use crate::stall::StallTimer;
use crate::upstream::pool::Checkout;
use crate::upstream::response::{BoxError, UpstreamBody};
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};

use super::finish::{Ending, Finish, CLIENT_CLOSED_REQUEST};
use crate::error::ProxyError;

/// A downstream response body.
#[derive(Debug)]
pub struct ResponseBody {
    source: Source,
    finish: Option<Finish>,
    ending: Ending,
    /// Ends an upstream body that stops moving (`stream_idle`).
    stall: Option<StallTimer>,
}

#[derive(Debug)]
enum Source {
    Upstream(UpstreamBody),
    Local(Option<Bytes>),
}

impl Source {
    /// The upstream connection of a body that ended cleanly, for the pool.
    fn take_connection(&mut self) -> Option<Checkout> {
        match self {
            Source::Upstream(body) => body.take_connection(),
            Source::Local(_) => None,
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Source::Upstream(body) => body.is_end_stream(),
            Source::Local(data) => data.is_none(),
        }
    }
}

impl ResponseBody {
    /// Ends the request cleanly: it is recorded and its upstream connection goes back to
    /// the pool.
    fn complete(&mut self) {
        self.ending = Ending::Complete;
        if let Some(f) = self.finish.take() {
            f.complete(Ending::Complete, self.source.take_connection());
        }
    }

    /// Relays an upstream body; `finish` runs when it ends (at once for a body that is
    /// already over, so the upstream connection is back in the pool before the client sees
    /// the response).
    pub fn upstream(body: UpstreamBody, finish: Finish) -> Self {
        let mut relayed = ResponseBody {
            source: Source::Upstream(body),
            stall: Some(StallTimer::new(finish.stream_idle())),
            finish: Some(finish),
            ending: Ending::Abandoned,
        };
        if relayed.source.is_end_stream() {
            relayed.complete();
        }
        relayed
    }

    /// No body, and no logging attached (a `101`, whose request is logged when its tunnel
    /// closes).
    pub fn empty() -> Self {
        ResponseBody {
            source: Source::Local(None),
            finish: None,
            ending: Ending::Complete,
            stall: None,
        }
    }

    /// A body weir owns, with no logging attached (admin, demo).
    pub fn full(data: impl Into<Bytes>) -> Self {
        ResponseBody {
            source: Source::Local(Some(data.into())),
            finish: None,
            ending: Ending::Complete,
            stall: None,
        }
    }

    fn local(data: Bytes, finish: Finish) -> Self {
        ResponseBody {
            source: Source::Local(Some(data)),
            finish: Some(finish),
            ending: Ending::Complete,
            stall: None,
        }
    }
}

/// Builds the response for an error weir makes itself: the status of its code, the
/// `weir-error` header, and a one-line body; `finish` records it.
pub fn error_response(err: &ProxyError, mut finish: Finish) -> Response<ResponseBody> {
    let status = err.status();
    finish.status = status.as_u16();
    finish.error = Some(err.code());
    let mut resp = Response::new(ResponseBody::local(Bytes::from(format!("{err}\n")), finish));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert("weir-error", HeaderValue::from_static(err.code().as_str()));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The response of a request whose client went away while weir sent its body upstream:
/// recorded as 499 (nginx's "client closed request"); nobody is left to read it.
pub fn client_gone_response(mut finish: Finish) -> Response<ResponseBody> {
    finish.status = CLIENT_CLOSED_REQUEST;
    let mut resp = Response::new(ResponseBody::local(Bytes::new(), finish));
    *resp.status_mut() =
        StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST);
    resp
}

/// A plain local response without logging (admin server).
pub fn plain(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = match &mut this.source {
            Source::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Source::Upstream(body) => match (Pin::new(body).poll_frame(cx), &mut this.stall) {
                (Poll::Pending, Some(stall)) => match stall.poll_stalled(cx) {
                    Poll::Ready(stalled) => {
                        this.ending = Ending::UpstreamStalled;
                        return Poll::Ready(Some(Err(stalled.into())));
                    }
                    Poll::Pending => Poll::Pending,
                },
                (polled @ Poll::Ready(Some(Ok(_))), Some(stall)) => {
                    stall.progressed();
                    polled
                }
                (polled, _) => polled,
            },
        };
        match &polled {
            Poll::Ready(None) => this.complete(),
            // The last frame: the exchange ends (its connection back in the pool) before the
            // client can see the end and send its next request on the same connection.
            Poll::Ready(Some(Ok(_))) if this.source.is_end_stream() => this.complete(),
            Poll::Ready(Some(Err(_))) => this.ending = Ending::UpstreamFailed,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.source.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(body) => body.size_hint(),
            Source::Local(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            // A body the server never had to poll (empty, or HEAD) still ended cleanly.
            let ending = if self.ending == Ending::Abandoned && self.is_end_stream() {
                Ending::Complete
            } else {
                self.ending
            };
            let connection = match ending {
                Ending::Complete => self.source.take_connection(),
                _ => None,
            };
            f.complete(ending, connection);
        }
    }
}
