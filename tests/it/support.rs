//! Shared helpers for the integration tests: real upstream servers on 127.0.0.1, the real
//! `weir` binary as a child process, and a small keep-alive HTTP client.

#![allow(dead_code)]

use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

pub(crate) use crate::test_support::eventually;

/// Polls weir's `/metrics` until `metric{labels}` sums to `want`, or 3 s pass; returns the
/// last sum (so an assertion on it shows what was counted).
pub async fn metric_settles(weir: &Weir, metric: &str, labels: &[(&str, &str)], want: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let got =
            weir::telemetry::prometheus_text::metric_sum(&weir.metrics().await, metric, labels);
        if got == want || std::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it gives a value or `limit` passes.
pub async fn until<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port that was free a moment ago (bind to :0 and release), and that this test process
/// has not handed out before: the kernel may give a released port back at once, and two
/// calls (a listener's and its admin server's) must not get the same one.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// What a test upstream does; every request is counted and its headers kept.
#[derive(Debug, Default)]
pub struct UpstreamState {
    /// Requests received.
    pub hits: AtomicU64,
    /// Headers of every request, in order.
    pub headers: Mutex<Vec<HeaderMap>>,
    /// Extra delay before every response.
    pub delay_ms: AtomicU64,
    /// TCP connections accepted.
    pub connections: AtomicU64,
    /// Share of requests (0–100) answered with `fail_status` instead of their path's answer,
    /// spread evenly and deterministically: with 50 every other request fails, starting
    /// with the first. `/health` is exempt.
    pub fail_percent: AtomicU64,
    /// Status of a failed request (0 means 500).
    pub fail_status: AtomicU64,
    /// Requests judged by `fail_percent` so far.
    pub judged: AtomicU64,
    /// Status `/health` answers (0 means 200).
    pub health_status: AtomicU64,
    /// `/health` requests received (also counted in `hits`).
    pub health_hits: AtomicU64,
    /// The tasks serving accepted connections, so that [`Upstream::kill`] can drop them.
    pub conns: Mutex<Vec<tokio::task::AbortHandle>>,
    /// The target of every request, in order (with HTTP/2's `:authority` when it came so).
    pub uris: Mutex<Vec<http::Uri>>,
}

/// A real HTTP server on 127.0.0.1 speaking HTTP/1.1 and h2c. Paths:
/// `/` name; `/delay/MS`; `/status/CODE`; `/bytes/N` streams N bytes; `/upload` counts the
/// body's bytes; `/trailers` answers with a trailer; `/reset` breaks the connection mid-body.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, returned as the body of `/` and in `x-upstream`.
    pub name: String,
    /// Counters and recorded headers.
    pub state: Arc<UpstreamState>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts a server named `name` on a free port.
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        Self::serve(name, listener)
    }

    /// Starts a server on a given address (to bring one back after stopping it).
    pub async fn start_at(name: &str, addr: SocketAddr) -> Upstream {
        let listener = TcpListener::bind(addr).await.expect("rebind upstream");
        Self::serve(name, listener)
    }

    fn serve(name: &str, listener: TcpListener) -> Upstream {
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(UpstreamState::default());
        let (st, nm) = (state.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                st.connections.fetch_add(1, Ordering::SeqCst);
                let (st, nm) = (st.clone(), nm.clone());
                let conns = st.clone();
                let conn = tokio::spawn(async move {
                    let svc = service_fn(move |req| respond(st.clone(), nm.clone(), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                conns.conns.lock().unwrap().push(conn.abort_handle());
            }
        });
        Upstream {
            addr,
            name: name.to_string(),
            state,
            task,
        }
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Headers of the most recent request.
    pub fn last_headers(&self) -> HeaderMap {
        self.state
            .headers
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// The paths of every request received, in order.
    pub fn paths(&self) -> Vec<String> {
        let uris = self.state.uris.lock().unwrap();
        uris.iter().map(|u| u.path().to_string()).collect()
    }

    /// Stops accepting (existing connections are dropped with the task).
    pub fn stop(self) {
        self.task.abort();
    }

    /// Dies like a crashed process: stops accepting (new connections are refused) and drops
    /// every open connection, in-flight requests included.
    pub fn kill(self) {
        self.task.abort();
        for conn in self.state.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Makes `percent` (0–100) of the following requests fail with `status` (see
    /// [`UpstreamState::fail_percent`]); 0 heals.
    pub fn fail(&self, percent: u64, status: u16) {
        self.state
            .fail_status
            .store(status.into(), Ordering::SeqCst);
        self.state.fail_percent.store(percent, Ordering::SeqCst);
    }

    /// Requests received other than `/health` checks.
    pub fn traffic_hits(&self) -> u64 {
        self.hits() - self.state.health_hits.load(Ordering::SeqCst)
    }
}

type TestBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

async fn respond(
    state: Arc<UpstreamState>,
    name: String,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.headers.lock().unwrap().push(req.headers().clone());
    state.uris.lock().unwrap().push(req.uri().clone());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = req.uri().path().to_string();
    if path == "/health" {
        state.health_hits.fetch_add(1, Ordering::SeqCst);
        let code = match state.health_status.load(Ordering::SeqCst) {
            0 => 200,
            c => c as u16,
        };
        let mut r = Response::new(full(name.clone()));
        *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        r.headers_mut().insert("x-upstream", name.parse().unwrap());
        return Ok(r);
    }
    let percent = state.fail_percent.load(Ordering::SeqCst);
    if percent > 0 {
        let n = state.judged.fetch_add(1, Ordering::SeqCst);
        if (n * percent) % 100 < percent {
            // Read the whole request first, so that the answer is not mistaken for a reset.
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            let code = match state.fail_status.load(Ordering::SeqCst) {
                0 => 500,
                c => c as u16,
            };
            let mut r = Response::new(full(name.clone()));
            *r.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            r.headers_mut().insert("x-upstream", name.parse().unwrap());
            return Ok(r);
        }
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (head, arg) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut resp = match head {
        "delay" => {
            tokio::time::sleep(Duration::from_millis(arg.parse().unwrap_or(0))).await;
            Response::new(full(name.clone()))
        }
        "status" => {
            let mut r = Response::new(full(name.clone()));
            *r.status_mut() = StatusCode::from_u16(arg.parse().unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            r
        }
        "bytes" => {
            let total: u64 = arg.parse().unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..total.div_ceil(chunk.len() as u64)).map(move |i| {
                let n = (total - i * chunk.len() as u64).min(chunk.len() as u64) as usize;
                Ok::<_, std::io::Error>(Frame::data(chunk.slice(..n)))
            });
            let mut r = Response::new(FrameBody(chunks).boxed());
            r.headers_mut().insert("content-length", total.into());
            r
        }
        "upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            Response::new(full(n.to_string()))
        }
        "trailers" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-checksum", "abc123".parse().unwrap());
            let frames = vec![
                Ok(Frame::data(Bytes::from("body"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::new(FrameBody(frames.into_iter()).boxed())
        }
        "reset" => {
            let frames = vec![
                Ok(Frame::data(Bytes::from("partial"))),
                Err(std::io::Error::other("upstream broke")),
            ];
            let mut r = Response::new(FrameBody(frames.into_iter()).boxed());
            r.headers_mut().insert("content-length", 1000.into());
            r
        }
        _ => Response::new(full(name.clone())),
    };
    resp.headers_mut()
        .insert("x-upstream", name.parse().unwrap());
    Ok(resp)
}

/// A body that yields frames from an iterator, one per poll (streams without buffering).
pub struct FrameBody<I>(I);

impl<I> http_body::Body for FrameBody<I>
where
    I: Iterator<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(self.get_mut().0.next())
    }
}

/// The real `weir` binary running a test configuration.
pub struct Weir {
    /// The child process.
    pub child: Child,
    /// Admin address.
    pub admin: SocketAddr,
    /// Where its stderr (logs) goes.
    pub log: PathBuf,
    /// The configuration file.
    pub config: PathBuf,
}

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "weir-it-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

impl Weir {
    /// Writes `yaml` (with `{admin}` replaced by a free admin address) and starts
    /// `weir run`, waiting until `/ready` answers 200.
    pub async fn start(yaml: &str) -> Weir {
        Self::start_with_args(yaml, &[]).await
    }

    /// Like [`Weir::start`], with extra arguments to `weir run`.
    pub async fn start_with_args(yaml: &str, args: &[&str]) -> Weir {
        Self::spawn(yaml, args, None, &[]).await
    }

    /// Like [`Weir::start`], with extra environment variables for the process (e.g.
    /// `KUBECONFIG`).
    pub async fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Weir {
        Self::spawn(yaml, &[], None, env).await
    }

    /// Like [`Weir::start`], with the process's open-file limit (`ulimit -n`) set to
    /// `fd_limit`.
    pub async fn start_with_fd_limit(yaml: &str, fd_limit: u32) -> Weir {
        Self::spawn(yaml, &[], Some(fd_limit), &[]).await
    }

    async fn spawn(yaml: &str, args: &[&str], fd_limit: Option<u32>, env: &[(&str, &str)]) -> Weir {
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let dir = scratch_dir("weir");
        let config = dir.join("weir.yaml");
        std::fs::write(&config, yaml.replace("{admin}", &admin.to_string())).unwrap();
        let log = dir.join("weir.log");
        let mut command = match fd_limit {
            None => Command::new(env!("CARGO_BIN_EXE_weir")),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_weir"));
                sh
            }
        };
        let child = command
            .args(["run", "-c"])
            .arg(&config)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn weir");
        let mut weir = Weir {
            child,
            admin,
            log,
            config,
        };
        let ready = async {
            for _ in 0..500 {
                if let Ok((200, _, _)) = get(admin, "/ready", &[]).await {
                    return true;
                }
                if let Ok(Some(_)) = weir.child.try_wait() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        };
        if !ready.await {
            panic!("weir did not become ready; log:\n{}", weir.logs());
        }
        weir
    }

    /// Everything weir wrote to stderr so far.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        get(self.admin, "/metrics", &[])
            .await
            .map(|r| r.2)
            .unwrap_or_default()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, headers, body).
pub async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, HeaderMap, String), String> {
    let mut client = Client::connect(addr).await?;
    client.request("GET", path, headers, Bytes::new()).await
}

/// A keep-alive HTTP/1.1 client on one connection.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Client { sender, addr })
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(u16, HeaderMap, String), String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .sender
            .send_request(req.body(Full::new(body)).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
    }

    /// A GET with headers.
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(u16, HeaderMap, String), String> {
        self.request("GET", path, headers, Bytes::new()).await
    }
}

/// Runs curl with `args` and returns (exit ok, stdout).
pub fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed (scripts/test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Sends `total` GETs of `path` over `concurrency` keep-alive connections and counts the
/// responses by the `x-upstream` header (or `weir-error`/status for weir's own answers).
pub async fn load(
    addr: SocketAddr,
    path: &str,
    total: usize,
    concurrency: usize,
) -> std::collections::HashMap<String, usize> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, path) = (next.clone(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut counts = std::collections::HashMap::new();
            let mut client = Client::connect(addr).await.expect("connect to weir");
            while next.fetch_add(1, Ordering::SeqCst) < total as u64 {
                let key = match client.get(&path, &[]).await {
                    Ok((_, h, _)) if h.contains_key("x-upstream") => {
                        h["x-upstream"].to_str().unwrap_or("?").to_string()
                    }
                    Ok((status, h, _)) => format!(
                        "{status} {}",
                        h.get("weir-error")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                    ),
                    Err(e) => {
                        client = Client::connect(addr).await.expect("reconnect to weir");
                        format!("error {e}")
                    }
                };
                *counts.entry(key).or_insert(0) += 1;
            }
            counts
        }));
    }
    let mut all = std::collections::HashMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("load task") {
            *all.entry(k).or_insert(0) += v;
        }
    }
    all
}

