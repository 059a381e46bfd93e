//! The list/watch protocol of the Kubernetes API for one Service's EndpointSlices: a list
//! gives every slice and a resourceVersion; a watch from that version streams
//! newline-delimited JSON events; `410 Gone` (as a status or an ERROR event) means the
//! version expired and the caller must list again.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;

use super::client::ApiServer;
use super::slices::{EndpointSlice, ObjectMeta};

/// How long the server keeps a watch open before ending it (the client then watches again).
const WATCH_SECONDS: u64 = 290;
/// A watch that sends nothing (not even a bookmark) for this long is taken as dead.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 40);
/// The longest list body or watch line accepted.
const MAX_BODY: usize = 64 << 20;

/// The slices of one Service as the API last told them, and where to resume.
#[derive(Debug, Clone, Default)]
pub struct SliceState {
    /// By slice name.
    pub slices: BTreeMap<String, EndpointSlice>,
    /// The version to watch from; `None` until listed (and again after `410 Gone`).
    pub resource_version: Option<String>,
}

/// How an attempt to list or watch ended, when it did not end cleanly.
#[derive(Debug)]
pub enum WatchError {
    /// The resource version expired (`410 Gone`): list again.
    Gone,
    /// Anything else (connection, status, garbled JSON): retry after a pause.
    Failed(String),
}

impl std::fmt::Display for WatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchError::Gone => f.write_str("resource version expired (410 Gone)"),
            WatchError::Failed(why) => f.write_str(why),
        }
    }
}

/// One line of a watch stream.
#[derive(Debug, Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// A `meta/v1` Status: why a request or a watch failed.
#[derive(Debug, Default, Deserialize)]
struct Status {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// An `EndpointSliceList`.
#[derive(Debug, Deserialize)]
struct SliceList {
    #[serde(default)]
    metadata: ObjectMeta,
    /// Decoded one by one, so one slice weir cannot read does not stop discovery.
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

/// What one watch event does to the state (pure, so the protocol is tested without a
/// server).
pub fn apply(state: &mut SliceState, line: &[u8]) -> Result<(), WatchError> {
    let event: RawEvent = serde_json::from_slice(line)
        .map_err(|e| WatchError::Failed(format!("unreadable watch event: {e}")))?;
    // A slice weir cannot read is skipped (and logged), but its version is taken, so the
    // watch moves past it instead of meeting it again on every resume.
    let slice = || match serde_json::from_value::<EndpointSlice>(event.object.clone()) {
        Ok(slice) => Some(slice),
        Err(e) => {
            tracing::warn!(error = %e, "skipping an EndpointSlice weir cannot read");
            None
        }
    };
    let version_of = |object: &serde_json::Value| {
        object
            .pointer("/metadata/resourceVersion")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    match event.kind.as_str() {
        "ADDED" | "MODIFIED" => {
            if let Some(slice) = slice() {
                state.slices.insert(slice.metadata.name.clone(), slice);
            }
            if let Some(version) = version_of(&event.object) {
                state.resource_version = Some(version);
            }
        }
        "DELETED" => {
            if let Some(name) = event
                .object
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
            {
                state.slices.remove(name);
            }
            if let Some(version) = version_of(&event.object) {
                state.resource_version = Some(version);
            }
        }
        "BOOKMARK" => {
            let meta = event
                .object
                .get("metadata")
                .cloned()
                .map(serde_json::from_value::<ObjectMeta>)
                .and_then(Result::ok)
                .and_then(|m| m.resource_version);
            if meta.is_some() {
                state.resource_version = meta;
            }
        }
        "ERROR" => {
            let status: Status = serde_json::from_value(event.object).unwrap_or_default();
            return Err(status_error(status));
        }
        other => return Err(WatchError::Failed(format!("unknown watch event {other:?}"))),
    }
    Ok(())
}

fn status_error(status: Status) -> WatchError {
    if status.code == 410 {
        WatchError::Gone
    } else {
        WatchError::Failed(format!(
            "API error {} {}: {}",
            status.code, status.reason, status.message
        ))
    }
}

/// Watches and lists the EndpointSlices of one Service in one namespace.
#[derive(Debug, Clone)]
pub struct SliceWatch {
    api: ApiServer,
    /// `/apis/…/endpointslices?labelSelector=…`
    base: String,
}

impl SliceWatch {
    /// The slices of `service` in `namespace`: those labelled
    /// `kubernetes.io/service-name=<service>`.
    pub fn new(api: ApiServer, namespace: &str, service: &str) -> Self {
        let base = format!(
            "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector={}",
            encode(namespace),
            encode(&format!("kubernetes.io/service-name={service}"))
        );
        SliceWatch { api, base }
    }

    /// Lists every slice: replaces `state` and sets the version to watch from.
    pub async fn list(&self, state: &mut SliceState) -> Result<(), WatchError> {
        let response = self.request(&self.base).await?;
        let body = read_capped(response.into_body()).await?;
        let list: SliceList = serde_json::from_slice(&body)
            .map_err(|e| WatchError::Failed(format!("unreadable EndpointSliceList: {e}")))?;
        if list
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            return Err(WatchError::Failed(
                "the EndpointSliceList has no resourceVersion to watch from".into(),
            ));
        }
        state.slices = list
            .items
            .into_iter()
            .filter_map(|item| match serde_json::from_value::<EndpointSlice>(item) {
                Ok(slice) => Some((slice.metadata.name.clone(), slice)),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an EndpointSlice weir cannot read");
                    None
                }
            })
            .collect();
        state.resource_version = list.metadata.resource_version;
        Ok(())
    }

