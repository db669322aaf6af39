//! In-memory requests and responses for testing plugins natively with `cargo test`.
//!
//! A [`Request`] normally reads from routerd, which only exists inside the WebAssembly
//! component. A [`MockRequest`] holds the same data in memory and lends out a [`Request`] view,
//! so a plugin's `matches` / `on_request` / `on_response` can be called directly in unit tests.
//!
//! ```
//! use routerd_sdk::testing::{MockRequest, MockResponse};
//!
//! let mock = MockRequest::new("GET", "/users/42?tab=posts&q=a+b")
//!     .header("Cookie", "theme=dark; sid=xyz")
//!     .header("X-Forwarded-For", "10.0.0.1")
//!     .param("id", "42")
//!     .remote_addr("[::1]:5555");
//! let req = mock.as_request();
//! assert_eq!(req.method(), "GET");
//! assert_eq!(req.path(), "/users/42");
//! assert_eq!(req.query(), "tab=posts&q=a+b");
//! assert_eq!(req.query_param("q").as_deref(), Some("a b"));
//! assert_eq!(req.header("x-forwarded-for").as_deref(), Some("10.0.0.1"));
//! assert_eq!(req.cookie("sid").as_deref(), Some("xyz"));
//! assert_eq!(req.param("id").as_deref(), Some("42"));
//! assert_eq!(req.remote_ip(), Some("::1".parse().unwrap()));
//!
//! let resp = MockResponse::new(404).header("Content-Type", "text/plain");
//! assert_eq!(resp.as_response().header("content-type").as_deref(), Some("text/plain"));
//! ```
//!
//! [`Request`]: crate::Request

use crate::request::{Request, Response};

/// An in-memory request. Build it with [`MockRequest::new`] and the builder methods, then call
/// [`as_request`](Self::as_request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// `http` or `https` (default `http`).
    pub scheme: String,
    /// Host without port (default empty).
    pub host: String,
    /// Path, e.g. `/users/42`.
    pub path: String,
    /// Raw query without `?`.
    pub query: String,
    /// Headers in order; names lowercase.
    pub headers: Vec<(String, String)>,
    /// Client address `ip:port` (default `127.0.0.1:40000`).
    pub remote_addr: String,
    /// Path parameters.
    pub params: Vec<(String, String)>,
}

impl MockRequest {
    /// A request for `target`, a path with an optional `?query`.
    pub fn new(method: impl Into<String>, target: &str) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Self {
            method: method.into(),
            scheme: "http".to_owned(),
            host: String::new(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            remote_addr: "127.0.0.1:40000".to_owned(),
            params: Vec::new(),
        }
    }

    /// Adds a header (name lowercased); call again for more values.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.headers.push((name, value.into()));
        self
    }

    /// Adds a path parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Sets the scheme.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// Sets the host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the client address (`ip:port`).
    pub fn remote_addr(mut self, addr: impl Into<String>) -> Self {
        self.remote_addr = addr.into();
        self
    }

    /// A [`Request`] view of this request, as a plugin would receive it.
    pub fn as_request(&self) -> Request<'_> {
        Request::from_mock(self)
    }

    pub(crate) fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An in-memory response head for testing a filter's response phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order; names lowercase.
    pub headers: Vec<(String, String)>,
}

impl MockResponse {
    /// A response with this status and no headers.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
        }
    }

    /// Adds a header (name lowercased).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.headers.push((name, value.into()));
        self
    }

    /// A [`Response`] view of this response, as a filter would receive it.
    pub fn as_response(&self) -> Response<'_> {
        Response::from_mock(self)
    }
}

/// What [`respond_outbound`] answers with.
type OutboundResponder = Box<
    dyn Fn(
        &crate::outbound::OutboundRequest,
    ) -> Result<crate::outbound::OutboundResponse, crate::outbound::OutboundError>,
>;

std::thread_local! {
    static OUTBOUND: std::cell::RefCell<Option<OutboundResponder>> = const { std::cell::RefCell::new(None) };
}

/// Answers this thread's [`OutboundRequest::send`](crate::outbound::OutboundRequest::send)
/// calls natively with `responder`, so a plugin that calls out can be tested with `cargo test`.
///
/// ```
/// use routerd_sdk::outbound::{OutboundRequest, OutboundResponse};
/// use routerd_sdk::testing::respond_outbound;
///
/// respond_outbound(|req| Ok(OutboundResponse {
///     status: if req.headers.iter().any(|(_, v)| v == "Bearer good") { 200 } else { 403 },
///     ..Default::default()
/// }));
/// let good = OutboundRequest::get("http://auth/check").header("authorization", "Bearer good");
/// assert_eq!(good.send().map(|r| r.status), Ok(200));
/// assert_eq!(OutboundRequest::get("http://auth/check").send().map(|r| r.status), Ok(403));
/// ```
pub fn respond_outbound(
    responder: impl Fn(
        &crate::outbound::OutboundRequest,
    ) -> Result<crate::outbound::OutboundResponse, crate::outbound::OutboundError>
    + 'static,
) {
    OUTBOUND.with(|r| *r.borrow_mut() = Some(Box::new(responder)));
}

/// The answer of this thread's responder, if one is set.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn outbound_answer(
    req: &crate::outbound::OutboundRequest,
) -> Option<Result<crate::outbound::OutboundResponse, crate::outbound::OutboundError>> {
    OUTBOUND.with(|r| r.borrow().as_ref().map(|f| f(req)))
}