/// A raw HTTP/1.1 upstream that accepts and closes every connection without answering.
pub async fn closing_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    addr
}

/// A raw HTTP/1.1 upstream that reads a request, sends headers promising 1000 bytes and 7 of
/// them, then closes the connection.
pub async fn truncating_upstream() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial")
                .await;
        }
    });
    addr
}

/// A raw HTTP/1.1 upstream that answers every request head with `answer` (then closes when
/// `close`), and keeps each head it received, lower-cased (a request body is not read: use it
/// for requests without one).
pub async fn scripted_upstream(
    answer: &'static [u8],
    close: bool,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = pending.drain(..end + 4).collect();
                        seen.lock()
                            .expect("lock")
                            .push(String::from_utf8_lossy(&head).to_lowercase());
                        if socket.write_all(answer).await.is_err() || close {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, heads)
}

/// Sends `request` on `stream` and reads one whole answer (head and body, by its
/// content-length or chunked framing), or until the connection ends, 3 s at most; returns it
/// lower-cased.
pub async fn exchange(stream: &mut tokio::net::TcpStream, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let text = String::from_utf8_lossy(&answer).to_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let body = &text[end + 4..];
                let done = if let Some(cl) = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                {
                    body.len() >= cl.trim().parse::<usize>().unwrap_or(0)
                } else {
                    body.ends_with("0\r\n\r\n")
                };
                if done {
                    break;
                }
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).to_lowercase()
}

