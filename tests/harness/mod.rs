//! Shared black-box test harness: echo backends, a `routerd` process wrapper, an HTTP client
//! over real sockets, config builders and table-driven probes.
//!
//! Everything here talks to 127.0.0.1 only, and every wait is bounded in time. Plugins are
//! built once per test process from `plugins/` ([`plugins_dist`]) and started through
//! [`Launch`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// Error type used by boxed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of every request the harness sends and every response a backend sends.
pub type TestBody = BoxBody<Bytes, BoxError>;

/// Upper bound for one request/response exchange (head and body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for routerd to log both listeners.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for a hot reload to take effect.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| -> BoxError { match never {} })
        .boxed()
}

/// A body fed chunk by chunk through an mpsc channel; it ends when every sender is dropped.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// A streaming body and the sender that feeds it.
pub fn body_channel() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody { rx }.boxed())
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `len` deterministic pseudo-random bytes (xorshift), different for each `seed`.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// Echo backend
// ---------------------------------------------------------------------------------------------

/// What a backend sends back as its body.
#[derive(Clone)]
enum BackendMode {
    /// The request as JSON.
    Echo,
    /// `total` pseudo-random bytes (seed 7) in chunks of `chunk` bytes.
    Large { total: usize, chunk: usize },
    /// `first`, then (once the gate is opened, or after 10 s) `rest`.
    Gated { first: Bytes, rest: Bytes },
}

/// Builder for a [`Backend`].
pub struct BackendBuilder {
    name: String,
    delay: Duration,
    status: u16,
    headers: Vec<(String, String)>,
    mode: BackendMode,
}

impl BackendBuilder {
    /// Wait this long (after reading the request body) before sending the response head.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Respond with this status instead of 200.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Add a response header (may be repeated for several values).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Respond with `total` pseudo-random bytes (see [`pseudo_random_bytes`], seed 7) in
    /// chunks of `chunk` bytes, without a content-length.
    pub fn large_body(mut self, total: usize, chunk: usize) -> Self {
        self.mode = BackendMode::Large { total, chunk };
        self
    }

    /// Respond with `first`, then wait until [`Backend::open_gate`] (at most 10 s), then `rest`.
    pub fn gated(mut self, first: &'static str, rest: &'static str) -> Self {
        self.mode = BackendMode::Gated {
            first: Bytes::from_static(first.as_bytes()),
            rest: Bytes::from_static(rest.as_bytes()),
        };
        self
    }

    /// Bind 127.0.0.1:0 and serve HTTP/1.1 until the [`Backend`] is dropped.
    pub async fn start(self) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend listener");
        let addr = listener.local_addr().expect("backend local addr");
        let state = Arc::new(BackendState {
            name: self.name.clone(),
            delay: self.delay,
            status: self.status,
            headers: self.headers,
            mode: self.mode,
            requests: AtomicUsize::new(0),
            bytes_received: AtomicUsize::new(0),
            gate: Notify::new(),
        });
        let accept_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let conn_state = accept_state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(conn_state.clone(), req));
                    // Real services take far more than hyper's default of 100 fields.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .max_headers(TEST_MAX_HEADERS)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend {
            name: self.name,
            addr,
            state,
            task,
        }
    }
}

struct BackendState {
    name: String,
    delay: Duration,
    status: u16,
    headers: Vec<(String, String)>,
    mode: BackendMode,
    requests: AtomicUsize,
    bytes_received: AtomicUsize,
    gate: Notify,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers each request with a JSON description of it:
/// `{"backend", "method", "path", "query", "version", "headers": {name: [values]}, "body_len",
/// "body_sha256", "body"}` (`query` is the raw query or null, `body` the body as text when it is
/// UTF-8 and at most 64 KiB, else null).
pub struct Backend {
    /// The name echoed as `backend`.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<BackendState>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// A plain echo backend.
    pub async fn start(name: &str) -> Backend {
        Backend::builder(name).start().await
    }

    /// A backend with knobs.
    pub fn builder(name: &str) -> BackendBuilder {
        BackendBuilder {
            name: name.to_owned(),
            delay: Duration::ZERO,
            status: 200,
            headers: Vec::new(),
            mode: BackendMode::Echo,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many request heads it has received.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// How many request body bytes it has received, over all requests, as they arrive.
    pub fn bytes_received(&self) -> usize {
        self.state.bytes_received.load(Ordering::SeqCst)
    }

    /// Let a gated response send its rest.
    pub fn open_gate(&self) {
        self.state.gate.notify_one();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    state: Arc<BackendState>,
    req: Request<Incoming>,
) -> Result<Response<TestBody>, Infallible> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let mut received = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            state.bytes_received.fetch_add(data.len(), Ordering::SeqCst);
            received.extend_from_slice(&data);
        }
    }
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }

    let mut headers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(Value::String(
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ));
    }
    let text_body = match std::str::from_utf8(&received) {
        Ok(s) if received.len() <= 64 * 1024 => Value::String(s.to_owned()),
        _ => Value::Null,
    };

    let mut builder = Response::builder().status(state.status);
    for (name, value) in &state.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body = match &state.mode {
        BackendMode::Echo => {
            let echo = json!({
                "backend": state.name,
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body_len": received.len(),
                "body_sha256": sha256_hex(&received),
                "body": text_body,
            });
            builder = builder.header("content-type", "application/json");
            full(echo.to_string())
        }
        BackendMode::Large { total, chunk } => {
            let (tx, body) = body_channel();
            let data = Bytes::from(pseudo_random_bytes(*total, 7));
            let chunk = (*chunk).max(1);
            tokio::spawn(async move {
                let mut offset = 0;
                while offset < data.len() {
                    let end = (offset + chunk).min(data.len());
                    if tx.send(data.slice(offset..end)).await.is_err() {
                        return;
                    }
                    offset = end;
                }
            });
            body
        }
        BackendMode::Gated { first, rest } => {
            let (tx, body) = body_channel();
            let (first, rest) = (first.clone(), rest.clone());
            let gate_state = state.clone();
            tokio::spawn(async move {
                if tx.send(first).await.is_err() {
                    return;
                }
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), gate_state.gate.notified()).await;
                let _ = tx.send(rest).await;
            });
            body
        }
    };
    Ok(builder.body(body).expect("backend response"))
}

