//! Request and response bodies, and the echo backends tests proxy to (on 127.0.0.1).

use super::*;

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