/// Runs `weir ARGS` from the crate root, killed (and the test failed) after 10 s: a hostile
/// file must be refused promptly, never block the command.
pub fn weir_bounded(args: &[&str]) -> std::process::Output {
    run_bounded(
        env!("CARGO_BIN_EXE_weir"),
        args,
        b"",
        Duration::from_secs(10),
        "weir (cargo builds it)",
    )
}

/// Runs `program ARGS` from the crate root with `input` on stdin, killed (and the test
/// failed) after `limit`; a program that cannot be started fails the test saying to
/// install `package` (scripts/test does).
pub fn run_bounded(
    program: &str,
    args: &[&str],
    input: &[u8],
    limit: Duration,
    package: &str,
) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is not runnable ({e}): install {package} (scripts/test does)")
        });
    if let Some(mut stdin) = child.stdin.take() {
        let _ = std::io::Write::write_all(&mut stdin, input);
    }
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`{program} {}` still running after {limit:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// `weir check PATH` and `weir run -c PATH` both exit 2 with exactly `PATH: cannot read the
/// configuration: REASON`, promptly.
pub fn assert_unreadable_config(path: &str, reason: &str) {
    let expected = format!("{path}: cannot read the configuration: {reason}");
    for args in [vec!["check", path], vec!["run", "-c", path]] {
        let out = weir_bounded(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            (out.status.code(), stderr.trim_end()),
            (Some(2), expected.as_str()),
            "weir {}",
            args.join(" ")
        );
    }
}

/// The `/services` document of a weir, parsed.
pub async fn services(weir: &Weir) -> serde_json::Value {
    let body = get(weir.admin, "/services", &[]).await.map(|r| r.2);
    serde_json::from_str(&body.unwrap_or_default()).unwrap_or_default()
}

/// The `/services` entry of one endpoint: (state, reason), or `None` when it is not listed.
pub async fn endpoint_state(
    weir: &Weir,
    service: &str,
    endpoint: SocketAddr,
) -> Option<(String, String)> {
    let doc = services(weir).await;
    let svc = doc["services"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == service)?
        .clone();
    let ep = svc["endpoints"]
        .as_array()?
        .iter()
        .find(|e| e["address"] == endpoint.to_string())?
        .clone();
    Some((
        ep["state"].as_str().unwrap_or("").to_string(),
        ep["reason"].as_str().unwrap_or("").to_string(),
    ))
}

/// The code blocks in `lang` of the README's section `## {section}` (up to its first
/// subsection), in order: tests run
/// what the README tells users to run.
pub fn readme_blocks(section: &str, lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let text = readme
        .split(&format!("## {section}\n"))
        .nth(1)
        .and_then(|rest| rest.split("\n##").next()) // up to the next (sub)section
        .unwrap_or_else(|| panic!("README has a {section} section"));
    text.split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(str::to_string)
        .collect()
}
