//! What a filter hands back: request edits, a reply, response edits.
//!
//! These are plain values with builder methods; nothing here calls routerd, so they can be built
//! and compared in native tests.
//!
//! Header names given to the builders are lowercased (HTTP header names are case-insensitive and
//! the plugin contract carries them in lowercase); values are kept as given.
//!
//! ```
//! use routerd_sdk::{HeaderOp, Reply, RequestAction, RequestEdits, ResponseEdits};
//!
//! let edits = RequestEdits::new()
//!     .set_header("X-User", "42")
//!     .remove_header("Authorization")
//!     .path("/v2/users/42");
//! assert_eq!(edits.headers[0], HeaderOp::Set("x-user".into(), "42".into()));
//! assert_eq!(edits.path.as_deref(), Some("/v2/users/42"));
//!
//! let reply = Reply::json(401, r#"{"error":"unauthorized"}"#).header("WWW-Authenticate", "Bearer");
//! assert_eq!(reply.status, 401);
//! assert_eq!(reply.headers[1], ("www-authenticate".to_string(), "Bearer".to_string()));
//!
//! // Both convert into the request phase's result.
//! assert!(matches!(RequestAction::from(edits), RequestAction::Proceed(_)));
//! assert!(matches!(RequestAction::from(reply), RequestAction::Respond(_)));
//!
//! let resp = ResponseEdits::new().status(203).append_header("Via", "routerd");
//! assert_eq!(resp.status, Some(203));
//! ```

use crate::bindings::types as wit;

fn lower(name: impl Into<String>) -> String {
    let mut name = name.into();
    name.make_ascii_lowercase();
    name
}

/// One change to a header list, applied in order with the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderOp {
    /// Replace every value of header `.0` with `.1`.
    Set(String, String),
    /// Add value `.1` to header `.0`, keeping existing values.
    Append(String, String),
    /// Remove every value of header `.0`.
    Remove(String),
}

impl HeaderOp {
    /// The (lowercased) header name this operation touches.
    pub fn name(&self) -> &str {
        match self {
            HeaderOp::Set(n, _) | HeaderOp::Append(n, _) | HeaderOp::Remove(n) => n,
        }
    }

    /// A [`HeaderOp::Set`] with a lowercased name.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        HeaderOp::Set(lower(name), value.into())
    }

    /// A [`HeaderOp::Append`] with a lowercased name.
    pub fn append(name: impl Into<String>, value: impl Into<String>) -> Self {
        HeaderOp::Append(lower(name), value.into())
    }

    /// A [`HeaderOp::Remove`] with a lowercased name.
    pub fn remove(name: impl Into<String>) -> Self {
        HeaderOp::Remove(lower(name))
    }
}

/// Changes a filter's request phase makes before the request goes on. The default (empty)
/// value changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestEdits {
    /// Header changes, applied in order.
    pub headers: Vec<HeaderOp>,
    /// A new path for the backend request (must start with `/`).
    pub path: Option<String>,
    /// A new raw query string without `?`; `Some("")` removes the query.
    pub query: Option<String>,
}

impl RequestEdits {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every value of header `name` with `value`.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(HeaderOp::set(name, value));
        self
    }

    /// Adds a value to header `name`, keeping existing ones.
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(HeaderOp::append(name, value));
        self
    }

    /// Removes every value of header `name`.
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.headers.push(HeaderOp::remove(name));
        self
    }

    /// Adds an arbitrary header operation.
    pub fn header_op(mut self, op: HeaderOp) -> Self {
        self.headers.push(op);
        self
    }

    /// Sends the request to the backend with this path (must start with `/`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Replaces the raw query string (without `?`).
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = Some(query.into());
        self
    }

    /// Removes the query string.
    pub fn remove_query(self) -> Self {
        self.query("")
    }

    /// Whether these edits change nothing.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty() && self.path.is_none() && self.query.is_none()
    }
}

/// A complete response sent to the client instead of proxying the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code (100..=999; routerd answers 500 for anything else).
    pub status: u16,
    /// Response headers, in order.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

impl Reply {
    /// An empty response with this status.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(body.into())
    }

    /// An `application/json` response; `body` must already be JSON text.
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self::new(status)
            .header("content-type", "application/json")
            .body(body.into())
    }

    /// Adds a header (name lowercased).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((lower(name), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// The outcome of a filter's request phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestAction {
    /// Apply these edits and go on to the next filter and then the backend.
    Proceed(RequestEdits),
    /// Stop and send this response. Later filters' request phases and the backend are skipped;
    /// response phases still run.
    Respond(Reply),
}

impl RequestAction {
    /// Go on with the request unchanged.
    pub fn proceed() -> Self {
        RequestAction::Proceed(RequestEdits::new())
    }
}

impl Default for RequestAction {
    fn default() -> Self {
        Self::proceed()
    }
}

impl From<RequestEdits> for RequestAction {
    fn from(edits: RequestEdits) -> Self {
        RequestAction::Proceed(edits)
    }
}

impl From<Reply> for RequestAction {
    fn from(reply: Reply) -> Self {
        RequestAction::Respond(reply)
    }
}

/// Changes a filter's response phase makes before the response goes to the client. The default
/// (empty) value changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseEdits {
    /// A new status code, if any.
    pub status: Option<u16>,
    /// Header changes, applied in order.
    pub headers: Vec<HeaderOp>,
}

impl ResponseEdits {
    /// No changes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the status code.
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Replaces every value of header `name` with `value`.
    pub fn set_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(HeaderOp::set(name, value));
        self
    }

    /// Adds a value to header `name`, keeping existing ones.
    pub fn append_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(HeaderOp::append(name, value));
        self
    }

    /// Removes every value of header `name`.
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.headers.push(HeaderOp::remove(name));
        self
    }

    /// Adds an arbitrary header operation.
    pub fn header_op(mut self, op: HeaderOp) -> Self {
        self.headers.push(op);
        self
    }

    /// Whether these edits change nothing.
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.headers.is_empty()
    }
}

// Conversions into the generated WIT types, used by the export glue.

impl From<HeaderOp> for wit::HeaderOp {
    fn from(op: HeaderOp) -> Self {
        match op {
            HeaderOp::Set(n, v) => wit::HeaderOp::Set((n, v)),
            HeaderOp::Append(n, v) => wit::HeaderOp::Append((n, v)),
            HeaderOp::Remove(n) => wit::HeaderOp::Remove(n),
        }
    }
}

impl From<RequestEdits> for wit::RequestEdits {
    fn from(e: RequestEdits) -> Self {
        wit::RequestEdits {
            headers: e.headers.into_iter().map(Into::into).collect(),
            path: e.path,
            query: e.query,
        }
    }
}

impl From<Reply> for wit::Reply {
    fn from(r: Reply) -> Self {
        wit::Reply {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<RequestAction> for wit::RequestAction {
    fn from(a: RequestAction) -> Self {
        match a {
            RequestAction::Proceed(e) => wit::RequestAction::Proceed(e.into()),
            RequestAction::Respond(r) => wit::RequestAction::Respond(r.into()),
        }
    }
}

impl From<ResponseEdits> for wit::ResponseEdits {
    fn from(e: ResponseEdits) -> Self {
        wit::ResponseEdits {
            status: e.status,
            headers: e.headers.into_iter().map(Into::into).collect(),
        }
    }
}
