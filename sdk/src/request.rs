//! Typed views of the request and response a plugin is called with.

use std::net::{IpAddr, SocketAddr};

use crate::bindings::{request_iface as wreq, response_iface as wresp};
use crate::http;
use crate::testing::{MockRequest, MockResponse};

/// The request being routed.
///
/// Each accessor asks routerd for just what it returns, so reading one header does not copy the
/// others; call an accessor once and keep the value if you need it twice. A `Request` is only
/// valid during the call it is passed to.
///
/// In native tests, build one from a [`MockRequest`].
pub struct Request<'a> {
    src: ReqSrc<'a>,
}

enum ReqSrc<'a> {
    /// The request of the call in progress, read through the `request` import.
    Host,
    Mock(&'a MockRequest),
}

impl<'a> Request<'a> {
    pub(crate) fn from_host() -> Self {
        Self { src: ReqSrc::Host }
    }

    pub(crate) fn from_mock(req: &'a MockRequest) -> Self {
        Self {
            src: ReqSrc::Mock(req),
        }
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> String {
        match &self.src {
            ReqSrc::Host => wreq::method(),
            ReqSrc::Mock(m) => m.method.clone(),
        }
    }

    /// `http` or `https`: the scheme the client used to reach routerd.
    pub fn scheme(&self) -> String {
        match &self.src {
            ReqSrc::Host => wreq::scheme(),
            ReqSrc::Mock(m) => m.scheme.clone(),
        }
    }

    /// The host the client asked for, without the port; empty when there is none.
    pub fn host(&self) -> String {
        match &self.src {
            ReqSrc::Host => wreq::host(),
            ReqSrc::Mock(m) => m.host.clone(),
        }
    }

    /// The path as received, percent-encoding kept, e.g. `/users/42`.
    pub fn path(&self) -> String {
        match &self.src {
            ReqSrc::Host => wreq::path(),
            ReqSrc::Mock(m) => m.path.clone(),
        }
    }

    /// The raw query string without `?`; empty when there is none.
    pub fn query(&self) -> String {
        match &self.src {
            ReqSrc::Host => wreq::query(),
            ReqSrc::Mock(m) => m.query.clone(),
        }
    }

    /// The decoded value of the first query parameter `key` (see [`http::query_param`]).
    pub fn query_param(&self, key: &str) -> Option<String> {
        http::query_param(&self.query(), key)
    }

    /// All query parameters, decoded, in order (see [`http::parse_query`]).
    pub fn query_params(&self) -> Vec<(String, String)> {
        http::parse_query(&self.query())
    }

    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        match &self.src {
            ReqSrc::Host => wreq::header(name),
            ReqSrc::Mock(m) => m.header_values(name).next().map(str::to_owned),
        }
    }

    /// Whether header `name` is present.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        match &self.src {
            ReqSrc::Host => wreq::header_values(name),
            ReqSrc::Mock(m) => m.header_values(name).map(str::to_owned).collect(),
        }
    }

    /// All headers in the order received, names in lowercase. Prefer [`header`](Self::header)
    /// for one: this copies them all.
    pub fn headers(&self) -> Vec<(String, String)> {
        match &self.src {
            ReqSrc::Host => wreq::headers(),
            ReqSrc::Mock(m) => m.headers.clone(),
        }
    }

    /// The value of cookie `name` from the `Cookie` header(s), if present.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.header_values("cookie")
            .iter()
            .find_map(|h| http::cookie_value(h, name).map(str::to_owned))
    }

    /// All cookies from the `Cookie` header(s), in order.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.header_values("cookie")
            .iter()
            .flat_map(|h| {
                http::parse_cookies(h)
                    .into_iter()
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The token of an `Authorization: Bearer <token>` header, if there is one.
    pub fn bearer_token(&self) -> Option<String> {
        self.header("authorization")
            .and_then(|v| http::bearer_token(&v).map(str::to_owned))
    }

    /// The client's address as `ip:port`.
    pub fn remote_addr(&self) -> String {
        match &self.src {
            ReqSrc::Host => wreq::remote_addr(),
            ReqSrc::Mock(m) => m.remote_addr.clone(),
        }
    }

    /// The client's IP address, parsed from [`remote_addr`](Self::remote_addr).
    pub fn remote_ip(&self) -> Option<IpAddr> {
        let addr = self.remote_addr();
        addr.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| addr.parse::<IpAddr>())
            .ok()
    }

    /// The path parameter `name` captured by the route's pattern (route `/users/{id}`, request
    /// `/users/42`: `param("id")` is `42`).
    pub fn param(&self, name: &str) -> Option<String> {
        match &self.src {
            ReqSrc::Host => wreq::param(name),
            ReqSrc::Mock(m) => m
                .params
                .iter()
                .find_map(|(k, v)| (k == name).then(|| v.clone())),
        }
    }

    /// All path parameters as `(name, value)`.
    pub fn params(&self) -> Vec<(String, String)> {
        match &self.src {
            ReqSrc::Host => wreq::params(),
            ReqSrc::Mock(m) => m.params.clone(),
        }
    }
}

/// The response head a filter's response phase sees. Like [`Request`], each accessor copies only
/// what it returns, and the value is only valid during the call.
pub struct Response<'a> {
    src: RespSrc<'a>,
}

enum RespSrc<'a> {
    /// The response of the call in progress, read through the `response` import.
    Host,
    Mock(&'a MockResponse),
}

impl<'a> Response<'a> {
    pub(crate) fn from_host() -> Self {
        Self { src: RespSrc::Host }
    }

    pub(crate) fn from_mock(resp: &'a MockResponse) -> Self {
        Self {
            src: RespSrc::Mock(resp),
        }
    }

    /// The status code from the backend (or from an earlier filter).
    pub fn status(&self) -> u16 {
        match &self.src {
            RespSrc::Host => wresp::status(),
            RespSrc::Mock(m) => m.status,
        }
    }

    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        match &self.src {
            RespSrc::Host => wresp::header(name),
            RespSrc::Mock(m) => m
                .headers
                .iter()
                .find_map(|(k, v)| k.eq_ignore_ascii_case(name).then(|| v.clone())),
        }
    }

    /// All headers in order, names in lowercase.
    pub fn headers(&self) -> Vec<(String, String)> {
        match &self.src {
            RespSrc::Host => wresp::headers(),
            RespSrc::Mock(m) => m.headers.clone(),
        }
    }
}
