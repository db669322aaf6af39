//! Built-in matchers other than the path (which the index handles): host, method, header, query
//! parameter, cookie, client address, and the body matchers. Each is compiled once from its spec
//! and then only reads the request: no allocation, except the body matchers' one JSON parse.

use std::net::IpAddr;

use http::Method;
use http::header::{COOKIE, HeaderName};
use ipnet::IpNet;
use regex::Regex;

use super::pattern::PathPattern;
use super::request::RequestView;

/// Where a route's path matcher sends it in the index.
#[derive(Debug)]
pub enum PathMatch {
    /// A radix pattern.
    Pattern(PathPattern),
    /// A whole-segment prefix (literal segments).
    Prefix(Vec<Box<str>>),
    /// A regex on the path; not indexed.
    Regex(Regex),
    /// No path matcher; not indexed.
    Any,
}

impl PathMatch {
    /// The segments it takes in the path index (an upper bound on the nodes it adds).
    pub fn segment_count(&self) -> usize {
        match self {
            PathMatch::Pattern(p) => p.segments.len(),
            PathMatch::Prefix(segments) => segments.len(),
            PathMatch::Regex(_) | PathMatch::Any => 0,
        }
    }
}

/// An exact value or an unanchored regex.
#[derive(Debug)]
pub enum ValueMatch {
    /// Equal to this text.
    Exact(Box<str>),
    /// The regex finds a match somewhere in the value.
    Regex(Regex),
}

impl ValueMatch {
    fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => **v == *value,
            ValueMatch::Regex(re) => re.is_match(value),
        }
    }

    fn matches_bytes(&self, value: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(v) => v.as_bytes() == value,
            ValueMatch::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// How a `host` matcher compares.
#[derive(Debug)]
pub enum HostMatch {
    /// Equal, ignoring ASCII case.
    Exact(Box<str>),
    /// `*.example.com`: one or more labels, then this suffix (stored as `.example.com`).
    Wildcard(Box<str>),
    /// Regex on the host (without port).
    Regex(Regex),
}

/// A compiled built-in matcher.
#[derive(Debug)]
pub enum Matcher {
    /// The request's host.
    Host(HostMatch),
    /// A header's value (any of its values).
    Header(HeaderName, ValueMatch),
    /// A query parameter's decoded value (any occurrence).
    QueryParam(Box<str>, ValueMatch),
    /// A cookie's value.
    Cookie(Box<str>, ValueMatch),
    /// The client address is in one of these networks.
    RemoteAddr(Vec<IpNet>),
    /// A value in a JSON body at a dotted path.
    BodyField(Vec<Box<str>>, ValueMatch),
    /// A regex on the raw body.
    BodyRegex(regex::bytes::Regex),
}

impl Matcher {
    /// Whether this matcher needs the request body.
    pub fn needs_body(&self) -> bool {
        matches!(self, Matcher::BodyField(..) | Matcher::BodyRegex(_))
    }

    /// Evaluates the matcher. Body matchers answer `false` when the body has not been read.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        match self {
            Matcher::Host(h) => req.host.is_some_and(|host| h.matches(host)),
            Matcher::Header(name, v) => req
                .headers
                .get_all(name)
                .iter()
                .any(|value| v.matches_bytes(value.as_bytes())),
            Matcher::QueryParam(key, v) => req.query.is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes()).any(|(k, val)| *k == **key && v.matches(&val))
            }),
            Matcher::Cookie(name, v) => req
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|h| h.to_str().ok())
                .flat_map(|h| h.split(';'))
                .filter_map(|pair| pair.split_once('='))
                .any(|(k, val)| k.trim() == &**name && v.matches(val.trim())),
            Matcher::RemoteAddr(nets) => {
                let ip = canonical(req.remote);
                nets.iter().any(|n| n.contains(&ip))
            }
            Matcher::BodyField(path, v) => req.body.is_some_and(|b| {
                !b.too_large
                    && b.json()
                        .and_then(|j| lookup(j, path))
                        .is_some_and(|found| match found {
                            serde_json::Value::String(s) => v.matches(s),
                            serde_json::Value::Null
                            | serde_json::Value::Array(_)
                            | serde_json::Value::Object(_) => v.matches(&found.to_string()),
                            other => v.matches(&other.to_string()),
                        })
            }),
            Matcher::BodyRegex(re) => req
                .body
                .is_some_and(|b| !b.too_large && re.is_match(&b.bytes)),
        }
    }
}

impl HostMatch {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                // at least one label before the suffix
                let cut = host.len().saturating_sub(suffix.len());
                cut > 0 && host.is_char_boundary(cut) && host[cut..].eq_ignore_ascii_case(suffix)
            }
            HostMatch::Regex(re) => re.is_match(host),
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack sockets) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn lookup<'v>(
    mut value: &'v serde_json::Value,
    path: &[Box<str>],
) -> Option<&'v serde_json::Value> {
    for key in path {
        value = match value {
            serde_json::Value::Object(map) => map.get(&**key)?,
            serde_json::Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A set of methods (`GET|POST`).
#[derive(Debug, Clone)]
pub struct MethodSet(pub Vec<Method>);

impl MethodSet {
    /// Whether `m` is in the set.
    pub fn contains(&self, m: &Method) -> bool {
        self.0.iter().any(|x| x == m)
    }
}
