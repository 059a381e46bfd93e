//! One HTTP/1.1 connection to the collector, kept between exports and replaced after any
//! error; each export is bounded in time, so a slow collector cannot hold the task.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::endpoint::Endpoint;
use super::Timing;

/// OTLP/HTTP's binary protobuf encoding.
const PROTOBUF: &str = "application/x-protobuf";

/// Most of a collector's answer read (an `ExportTraceServiceResponse` is a few bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an export failed.
#[derive(Debug)]
pub(super) enum ExportError {
    /// TCP connect (or the name lookup) failed.
    Connect(std::io::Error),
    /// TCP connect took longer than the connect timeout.
    ConnectTimeout(Duration),
    /// The HTTP exchange failed (handshake, send, or reading the answer).
    Http(Box<dyn std::error::Error + Send + Sync>),
    /// The collector answered, but not with 2xx.
    Status(StatusCode),
    /// The whole export took longer than the export timeout.
    Timeout(Duration),
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Connect(e) => write!(f, "cannot connect: {e}"),
            ExportError::ConnectTimeout(t) => write!(f, "no connection within {t:?}"),
            ExportError::Http(e) => write!(f, "HTTP exchange failed: {e}"),
            ExportError::Status(status) => write!(f, "the collector answered {status}"),
            ExportError::Timeout(t) => write!(f, "no answer within {t:?}"),
        }
    }
}

/// Posts export requests to one collector.
#[derive(Debug)]
pub(super) struct CollectorClient {
    endpoint: Endpoint,
    connect_timeout: Duration,
    export_timeout: Duration,
    /// Kept only after a successful export: an error drops it.
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl CollectorClient {
    /// For the collector at `url`; the error says why the URL cannot be used.
    pub(super) fn new(url: &str, timing: Timing) -> Result<Self, String> {
        Ok(CollectorClient {
            endpoint: Endpoint::parse(url)?,
            connect_timeout: timing.connect_timeout,
            export_timeout: timing.export_timeout,
            connection: None,
        })
    }

    /// POSTs one encoded `ExportTraceServiceRequest`; `Ok` when the collector answered 2xx.
    pub(super) async fn post(&mut self, body: Bytes) -> Result<(), ExportError> {
        timeout(self.export_timeout, self.exchange(body))
            .await
            .unwrap_or(Err(ExportError::Timeout(self.export_timeout)))
    }

    async fn exchange(&mut self, body: Bytes) -> Result<(), ExportError> {
        let mut sender = match self.kept_connection().await {
            Some(kept) => kept,
            None => self.connect().await?,
        };
        let response = sender
            .send_request(self.request(body))
            .await
            .map_err(|e| ExportError::Http(e.into()))?;
        let status = response.status();
        // Read the answer to its end, so the connection can carry the next export.
        Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(ExportError::Http)?;
        if !status.is_success() {
            return Err(ExportError::Status(status));
        }
        self.connection = Some(sender);
        Ok(())
    }

    /// The connection kept from the last export, unless the collector has closed it since.
    async fn kept_connection(&mut self) -> Option<SendRequest<Full<Bytes>>> {
        let mut kept = self.connection.take()?;
        kept.ready().await.ok()?;
        Some(kept)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ExportError> {
        let address = (self.endpoint.host.as_str(), self.endpoint.port);
        let stream = timeout(self.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ExportError::ConnectTimeout(self.connect_timeout))?
            .map_err(ExportError::Connect)?;
        // Exports are single writes that wait for an answer: don't hold them back.
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ExportError::Http(e.into()))?;
        // Ends when the sender is dropped or the collector closes the connection.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn request(&self, body: Bytes) -> Request<Full<Bytes>> {
        let length = HeaderValue::from(body.len());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.endpoint.target.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.endpoint.host_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        headers.insert(CONTENT_LENGTH, length);
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::export::encode::Encoder;
    use crate::telemetry::trace::export::test_support::{
        closed_port_url, resource, span, Answer, Collector,
    };

    fn body() -> Bytes {
        Encoder::new(&resource()).encode(vec![span(1), span(2)])
    }

    fn client(url: &str, timing: Timing) -> CollectorClient {
        CollectorClient::new(url, timing).expect("usable URL")
    }

    #[tokio::test]
    async fn posts_protobuf_with_host_type_and_length_and_reuses_the_connection() {
        let collector = Collector::start(Answer::Status(StatusCode::OK)).await;
        let mut client = client(&collector.url(), Timing::default());
        for _ in 0..3 {
            client.post(body()).await.expect("exported");
        }
        let received = collector.received();
        assert_eq!(received.len(), 3);
        for r in &received {
            assert_eq!(r.path, "/v1/traces");
            assert_eq!(
                r.host.as_deref(),
                Some(collector.address.to_string().as_str())
            );
            assert_eq!(r.content_type.as_deref(), Some("application/x-protobuf"));
            assert_eq!(r.content_length, Some(r.body_len.to_string()));
            assert_eq!(r.body_len, body().len());
            assert_eq!(r.span_names(), ["GET span 1", "GET span 2"]);
        }
        assert_eq!(
            collector.connections(),
            1,
            "one connection for every export"
        );
    }

    #[tokio::test]
    async fn a_non_2xx_answer_fails_and_the_next_export_uses_a_new_connection() {
        let collector = Collector::start(Answer::Status(StatusCode::SERVICE_UNAVAILABLE)).await;
        let mut client = client(&collector.url(), Timing::default());
        let error = client.post(body()).await.expect_err("503 fails");
        assert!(
            matches!(error, ExportError::Status(StatusCode::SERVICE_UNAVAILABLE)),
            "{error}"
        );
        collector.answer(Answer::Status(StatusCode::ACCEPTED));
        client.post(body()).await.expect("202 is success");
        assert_eq!(collector.connections(), 2);
    }

    #[tokio::test]
    async fn a_collector_that_never_answers_times_out() {
        let collector = Collector::start(Answer::Hang).await;
        let timeout = Duration::from_millis(200);
        let timing = Timing {
            export_timeout: timeout,
            ..Timing::default()
        };
        let mut client = client(&collector.url(), timing);
        let started = tokio::time::Instant::now();
        let error = client.post(body()).await.expect_err("times out");
        assert!(matches!(error, ExportError::Timeout(_)), "{error}");
        let waited = started.elapsed();
        assert!(waited >= timeout && waited < timeout * 10, "{waited:?}");
        collector.answer(Answer::Status(StatusCode::OK));
        client.post(body()).await.expect("a new connection works");
        assert_eq!(
            collector.connections(),
            2,
            "the hung connection was dropped"
        );
    }

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_a_connect_error() {
        let mut client = client(&closed_port_url().await, Timing::default());
        let error = client.post(body()).await.expect_err("refused");
        assert!(matches!(error, ExportError::Connect(_)), "{error}");
    }

    #[tokio::test]
    async fn a_host_name_is_resolved() {
        let collector = Collector::start(Answer::Status(StatusCode::OK)).await;
        let url = format!("http://localhost:{}/v1/traces", collector.address.port());
        client(&url, Timing::default())
            .post(body())
            .await
            .expect("exported");
        let received = collector.received();
        let expected_host = format!("localhost:{}", collector.address.port());
        assert_eq!(received[0].host.as_deref(), Some(expected_host.as_str()));
    }
}