    /// Watches from `state`'s version, calling `changed` after each event that may have
    /// changed the slices, until the server ends the stream (`Ok` with the number of events)
    /// or it fails.
    pub async fn watch(
        &self,
        state: &mut SliceState,
        mut changed: impl FnMut(&SliceState),
    ) -> Result<usize, WatchError> {
        let version = state.resource_version.clone().unwrap_or_default();
        let path = format!(
            "{}&watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            self.base,
            encode(&version)
        );
        let mut body = self.request(&path).await?.into_body();
        let mut buffer = BytesMut::new();
        let mut events = 0;
        loop {
            let frame = match tokio::time::timeout(WATCH_IDLE, body.frame()).await {
                Err(_) => return Err(WatchError::Failed("the watch went silent".into())),
                Ok(None) => {
                    // A last event without its newline still counts.
                    let rest = buffer.trim_ascii();
                    if !rest.is_empty() {
                        apply(state, rest)?;
                        events += 1;
                        changed(state);
                    }
                    return Ok(events);
                }
                Ok(Some(Err(e))) => {
                    return Err(WatchError::Failed(format!("watch stream broke: {e}")))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line = buffer.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                apply(state, line)?;
                events += 1;
                changed(state);
            }
            if buffer.len() > MAX_BODY {
                return Err(WatchError::Failed("a watch event is too large".into()));
            }
        }
    }

    /// GETs `path`; a non-200 answer becomes the error its Status says.
    async fn request(&self, path: &str) -> Result<http::Response<Incoming>, WatchError> {
        let response = self
            .api
            .get(path)
            .await
            .map_err(|e| WatchError::Failed(e.to_string()))?;
        let status = response.status();
        if status == http::StatusCode::OK {
            return Ok(response);
        }
        let body = read_capped(response.into_body()).await.unwrap_or_default();
        let mut parsed: Status = serde_json::from_slice(&body).unwrap_or_default();
        parsed.code = status.as_u16();
        if parsed.message.is_empty() {
            parsed.message = String::from_utf8_lossy(&body)
                .trim()
                .chars()
                .take(200)
                .collect();
        }
        Err(status_error(parsed))
    }
}

/// How long a whole answer (a list, a Service) may take to arrive once its head has: a
/// connection that goes half-open mid-body must not stall discovery.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A whole body, at most [`MAX_BODY`] bytes, within [`BODY_TIMEOUT`].
pub(super) async fn read_capped(body: Incoming) -> Result<Vec<u8>, WatchError> {
    tokio::time::timeout(BODY_TIMEOUT, read_all(body))
        .await
        .unwrap_or_else(|_| {
            Err(WatchError::Failed(format!(
                "the answer did not arrive within {}s",
                BODY_TIMEOUT.as_secs()
            )))
        })
}

async fn read_all(mut body: Incoming) -> Result<Vec<u8>, WatchError> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| WatchError::Failed(format!("reading the answer: {e}")))?;
        if let Ok(mut data) = frame.into_data() {
            if out.len() + data.remaining() > MAX_BODY {
                return Err(WatchError::Failed("the answer is too large".into()));
            }
            out.extend_from_slice(&data.copy_to_bytes(data.remaining()));
        }
    }
    Ok(out.to_vec())
}

