//! The view of a request that matchers read: borrowed pieces of the request head, plus the body
//! once (and only if) a body matcher asked for it.

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, Method};

/// A request body read for body matchers.
#[derive(Debug)]
pub struct BufferedBody {
    /// The bytes read (the whole body unless `too_large`).
    pub bytes: Bytes,
    /// The body is longer than the table's limit; body matchers do not match.
    pub too_large: bool,
    json: OnceLock<Option<serde_json::Value>>,
}

impl BufferedBody {
    /// Wraps bytes read from a request.
    pub fn new(bytes: Bytes, too_large: bool) -> Self {
        BufferedBody {
            bytes,
            too_large,
            json: OnceLock::new(),
        }
    }

    /// The body parsed as JSON, once per request however many matchers ask.
    pub fn json(&self) -> Option<&serde_json::Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(&self.bytes).ok())
            .as_ref()
    }
}

/// What the matchers see of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path as received (percent-encoding kept).
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
    /// The host without port (from the URI authority or the `Host` header).
    pub host: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The client's address.
    pub remote: IpAddr,
    /// The body, when it has been read.
    pub body: Option<&'a BufferedBody>,
    /// The shared request head for plugin predicates (without it, plugin predicates fail).
    pub shared: Option<&'a SharedHead>,
}

/// The request head shared with plugin calls without copying.
#[derive(Debug, Clone)]
pub struct SharedHead {
    /// The head.
    pub parts: std::sync::Arc<http::request::Parts>,
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// `http` or `https`: how the client reached us.
    pub scheme: &'static str,
}

impl SharedHead {
    /// What the matchers see of this request, with `body` if it has been read.
    pub fn view<'a>(&'a self, body: Option<&'a BufferedBody>) -> RequestView<'a> {
        let p = &self.parts;
        RequestView {
            method: &p.method,
            path: p.uri.path(),
            query: p.uri.query(),
            host: request_host(&p.uri, &p.headers),
            headers: &p.headers,
            remote: self.remote.ip(),
            body,
            shared: Some(self),
        }
    }
}

/// The host a request is for, without the port: the URI's authority (HTTP/2, absolute-form) or
/// the `Host` header.
pub fn request_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    if let Some(host) = uri.host() {
        return Some(host);
    }
    let value = headers.get(http::header::HOST)?.to_str().ok()?;
    Some(strip_port(value))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_loses_its_port() {
        let mut h = HeaderMap::new();
        let uri: http::Uri = "/x".parse().unwrap_or_default();
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_static("Example.com:8080"),
        );
        assert_eq!(request_host(&uri, &h), Some("Example.com"));
        h.insert(
            http::header::HOST,
            http::HeaderValue::from_static("[::1]:80"),
        );
        assert_eq!(request_host(&uri, &h), Some("::1"));
    }
}