/// A 127.0.0.1 port with nothing listening on it, for a process that must be told its port
/// (etcd) or for an address that must stay dead.
///
/// It is taken below the kernel's ephemeral range: a port the kernel handed out for `:0` and
/// got back is soon handed out again as the local end of some outgoing connection, and then
/// the process meant to listen on it fails with "address already in use". Below the range
/// only listeners compete, so the port is probed by binding, and no port is handed out twice
/// in one test process.
pub fn unused_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let ephemeral = ephemeral_floor();
    // From 10000 up: clear of the well-known ports and the services a machine usually runs.
    let floor = 10_000u16.min(ephemeral.saturating_sub(1000));
    let span = u64::from(ephemeral.saturating_sub(floor).max(1));
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    };
    for i in 0..2000u64 {
        let offset = seed.wrapping_add(i.wrapping_mul(7919)) % span;
        let port = floor + u16::try_from(offset).unwrap_or(0);
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port found between {floor} and {ephemeral}");
}

/// The lowest port of the kernel's ephemeral range (Linux's default when it cannot be read).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// A fully read response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// HTTP version of the response.
    pub version: Version,
}

impl Resp {
    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The body parsed as JSON, or `None`.
    pub fn try_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// First value of a response header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// All values of a response header.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The `backend` of an echo body, if this is one.
    pub fn backend(&self) -> Option<String> {
        self.try_json()
            .and_then(|j| j.get("backend").and_then(Value::as_str).map(str::to_owned))
    }

    /// The values of a request header as the echo backend saw it (empty if absent).
    pub fn echoed_header(&self, name: &str) -> Vec<String> {
        let json = self.json();
        json["headers"][name.to_ascii_lowercase()]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A short description for failure messages.
    pub fn describe(&self) -> String {
        let mut text = self.text();
        if text.len() > 300 {
            text.truncate(300);
            text.push('…');
        }
        format!("{} {:?}", self.status, text)
    }
}

/// Read a response body completely (bounded by [`REQUEST_TIMEOUT`]).
pub async fn collect(resp: Response<Incoming>) -> Result<Resp, String> {
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
        .await
        .map_err(|_| "timed out reading the response body".to_owned())?
        .map_err(|e| format!("error reading the response body: {e}"))?;
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: collected.to_bytes(),
        version: parts.version,
    })
}

/// Header fields the test clients and backends accept: more than routerd's limits, so tests
/// see routerd's answer, not their own parser's.
pub const TEST_MAX_HEADERS: usize = 2000;

/// Send one request over a fresh HTTP/1.1 connection to `addr`; returns once the head arrives.
pub async fn send_h1(
    addr: SocketAddr,
    req: Request<TestBody>,
) -> Result<Response<Incoming>, String> {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_headers(TEST_MAX_HEADERS)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("http1 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("send request: {e}"))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out waiting for the response head".to_owned())?
}

/// Send one request over a fresh h2c (HTTP/2 prior knowledge) connection to `addr`.
pub async fn send_h2c(
    addr: SocketAddr,
    req: Request<TestBody>,
) -> Result<Response<Incoming>, String> {
    let mut sender = h2c_connect(addr).await?;
    tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "timed out waiting for the h2 response head".to_owned())?
        .map_err(|e| format!("send h2 request: {e}"))
}

/// Open one h2c (HTTP/2 prior knowledge) connection to `addr`, for several requests.
pub async fn h2c_connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http2::SendRequest<TestBody>, String> {
    let connect = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| format!("h2 handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, connect)
        .await
        .map_err(|_| "timed out opening the h2c connection".to_owned())?
}

/// Build an HTTP/1.1 request for `addr`; adds `Host: addr` unless `headers` has a Host.
pub fn build_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> Request<TestBody> {
    let mut builder = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        builder = builder.header("host", addr.to_string());
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(body)
        .unwrap_or_else(|e| panic!("invalid test request {method} {path}: {e}"))
}

/// One complete HTTP/1.1 exchange with `addr`.
pub async fn request_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Resp, String> {
    let req = build_request(addr, method, path, headers, full(body));
    collect(send_h1(addr, req).await?).await
}

/// Poll `check` every 100 ms until it returns true or `timeout` passes; returns the last result.
pub async fn wait_until<F>(mut check: F, timeout: Duration) -> bool
where
    F: AsyncFnMut() -> bool,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Temporary directory
// ---------------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create a fresh, uniquely named directory.
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "routerd-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// routerd process
// ---------------------------------------------------------------------------------------------

/// Path of the routerd binary under test.
pub fn routerd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_routerd")
}