/// Percent-encodes a query or path component.
pub(super) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice_event(kind: &str, name: &str, rv: &str) -> String {
        format!(
            r#"{{"type":"{kind}","object":{{"kind":"EndpointSlice","metadata":{{"name":"{name}","resourceVersion":"{rv}"}},"addressType":"IPv4","endpoints":[],"ports":[]}}}}"#
        )
    }

    #[test]
    fn a_slice_weir_cannot_read_is_skipped_and_the_watch_moves_past_it() {
        let mut state = SliceState::default();
        let line = br#"{"type":"ADDED","object":{"metadata":{"name":"odd","resourceVersion":"7"},"endpoints":"not a list"}}"#;
        assert!(apply(&mut state, line).is_ok());
        assert!(state.slices.is_empty());
        assert_eq!(state.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn events_add_replace_and_delete_slices_by_name_and_move_the_version() {
        let mut state = SliceState::default();
        for (line, names, rv) in [
            (slice_event("ADDED", "a", "1"), vec!["a"], "1"),
            (slice_event("ADDED", "b", "2"), vec!["a", "b"], "2"),
            (slice_event("MODIFIED", "a", "3"), vec!["a", "b"], "3"),
            (slice_event("DELETED", "b", "4"), vec!["a"], "4"),
            (
                r#"{"type":"BOOKMARK","object":{"kind":"EndpointSlice","metadata":{"resourceVersion":"9"}}}"#.to_string(),
                vec!["a"],
                "9",
            ),
        ] {
            apply(&mut state, line.as_bytes()).expect(&line);
            assert_eq!(state.slices.keys().collect::<Vec<_>>(), names, "{line}");
            assert_eq!(state.resource_version.as_deref(), Some(rv), "{line}");
        }
    }

    #[test]
    fn an_error_event_of_410_means_list_again_and_others_fail() {
        let mut state = SliceState::default();
        let gone = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410}}"#;
        assert!(matches!(
            apply(&mut state, gone.as_bytes()),
            Err(WatchError::Gone)
        ));
        let other = r#"{"type":"ERROR","object":{"kind":"Status","message":"boom","reason":"InternalError","code":500}}"#;
        assert!(matches!(
            apply(&mut state, other.as_bytes()),
            Err(WatchError::Failed(m)) if m.contains("500 InternalError: boom")
        ));
        assert!(matches!(
            apply(&mut state, b"{not json"),
            Err(WatchError::Failed(_))
        ));
    }

    /// Serves one canned HTTP/1.1 response (written in the given pieces, with a pause
    /// between them) to the first connection, and returns the request it read.
    async fn one_response(pieces: Vec<String>) -> (ApiServer, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut request = vec![0u8; 4096];
            let n = conn.read(&mut request).await.expect("read");
            for piece in pieces {
                conn.write_all(piece.as_bytes()).await.expect("write");
                conn.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let api = ApiServer {
            uri: format!("http://{addr}").parse().expect("uri"),
            auth: super::super::client::Auth::Token("t0k".into()),
            tls: None,
        };
        (api, served)
    }

    fn chunk(text: &str) -> String {
        format!("{:x}\r\n{text}\r\n", text.len())
    }

    #[tokio::test]
    async fn a_watch_reads_events_split_across_chunks_and_a_last_line_without_newline() {
        let (a, b) = (
            slice_event("ADDED", "a", "5"),
            slice_event("ADDED", "b", "6"),
        );
        let (a1, a2) = a.split_at(30);
        let pieces = vec![
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
            chunk(a1),
            chunk(&format!("{a2}\n")),
            chunk(&b),
            "0\r\n\r\n".to_string(),
        ];
        let (api, served) = one_response(pieces).await;
        let mut state = SliceState {
            resource_version: Some("4".into()),
            ..SliceState::default()
        };
        let mut seen = Vec::new();
        let events = SliceWatch::new(api, "shop", "web")
            .watch(&mut state, |s| seen.push(s.slices.len()))
            .await
            .expect("the watch ends cleanly");
        assert_eq!((events, seen), (2, vec![1, 2]));
        assert_eq!(state.resource_version.as_deref(), Some("6"));
        let request = served.await.expect("server");
        assert!(
            request.starts_with("GET /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb&watch=true&allowWatchBookmarks=true&timeoutSeconds=290&resourceVersion=4 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("authorization: Bearer t0k\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_410_answer_to_a_watch_means_gone_and_a_list_needs_a_version() {
        let status = r#"{"kind":"Status","code":410,"reason":"Expired","message":"too old"}"#;
        let (api, _) = one_response(vec![format!(
            "HTTP/1.1 410 Gone\r\ncontent-length: {}\r\n\r\n{status}",
            status.len()
        )])
        .await;
        let mut state = SliceState {
            resource_version: Some("1".into()),
            ..SliceState::default()
        };
        let watched = SliceWatch::new(api, "shop", "web")
            .watch(&mut state, |_| {})
            .await;
        assert!(matches!(watched, Err(WatchError::Gone)), "{watched:?}");

        let list = r#"{"kind":"EndpointSliceList","metadata":{},"items":[]}"#;
        let (api, _) = one_response(vec![format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{list}",
            list.len()
        )])
        .await;
        let listed = SliceWatch::new(api, "shop", "web").list(&mut state).await;
        assert!(
            matches!(&listed, Err(WatchError::Failed(m)) if m.contains("no resourceVersion")),
            "{listed:?}"
        );
    }

    #[test]
    fn the_label_selector_is_encoded() {
        let api = ApiServer {
            uri: "http://127.0.0.1:1".parse().expect("uri"),
            auth: super::super::client::Auth::None,
            tls: None,
        };
        assert_eq!(
            SliceWatch::new(api, "shop", "web").base,
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb"
        );
    }
}
