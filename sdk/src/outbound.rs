//! Calling out over HTTP from a plugin, through the standard `wasi:http/outgoing-handler`.
//!
//! routerd sends a request only to an origin its settings file lists for the plugin
//! (`"http": {"allow": ["http://127.0.0.1:9000", "https://*.example.com"]}` in `NAME.json`); any
//! other is refused with [`OutboundError::Denied`] before a connection is made. The request runs
//! within the call's deadline (raise `deadline_ms` for a plugin that calls out: a round trip
//! counts against it), and the response body is capped (`http.max_response_bytes`, 1 MiB by
//! default). Connections are pooled by routerd.
//!
//! ```no_run
//! use std::time::Duration;
//! use routerd_sdk::outbound::OutboundRequest;
//!
//! let answer = OutboundRequest::get("http://127.0.0.1:9000/check")
//!     .header("authorization", "Bearer abc")
//!     .timeout(Duration::from_millis(40))
//!     .send();
//! match answer {
//!     Ok(r) if r.status == 200 => { /* allowed */ }
//!     Ok(r) => { /* the service said no: r.status, r.text() */ }
//!     Err(e) => { /* denied, unreachable, too slow: decide fail-open or closed */ }
//! }
//! ```
//!
//! Compiled natively (for `cargo test`), requests go to the responder set with
//! [`crate::testing::respond_outbound`], or fail.

use std::time::Duration;

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Absolute URL: `http://host[:port]/path?query` or `https://...`.
    pub url: String,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body (empty: none).
    pub body: Vec<u8>,
    /// How long to wait for the response head; the call's deadline bounds it anyway.
    pub timeout: Option<Duration>,
}

/// A response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutboundResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// The URL is not an absolute `http`/`https` URL, or a header is invalid.
    Invalid(String),
    /// routerd refused it: the origin is not on the plugin's `http.allow` list.
    Denied,
    /// Connecting, sending or reading failed, or the response was too large or too slow (the
    /// message says which).
    Failed(String),
}

impl std::fmt::Display for OutboundError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::Invalid(why) => write!(f, "invalid request: {why}"),
            OutboundError::Denied => {
                f.write_str("refused by routerd: the origin is not on the plugin's http.allow list")
            }
            OutboundError::Failed(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl std::error::Error for OutboundError {}

impl OutboundRequest {
    /// A request with `method` to `url`.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        OutboundRequest {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` of `body` to `url`.
    pub fn post(url: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::new("POST", url).body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets how long to wait for the response head.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends it and reads the whole response.
    pub fn send(&self) -> Result<OutboundResponse, OutboundError> {
        imp::send(self)
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{OutboundError, OutboundRequest, OutboundResponse};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions,
        Scheme,
    };
    use wasip2::io::streams::StreamError;

    fn invalid(why: impl Into<String>) -> OutboundError {
        OutboundError::Invalid(why.into())
    }

    fn failed(code: ErrorCode) -> OutboundError {
        match code {
            ErrorCode::HttpRequestDenied => OutboundError::Denied,
            other => OutboundError::Failed(format!("{other:?}")),
        }
    }

    fn method(m: &str) -> Method {
        match m.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other(m.to_owned()),
        }
    }

    pub fn send(r: &OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let uri: http::Uri = r
            .url
            .parse()
            .map_err(|e| invalid(format!("{}: {e}", r.url)))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::Http,
            Some("https") => Scheme::Https,
            _ => return Err(invalid(format!("{}: not an http or https URL", r.url))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| invalid(format!("{}: no host", r.url)))?;
        let mut entries: Vec<(String, Vec<u8>)> = r
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect();
        // A known length, so the body is not sent chunked.
        if !r.body.is_empty() && !entries.iter().any(|(n, _)| n == "content-length") {
            entries.push((
                "content-length".into(),
                r.body.len().to_string().into_bytes(),
            ));
        }
        let headers =
            Fields::from_list(&entries).map_err(|e| invalid(format!("headers: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        request
            .set_method(&method(&r.method))
            .and_then(|()| request.set_scheme(Some(&scheme)))
            .and_then(|()| request.set_authority(Some(authority.as_str())))
            .and_then(|()| request.set_path_with_query(Some(path)))
            .map_err(|()| invalid(format!("{} {}", r.method, r.url)))?;
        let body = request
            .body()
            .map_err(|()| invalid("the request body was already taken"))?;
        let options = RequestOptions::new();
        if let Some(t) = r.timeout {
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            // A host may not support the option; the call's deadline bounds the wait anyway.
            let _ = options.set_first_byte_timeout(Some(nanos));
        }
        write_body(&body, &r.body)?;
        OutgoingBody::finish(body, None).map_err(failed)?;
        let pending = outgoing_handler::handle(request, Some(options)).map_err(failed)?;
        pending.subscribe().block();
        let response = match pending.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(failed(code)),
            Some(Err(())) | None => {
                return Err(OutboundError::Failed("the response was not ready".into()));
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| OutboundError::Failed("the response body was already taken".into()))?;
        let body = read_body(&incoming)?;
        drop(IncomingBody::finish(incoming));
        Ok(OutboundResponse {
            status,
            headers,
            body,
        })
    }

    fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), OutboundError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let stream = body
            .write()
            .map_err(|()| OutboundError::Failed("cannot write the request body".into()))?;
        // `blocking-write-and-flush` takes at most 4096 bytes a call.
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| OutboundError::Failed(format!("writing the request body: {e:?}")))?;
        }
        Ok(())
    }

    fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, OutboundError> {
        let stream = incoming
            .stream()
            .map_err(|()| OutboundError::Failed("cannot read the response body".into()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => return Ok(body),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(OutboundError::Failed(format!(
                        "reading the response body: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{OutboundError, OutboundRequest, OutboundResponse};

    pub fn send(r: &OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        crate::testing::outbound_answer(r).unwrap_or_else(|| {
            Err(OutboundError::Failed(
                "no network natively: set a responder with testing::respond_outbound".into(),
            ))
        })
    }
}
