//! The HTTP client tests send requests with: HTTP/1.1 and h2c over real sockets, bounded in time.

use super::*;

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

/// The value of one series, written as in the exposition (`name{label="v",...}`), in a
/// `/metrics` text; `None` when it is not there.
pub fn series_value(metrics: &str, series: &str) -> Option<f64> {
    let want = format!("{series} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
}

/// Asserts `resp` is one of routerd's own JSON errors (`{"error": ...}`).
pub fn assert_json_error(resp: &Resp) {
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "error response content-type should be application/json, got {ct:?} ({})",
        resp.describe()
    );
    let json = resp.json();
    assert!(
        json.get("error").is_some_and(|e| e.is_string()),
        "error body should be {{\"error\": \"...\"}}, got {json}"
    );
}