/// The `routerctl` binary. It is its own crate, so cargo builds it beside this test binary
/// (`target/<profile>/`) when the workspace's tests are built (`cargo test --workspace`).
pub fn routerctl_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("no test executable: {e}"));
    // target/<profile>/deps/<test> -> target/<profile>/routerctl
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("routerctl"))
        .unwrap_or_else(|| panic!("cannot place {}", exe.display()));
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p routerctl` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Remove ANSI escape sequences (in case the logger colours its output).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Read lines from `pipe` into `sink` (prefixed with `tag`) on a background thread.
fn pump_lines(
    pipe: impl Read + Send + 'static,
    tag: &'static str,
    sink: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.split(b'\n') {
            let Ok(line) = line else { break };
            let line = strip_ansi(String::from_utf8_lossy(&line).trim_end());
            if let Ok(mut lines) = sink.lock() {
                lines.push(format!("[{tag}] {line}"));
            }
        }
    })
}

fn lock_lines(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    lines.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Whether a tagged log line (`[err] ...`) starts a new event: routerd's log lines begin with an
/// RFC 3339 timestamp (`2026-01-02T03:04:05...`).
fn starts_record(line: &str) -> bool {
    let text = line
        .split_once("] ")
        .map_or(line, |(_, rest)| rest)
        .as_bytes();
    text.len() > 11
        && text[..4].iter().all(u8::is_ascii_digit)
        && text[4] == b'-'
        && text[7] == b'-'
        && text[10] == b'T'
}

/// Groups tagged log lines into events: a line that does not start with a timestamp continues
/// the previous event (joined with `\n`).
pub fn log_records(lines: &[String]) -> Vec<String> {
    let mut records: Vec<String> = Vec::new();
    for line in lines {
        match records.last_mut() {
            Some(last) if !starts_record(line) => {
                last.push('\n');
                last.push_str(
                    line.split_once("] ")
                        .map_or(line.as_str(), |(_, rest)| rest),
                );
            }
            _ => records.push(line.clone()),
        }
    }
    records
}

/// Where routerd's config comes from.
pub enum ConfigSource {
    /// Written as JSON to `config.json` in the test's temp dir.
    Json(Value),
    /// An existing file, passed as is.
    File(PathBuf),
    /// No `--config` flag at all.
    None,
}

/// Spawn routerd with the standard flags in `dir` (plugins and data in `dir/plugins` and
/// `dir/data`), stdout and stderr piped.
fn spawn_routerd(dir: &Path, config: Option<&Path>) -> Child {
    spawn_routerd_with(dir, config, &dir.join("plugins"), &dir.join("data"))
}

/// Spawn routerd in `dir` with these plugins and data directories, stdout and stderr piped.
fn spawn_routerd_with(dir: &Path, config: Option<&Path>, plugins: &Path, data: &Path) -> Child {
    spawn_routerd_args(dir, config, plugins, data, "127.0.0.1:0", &[], None)
}

/// [`spawn_routerd_with`] with this `--admin` address and extra arguments after the standard
/// ones.
fn spawn_routerd_args(
    dir: &Path,
    config: Option<&Path>,
    plugins: &Path,
    data: &Path,
    admin: &str,
    extra: &[OsString],
    file_size_limit: Option<u64>,
) -> Child {
    std::fs::create_dir_all(plugins).expect("create plugins dir");
    std::fs::create_dir_all(data).expect("create data dir");
    let mut cmd = match file_size_limit {
        // util-linux's prlimit sets RLIMIT_FSIZE, then runs routerd.
        Some(bytes) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--fsize={bytes}"))
                .arg("--")
                .arg(routerd_bin());
            c
        }
        None => Command::new(routerd_bin()),
    };
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["--listen", "127.0.0.1:0", "--admin", admin])
        .args(extra)
        .arg("--plugins")
        .arg(plugins)
        .arg("--data")
        .arg(data)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("ROUTERD_CONFIG")
        .env_remove("ROUTERD_LISTEN")
        .env_remove("ROUTERD_ADMIN")
        .env_remove("ROUTERD_PLUGINS")
        .env_remove("ROUTERD_DATA")
        .env_remove("ROUTERD_DRAIN_SECS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn routerd")
}

/// A running routerd, killed on drop (its logs are printed when the test is panicking).
pub struct Routerd {
    child: Child,
    /// Proxy listener address.
    pub proxy: SocketAddr,
    /// Admin listener address.
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    config_path: Option<PathBuf>,
    exit: Option<ExitStatus>,
    plugins_dir: PathBuf,
    data_dir: PathBuf,
    dir: TempDir,
}

impl Routerd {
    /// Start with `config` written to a temp file.
    pub async fn start(config: &Value) -> Routerd {
        Routerd::start_from(ConfigSource::Json(config.clone())).await
    }

    /// Start with an existing config file.
    pub async fn start_with_file(path: &Path) -> Routerd {
        Routerd::start_from(ConfigSource::File(path.to_owned())).await
    }

    /// Start without `--config` (embedded default).
    pub async fn start_without_config() -> Routerd {
        Routerd::start_from(ConfigSource::None).await
    }

    /// Start and wait (bounded by [`STARTUP_TIMEOUT`]) until both listeners are logged.
    pub async fn start_from(source: ConfigSource) -> Routerd {
        Launch::new(source).start().await
    }

    /// A [`Launch`] with `config` written to a temp file (to add plugins, directories, ...).
    pub fn launch(config: &Value) -> Launch {
        Launch::new(ConfigSource::Json(config.clone()))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir routerd runs in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every log line so far (stdout and stderr, tagged).
    pub fn logs(&self) -> Vec<String> {
        lock_lines(&self.logs)
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock_lines(&self.stderr_lines)
    }

    /// The plugins directory it watches.
    pub fn plugins_dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// Its data directory (the compile cache is in `plugin-cache/`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// How many log lines so far (a mark for [`Routerd::wait_for_log`]).
    pub fn log_count(&self) -> usize {
        self.logs.lock().map(|l| l.len()).unwrap_or(0)
    }

    /// The log lines from index `from` on.
    pub fn logs_since(&self, from: usize) -> Vec<String> {
        self.logs
            .lock()
            .map(|l| l.iter().skip(from).cloned().collect())
            .unwrap_or_default()
    }

    /// The log records from line index `from` on: each event with its continuation lines (a
    /// message with newlines in it) joined by `\n`.
    pub fn log_records_since(&self, from: usize) -> Vec<String> {
        log_records(&self.logs_since(from))
    }

    /// Wait (bounded by `timeout`) for a log record (see [`Routerd::log_records_since`]) from
    /// line index `from` on that satisfies `pred`; returns it, or `None` at the deadline.
    pub async fn wait_for_log(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(record) = self.log_records_since(from).into_iter().find(|l| pred(l)) {
                return Some(record);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.exit = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Replace the config file atomically (write a temp file, then rename over it).
    pub fn write_config(&self, config: &Value) {
        let path = self
            .config_path
            .as_ref()
            .expect("routerd has a config file");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(config).expect("config json"),
        )
        .expect("write temp config");
        std::fs::rename(&tmp, path).expect("rename config");
    }

    /// Overwrite the config file in place with raw text (truncate + write, like many editors).
    pub fn write_config_in_place(&self, text: &str) {
        let path = self
            .config_path
            .as_ref()
            .expect("routerd has a config file");
        std::fs::write(path, text).expect("write config in place");
    }

    /// One HTTP/1.1 exchange with the proxy listener; panics on transport errors.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method} {path} failed: {e}\nrouterd logs:\n{}",
                    self.logs().join("\n")
                )
            })
    }

    /// One HTTP/1.1 exchange with the proxy listener.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp, String> {
        request_to(self.proxy, method, path, headers, body).await
    }

    /// `GET path` on the proxy listener.
    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], Bytes::new()).await
    }

    /// `GET path` on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Resp {
        request_to(self.admin, "GET", path, &[], Bytes::new())
            .await
            .unwrap_or_else(|e| panic!("admin GET {path} failed: {e}"))
    }

    /// `http://ADMIN_ADDR` (for `routerctl --admin`).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// One HTTP/1.1 exchange with the admin listener; panics on transport errors.
    pub async fn admin_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        request_to(self.admin, method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("admin {method} {path} failed: {e}"))
    }

    /// An admin request with a JSON body (`Content-Type: application/json`), or none.
    pub async fn admin_json(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        match body {
            Some(doc) => {
                self.admin_request(
                    method,
                    path,
                    &[("content-type", "application/json")],
                    doc.to_string(),
                )
                .await
            }
            None => self.admin_request(method, path, &[], Bytes::new()).await,
        }
    }

    /// Kill the process with SIGKILL (no chance to flush or clean up) and reap it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        self.child.kill().expect("SIGKILL routerd");
        let status = self.child.wait().expect("reap routerd");
        self.exit = Some(status);
        status
    }

    /// Send SIGTERM (via `kill -TERM`).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Wait (bounded) for the process to exit; `None` if it is still running at the deadline.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Routerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- routerd logs (pid {}) ----", self.child.id());
            for line in self.logs() {
                eprintln!("{line}");
            }
            eprintln!("---- end of routerd logs ----");
        }
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How to start routerd: the config, the plugins and data directories, and plugins (with their
/// settings) to put in the plugins directory first. Start with [`Routerd::launch`].
pub struct Launch {
    source: ConfigSource,
    plugins_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    warm_cache: bool,
    plugins: Vec<(String, PathBuf)>,
    settings: Vec<(String, Value)>,
    admin_addr: Option<String>,
    extra_args: Vec<OsString>,
    startup_timeout: Duration,
    file_size_limit: Option<u64>,
}

impl Launch {
    /// Defaults: `plugins/` and `data/` in the process's own temp dir, no plugins.
    pub fn new(source: ConfigSource) -> Launch {
        Launch {
            source,
            plugins_dir: None,
            data_dir: None,
            warm_cache: false,
            plugins: Vec::new(),
            settings: Vec::new(),
            admin_addr: None,
            extra_args: Vec::new(),
            startup_timeout: STARTUP_TIMEOUT,
            file_size_limit: None,
        }
    }

    /// Wait this long for the listeners instead of [`STARTUP_TIMEOUT`] (big plugins compiled
    /// cold at start, in a debug build, take a while).
    pub fn startup_timeout(mut self, timeout: Duration) -> Launch {
        self.startup_timeout = timeout;
        self
    }

    /// Pass `--admin addr` instead of `127.0.0.1:0` (only [`Launch::run_to_exit`] may use a
    /// non-loopback address: tests never send traffic anywhere but 127.0.0.1).
    pub fn admin_addr(mut self, addr: &str) -> Launch {
        self.admin_addr = Some(addr.to_owned());
        self
    }

    /// Add a command-line argument after the standard ones (e.g. `--admin-token-file`).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Launch {
        self.extra_args.push(arg.into());
        self
    }

    fn spawn(&self, dir: &Path, config: Option<&Path>, plugins: &Path, data: &Path) -> Child {
        let admin = self.admin_addr.as_deref().unwrap_or("127.0.0.1:0");
        spawn_routerd_args(
            dir,
            config,
            plugins,
            data,
            admin,
            &self.extra_args,
            self.file_size_limit,
        )
    }

    /// Run routerd with this file size limit (`RLIMIT_FSIZE`): a write past it fails the way a
    /// full disk fails it.
    pub fn file_size_limit(mut self, bytes: u64) -> Launch {
        self.file_size_limit = Some(bytes);
        self
    }

    /// Use this (existing or new) plugins directory.
    pub fn plugins_dir(mut self, dir: &Path) -> Launch {
        self.plugins_dir = Some(dir.to_owned());
        self
    }

    /// Use this data directory (e.g. [`shared_plugin_data`], or a fresh one for cache tests).
    pub fn data_dir(mut self, dir: &Path) -> Launch {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Start with a private data directory holding a copy of the shared warm compile cache
    /// ([`shared_plugin_data`]): no cold plugin compiles, and no data shared with another
    /// routerd (the route database takes an exclusive lock).
    pub fn warm_cache(mut self) -> Launch {
        self.warm_cache = true;
        self
    }

    /// Install the built plugin `name` (see [`dist_plugin`]) under its own name.
    pub fn plugin(self, name: &str) -> Launch {
        self.plugin_as(name, name)
    }

    /// Install the built plugin `built` as `name.wasm`.
    pub fn plugin_as(mut self, name: &str, built: &str) -> Launch {
        self.plugins.push((name.to_owned(), dist_plugin(built)));
        self
    }

    /// Install the component at `path` as `name.wasm`.
    pub fn plugin_path(mut self, name: &str, path: &Path) -> Launch {
        self.plugins.push((name.to_owned(), path.to_owned()));
        self
    }

    /// Write `settings` to `name.json` in the plugins directory.
    pub fn plugin_settings(mut self, name: &str, settings: Value) -> Launch {
        self.settings.push((name.to_owned(), settings));
        self
    }

    /// Create the directories, install the plugins and settings; returns (plugins, data).
    fn prepare(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let plugins = self
            .plugins_dir
            .clone()
            .unwrap_or_else(|| dir.join("plugins"));
        let data = self.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        std::fs::create_dir_all(&plugins).expect("create plugins dir");
        std::fs::create_dir_all(&data).expect("create data dir");
        if self.warm_cache {
            let cache = data.join("plugin-cache");
            std::fs::create_dir_all(&cache).expect("create plugin-cache");
            let shared = shared_plugin_data().join("plugin-cache");
            for entry in std::fs::read_dir(&shared)
                .expect("read the shared cache")
                .flatten()
            {
                let _ = std::fs::copy(entry.path(), cache.join(entry.file_name()));
            }
        }
        for (name, source) in &self.plugins {
            let bytes = std::fs::read(source)
                .unwrap_or_else(|e| panic!("read plugin {}: {e}", source.display()));
            install_file(&plugins.join(format!("{name}.wasm")), &bytes);
        }
        for (name, settings) in &self.settings {
            let text = serde_json::to_vec_pretty(settings).expect("settings json");
            install_file(&plugins.join(format!("{name}.json")), &text);
        }
        (plugins, data)
    }

    /// Start and wait (bounded by [`STARTUP_TIMEOUT`], or [`Launch::startup_timeout`]) until
    /// both listeners are logged.
    pub async fn start(self) -> Routerd {
        let dir = TempDir::new("rd");
        let (plugins_dir, data_dir) = self.prepare(dir.path());
        let config_path = match &self.source {
            ConfigSource::Json(json) => {
                let path = dir.path().join("config.json");
                std::fs::write(&path, serde_json::to_vec_pretty(json).expect("config json"))
                    .expect("write config");
                Some(path)
            }
            ConfigSource::File(path) => Some(path.clone()),
            ConfigSource::None => None,
        };
        let mut child = self.spawn(dir.path(), config_path.as_deref(), &plugins_dir, &data_dir);
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        pump_lines(stdout, "out", logs.clone());
        {
            // stderr goes to both the combined log and a stderr-only copy.
            let (logs, stderr_lines) = (logs.clone(), stderr_lines.clone());
            std::thread::spawn(move || {
                let reader = BufReader::new(stderr);
                for line in reader.split(b'\n') {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(String::from_utf8_lossy(&line).trim_end());
                    if let Ok(mut l) = stderr_lines.lock() {
                        l.push(line.clone());
                    }
                    if let Ok(mut l) = logs.lock() {
                        l.push(format!("[err] {line}"));
                    }
                }
            });
        }

        let proxy_re =
            regex::Regex::new(r"proxy listening on http://([0-9.]+:[0-9]+)").expect("regex");
        let admin_re =
            regex::Regex::new(r"admin listening on http://([0-9.]+:[0-9]+)").expect("regex");
        let startup_timeout = self.startup_timeout;
        let deadline = Instant::now() + startup_timeout;
        let (proxy, admin) = loop {
            let lines = lock_lines(&logs);
            let find = |re: &regex::Regex| {
                lines.iter().find_map(|l| {
                    re.captures(l)
                        .and_then(|c| c.get(1))
                        .and_then(|m| m.as_str().parse::<SocketAddr>().ok())
                })
            };
            if let (Some(p), Some(a)) = (find(&proxy_re), find(&admin_re)) {
                break (p, a);
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "routerd exited during startup with {status}; logs:\n{}",
                    lock_lines(&logs).join("\n")
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "routerd did not log both listeners within {startup_timeout:?}; logs:\n{}",
                    lock_lines(&logs).join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Routerd {
            child,
            proxy,
            admin,
            logs,
            stderr_lines,
            config_path,
            exit: None,
            plugins_dir,
            data_dir,
            dir,
        }
    }

    /// Run to completion instead (for configs routerd must refuse): wait (bounded by
    /// `timeout`) for it to exit; if it starts serving instead it is killed at once.
    pub async fn run_to_exit(self, timeout: Duration) -> RunOutcome {
        let dir = TempDir::new("run");
        let (plugins_dir, data_dir) = self.prepare(dir.path());
        let config = match &self.source {
            ConfigSource::Json(json) => {
                let path = dir.path().join("config.json");
                std::fs::write(&path, serde_json::to_vec_pretty(json).expect("config json"))
                    .expect("write config");
                Some(path)
            }
            ConfigSource::File(path) => Some(path.clone()),
            ConfigSource::None => None,
        };
        let child = self.spawn(dir.path(), config.as_deref(), &plugins_dir, &data_dir);
        wait_for_exit_or_start(child, timeout).await
    }
}

/// What happened when routerd was run to completion (see [`run_routerd_to_exit`]).
#[derive(Debug)]
pub struct RunOutcome {
    /// Exit status, or `None` if it was still running at the deadline (then it was killed).
    pub status: Option<ExitStatus>,
    /// True if it logged `proxy listening` (it started instead of refusing the config).
    pub started: bool,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Run routerd with `config_text` as its config file and wait (bounded by `timeout`) for it to
/// exit. If it starts serving instead (logs `proxy listening`), it is killed at once.
pub async fn run_routerd_to_exit(config_text: Option<&str>, timeout: Duration) -> RunOutcome {
    let dir = TempDir::new("run");
    let config_path = dir.path().join("config.json");
    let config = match config_text {
        Some(text) => {
            std::fs::write(&config_path, text).expect("write config");
            config_path
        }
        None => dir.path().join("does-not-exist.json"),
    };
    let child = spawn_routerd(dir.path(), Some(&config));
    wait_for_exit_or_start(child, timeout).await
}

/// Wait (bounded by `timeout`) for `child` to exit; kill it as soon as it logs
/// `proxy listening`.
async fn wait_for_exit_or_start(mut child: Child, timeout: Duration) -> RunOutcome {
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let out_thread = pump_lines(child.stdout.take().expect("stdout"), "out", out.clone());
    let err_thread = pump_lines(child.stderr.take().expect("stderr"), "err", err.clone());
    let deadline = Instant::now() + timeout;
    let mut started = false;
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        let all: Vec<String> = lock_lines(&out)
            .into_iter()
            .chain(lock_lines(&err))
            .collect();
        if all.iter().any(|l| l.contains("proxy listening")) {
            started = true;
        }
        if started || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = out_thread.join();
    let _ = err_thread.join();
    let strip = |lines: Vec<String>| {
        lines
            .into_iter()
            .map(|l| {
                l.split_once("] ")
                    .map(|x| x.1)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    RunOutcome {
        status,
        started,
        stdout: strip(lock_lines(&out)),
        stderr: strip(lock_lines(&err)),
    }
}

// ---------------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------------

/// The repository root (the parent of `host/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Hold an exclusive lock on `target/NAME` (created if missing) until the file is dropped, so
/// that several test processes take turns.
fn exclusive_lock(name: &str) -> std::fs::File {
    let target = repo_root().join("target");
    std::fs::create_dir_all(&target).expect("create target dir");
    let path = target.join(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open lock file {}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    file
}

/// Runs the build script `plugins/SCRIPT` (a path below `plugins/`) under an exclusive file lock
/// (`target/LOCK`), so that test binaries running at once take turns; panics with the script's
/// output if it fails.
fn run_plugin_build(script: &str, lock: &str) {
    let root = repo_root();
    let _lock = exclusive_lock(lock);
    let script = root.join("plugins").join(script);
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(&root)
        // The plugins workspace has its own target dir; an inherited override would send the
        // artifacts elsewhere.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !output.status.success() {
        panic!(
            "{} failed ({}) after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            script.display(),
            output.status,
            started.elapsed(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// `plugins/dist`, after `bash plugins/build.sh` has built every plugin to wasm32-wasip2 (at
/// most once per test process, see [`run_plugin_build`]).
pub fn plugins_dist() -> PathBuf {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        run_plugin_build("build.sh", "plugins-build.lock");
        repo_root().join("plugins").join("dist")
    })
    .clone()
}

/// The built plugin `plugins/dist/NAME.wasm` (building the plugins first if needed).
pub fn dist_plugin(name: &str) -> PathBuf {
    let path = plugins_dist().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} does not exist after plugins/build.sh",
        path.display()
    );
    path
}

/// The `lang` plugin in guest language `lang`: `plugins/dist/lang-rust.wasm` for Rust, else
/// `plugins/lang/dist/lang-LANG.wasm`, built by `plugins/lang/build.sh` (which installs missing
/// toolchains and skips builds that are up to date) at most once per test process.
pub fn lang_plugin(lang: &str) -> PathBuf {
    if lang == "rust" {
        return dist_plugin("lang-rust");
    }
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    let dist = DIST.get_or_init(|| {
        run_plugin_build("lang/build.sh", "lang-build.lock");
        repo_root().join("plugins").join("lang").join("dist")
    });
    let path = dist.join(format!("lang-{lang}.wasm"));
    assert!(
        path.is_file(),
        "{} does not exist after plugins/lang/build.sh",
        path.display()
    );
    path
}

/// Write `bytes` to `path` atomically: a hidden temp file in the same directory (whose name
/// does not end in `.wasm` or `.json`, so the plugin watcher ignores it), then a rename.
pub fn install_file(path: &Path, bytes: &[u8]) {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().expect("file has a directory");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let tmp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} -> {}: {e}", tmp.display(), path.display()));
}

/// A data directory shared by the tests that are not about the compile cache
/// (`target/plugin-test-data`), so their routerd processes load plugins from the cache instead
/// of compiling them. The first call in a process (under an exclusive file lock) fills the cache
/// by starting routerd once with every built plugin.
pub fn shared_plugin_data() -> PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let dist = plugins_dist();
        let data = repo_root().join("target").join("plugin-test-data");
        let _lock = exclusive_lock("plugin-test-data.lock");
        let dir = TempDir::new("warm");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("create plugins dir");
        let mut count = 0;
        for entry in std::fs::read_dir(&dist).expect("read plugins/dist") {
            let path = entry.expect("dist entry").path();
            if path.extension().is_some_and(|e| e == "wasm") {
                let name = path.file_name().expect("file name");
                std::fs::copy(&path, plugins.join(name)).expect("copy plugin");
                count += 1;
            }
        }
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"routes": []}"#).expect("write config");
        let mut child = spawn_routerd_with(dir.path(), Some(&config), &plugins, &data);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = pump_lines(child.stdout.take().expect("stdout"), "out", lines.clone());
        let err = pump_lines(child.stderr.take().expect("stderr"), "err", lines.clone());
        // Compiling every plugin cold in a debug build takes a few seconds.
        let deadline = Instant::now() + Duration::from_secs(120);
        let started = loop {
            if lock_lines(&lines)
                .iter()
                .any(|l| l.contains("proxy listening"))
            {
                break true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        let _ = out.join();
        let _ = err.join();
        assert!(
            started,
            "routerd did not start with the {count} built plugins to fill the shared compile \
             cache; logs:\n{}",
            lock_lines(&lines).join("\n")
        );
        data
    })
    .clone()
}

// ---------------------------------------------------------------------------------------------
// Config builders
// ---------------------------------------------------------------------------------------------

/// A matcher object.
pub fn matcher(condition: &str, field: Option<&str>, pattern: &str, is_regex: bool) -> Value {
    let mut m = json!({"condition": condition, "pattern": pattern});
    if let Some(field) = field {
        m["field"] = json!(field);
    }
    if is_regex {
        m["is_regex"] = json!(true);
    }
    m
}

/// `path` matcher with a radix pattern.
pub fn path(pattern: &str) -> Value {
    matcher("path", None, pattern, false)
}

/// `path` matcher with a regex.
pub fn path_re(pattern: &str) -> Value {
    matcher("path", None, pattern, true)
}

/// `path_prefix` matcher.
pub fn prefix(pattern: &str) -> Value {
    matcher("path_prefix", None, pattern, false)
}

/// `host` matcher (exact or `*.` wildcard).
pub fn host(pattern: &str) -> Value {
    matcher("host", None, pattern, false)
}

/// `method` matcher (`GET|POST`).
pub fn method(pattern: &str) -> Value {
    matcher("method", None, pattern, false)
}

/// `header` matcher, exact value.
pub fn header(name: &str, value: &str) -> Value {
    matcher("header", Some(name), value, false)
}

/// A plugin predicate matcher: `{"condition": "plugin", "plugin": plugin, "args": args}`.
pub fn plugin_pred(plugin: &str, args: &[&str]) -> Value {
    json!({"condition": "plugin", "plugin": plugin, "args": args})
}

/// A route under construction.
pub struct Route(pub Value);

impl Route {
    /// A route answering `200` with its own name as a text/plain body (`respond` filter).
    pub fn respond(name: &str) -> Route {
        Route(json!({
            "name": name,
            "matchers": [],
            "filters": [{"name": "respond", "args": ["200", name, "text/plain"]}],
        }))
    }

    /// A route proxying to `target_url`, no filters.
    pub fn proxy(name: &str, target_url: &str) -> Route {
        Route(json!({
            "name": name,
            "target_url": target_url,
            "matchers": [],
        }))
    }

    /// Add a matcher.
    pub fn m(mut self, matcher: Value) -> Route {
        self.push("matchers", matcher);
        self
    }

    /// Set the priority.
    pub fn priority(self, priority: u32) -> Route {
        self.set("priority", json!(priority))
    }

    /// Set any field.
    pub fn set(mut self, key: &str, value: Value) -> Route {
        self.0[key] = value;
        self
    }

    /// Append a filter. On a `respond` route it goes before the `respond` filter.
    pub fn filter(mut self, name: &str, args: &[&str]) -> Route {
        self.push_filter(json!({"name": name, "args": args}), name != "respond");
        self
    }

    /// Append a plugin filter (`{"plugin": plugin, "args": args}`). On a `respond` route it goes
    /// before the `respond` filter.
    pub fn plugin_filter(mut self, plugin: &str, args: &[&str]) -> Route {
        self.push_filter(json!({"plugin": plugin, "args": args}), true);
        self
    }

    fn push_filter(&mut self, filter: Value, before_respond: bool) {
        match self.0["filters"].as_array_mut() {
            Some(list) if before_respond && list.last().is_some_and(|f| f["name"] == "respond") => {
                let at = list.len() - 1;
                list.insert(at, filter);
            }
            _ => self.push("filters", filter),
        }
    }

    fn push(&mut self, key: &str, value: Value) {
        match self.0[key].as_array_mut() {
            Some(list) => list.push(value),
            None => self.0[key] = json!([value]),
        }
    }

    /// The JSON object.
    pub fn build(self) -> Value {
        self.0
    }
}

/// `{"routes": [...]}`.
pub fn config(routes: Vec<Route>) -> Value {
    json!({"routes": routes.into_iter().map(Route::build).collect::<Vec<_>>()})
}

// ---------------------------------------------------------------------------------------------
// Table-driven probes
// ---------------------------------------------------------------------------------------------

/// What a probe expects.
#[derive(Clone, Debug)]
pub enum Expect {
    /// 200 with the body equal to this route name (routes built with [`Route::respond`]).
    Route(String),
    /// Proxied to the echo backend with this name (any status).
    Backend(String),
    /// This status.
    Status(u16),
    /// This redirect status, with `Location` equal to this (path and query; an absolute URL
    /// with this as its path and query is accepted too).
    Redirect(u16, String),
    /// An error status with a JSON body naming this route (502/504).
    ErrorRoute(u16, String),
}

/// One request and its expected outcome.
#[derive(Clone, Debug)]
pub struct Probe {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    expect: Option<Expect>,
}

/// A probe for `method path`; finish with one of the `expect_*` methods.
pub fn probe(method: &str, path: &str) -> Probe {
    Probe {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Bytes::new(),
        expect: None,
    }
}

impl Probe {
    /// Add a request header.
    pub fn header(mut self, name: &str, value: &str) -> Probe {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the request body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Probe {
        self.body = body.into();
        self
    }

    /// Expect [`Expect::Route`].
    pub fn route(mut self, name: &str) -> Probe {
        self.expect = Some(Expect::Route(name.to_owned()));
        self
    }

    /// Expect [`Expect::Backend`].
    pub fn backend(mut self, name: &str) -> Probe {
        self.expect = Some(Expect::Backend(name.to_owned()));
        self
    }

    /// Expect [`Expect::Status`].
    pub fn status(mut self, status: u16) -> Probe {
        self.expect = Some(Expect::Status(status));
        self
    }

    /// Expect [`Expect::Redirect`].
    pub fn redirect(mut self, status: u16, location: &str) -> Probe {
        self.expect = Some(Expect::Redirect(status, location.to_owned()));
        self
    }

    /// Expect [`Expect::ErrorRoute`].
    pub fn error_route(mut self, status: u16, route: &str) -> Probe {
        self.expect = Some(Expect::ErrorRoute(status, route.to_owned()));
        self
    }

    fn label(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        for (k, v) in &self.headers {
            s.push_str(&format!(" [{k}: {v}]"));
        }
        if !self.body.is_empty() {
            let body = String::from_utf8_lossy(&self.body);
            let shown: String = body.chars().take(60).collect();
            s.push_str(&format!(" body {shown:?}"));
        }
        s
    }
}

/// Strip `http://authority` from an absolute URL, keeping path and query.
pub fn location_path(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => match rest.find('/') {
            Some(i) => rest[i..].to_owned(),
            None => "/".to_owned(),
        },
        None => location.to_owned(),
    }
}

/// Check one response against an expectation; `Err` describes the mismatch.
pub fn check_expect(expect: &Expect, resp: &Resp) -> Result<(), String> {
    match expect {
        Expect::Route(name) => {
            if resp.status == 200 && resp.text() == *name {
                Ok(())
            } else {
                Err(format!(
                    "expected route `{name}` (200), got {}",
                    resp.describe()
                ))
            }
        }
        Expect::Backend(name) => match resp.backend() {
            Some(b) if b == *name => Ok(()),
            _ => Err(format!(
                "expected backend `{name}`, got {}",
                resp.describe()
            )),
        },
        Expect::Status(status) => {
            if resp.status == *status {
                Ok(())
            } else {
                Err(format!("expected status {status}, got {}", resp.describe()))
            }
        }
        Expect::Redirect(status, location) => {
            let got = resp.header("location");
            let ok = resp.status == *status
                && got.as_deref().map(location_path).as_deref() == Some(location.as_str());
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "expected {status} to {location:?}, got {} with Location {got:?}",
                    resp.describe()
                ))
            }
        }
        Expect::ErrorRoute(status, route) => {
            let json = resp.try_json();
            let got_route = json
                .as_ref()
                .and_then(|j| j.get("route"))
                .and_then(Value::as_str);
            if resp.status == *status && got_route == Some(route.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "expected {status} with \"route\": {route:?}, got {}",
                    resp.describe()
                ))
            }
        }
    }
}

/// Run every probe against `rd`; returns one line per mismatch, prefixed with `label`.
pub async fn run_probes(rd: &Routerd, label: &str, probes: &[Probe]) -> Vec<String> {
    let mut failures = Vec::new();
    for p in probes {
        let headers: Vec<(&str, &str)> = p
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let expect = p.expect.as_ref().expect("probe without expectation");
        match rd
            .try_request(&p.method, &p.path, &headers, p.body.clone())
            .await
        {
            Ok(resp) => {
                if let Err(e) = check_expect(expect, &resp) {
                    failures.push(format!("[{label}] {}: {e}", p.label()));
                }
            }
            Err(e) => failures.push(format!("[{label}] {}: transport error: {e}", p.label())),
        }
    }
    failures
}

/// Panic with every failure, one per line, if there are any.
pub fn assert_no_failures(failures: &[String]) {
    let count = failures
        .iter()
        .filter(|f| !f.contains("routerd log tail:"))
        .count();
    assert!(
        failures.is_empty(),
        "{count} failure(s):\n{}",
        failures.join("\n")
    );
}

/// Start routerd on `config`, run `probes`, and return the mismatches (routerd logs are appended
/// to the first failure of the case).
pub async fn run_case(label: &str, config: &Value, probes: &[Probe]) -> Vec<String> {
    let rd = Routerd::start(config).await;
    let mut failures = run_probes(&rd, label, probes).await;
    if !failures.is_empty() {
        let logs = rd.logs();
        let tail: Vec<&String> = logs.iter().rev().take(20).rev().collect();
        failures.push(format!(
            "[{label}] routerd log tail:\n    {}",
            tail.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n    ")
        ));
    }
    failures
}
