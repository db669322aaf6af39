//! The upstream side of a proxied request: the pooled hyper client, building the backend URI
//! (strip_prefix, base path, raw query), and the header hygiene of a proxy (hop-by-hop headers
//! out, `X-Forwarded-*` in).

use std::net::IpAddr;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::body::RequestBody;
use routerd_routing::Target;

/// The pooled HTTP/1.1 client used for every backend.
pub type UpstreamClient = Client<HttpConnector, RequestBody>;

/// How routerd treats backends: how long it waits, and how big a response head it takes.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamOptions {
    /// For the TCP connection.
    pub connect: Duration,
    /// For the response head, connecting included (a route's `timeout_ms` overrides it).
    pub response: Duration,
    /// Header fields in a backend's response head; a larger head is answered 502 `backend
    /// response head too large`.
    pub max_response_headers: usize,
    /// How long an upgraded connection (WebSocket, ...) may carry no byte either way.
    pub upgrade_idle: Duration,
}

/// The default for both request and response header fields: far above what real services
/// send (hyper's own default, 100, is not), and a bound on what one head may cost.
pub const DEFAULT_MAX_HEADERS: usize = 500;

impl Default for UpstreamOptions {
    /// Envoy's connect timeout, nginx's `proxy_read_timeout`.
    fn default() -> Self {
        UpstreamOptions {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(60),
            max_response_headers: DEFAULT_MAX_HEADERS,
            upgrade_idle: Duration::from_secs(300),
        }
    }
}

/// Builds the shared client.
pub fn client(options: &UpstreamOptions) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(options.connect));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .http1_max_headers(options.max_response_headers.max(1))
        .build(connector)
}

/// Whether a failed backend request failed because the response head was over the limits.
pub fn head_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse_too_large)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The path sent to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamPath<'a> {
    /// The request path (after `strip_prefix`), joined to the target's base path.
    Joined(std::borrow::Cow<'a, str>),
    /// A path set by a filter, sent as is.
    Replaced(String),
}

impl UpstreamPath<'_> {
    /// The path without the base.
    pub fn as_str(&self) -> &str {
        match self {
            UpstreamPath::Joined(p) => p,
            UpstreamPath::Replaced(p) => p,
        }
    }
}

/// Removes `prefix` from `path` when the path starts with it; the result starts with `/`.
pub fn strip_prefix<'a>(path: &'a str, prefix: Option<&str>) -> std::borrow::Cow<'a, str> {
    let Some(prefix) = prefix else {
        return path.into();
    };
    // Only whole segments: `/api` is stripped from `/api/x` and `/api`, not from `/apix`.
    match path.strip_prefix(prefix) {
        Some("") => "/".into(),
        Some(rest) if rest.starts_with('/') => rest.into(),
        Some(rest) if prefix.ends_with('/') => format!("/{rest}").into(),
        _ => path.into(),
    }
}

/// The backend URI for `path` and the raw query. A [`UpstreamPath::Joined`] path is appended to
/// the target's base path; a [`UpstreamPath::Replaced`] one (from `set_path`) is used as is.
/// `origin_form` gives only the path and query (all the plain HTTP/1.1 pool writes), otherwise
/// the URI is absolute. When the result is the client's own path and query, `client`'s bytes are
/// shared instead of copied and parsed again.
pub fn upstream_uri(
    target: &Target,
    path: &UpstreamPath<'_>,
    query: Option<&str>,
    client: &http::Uri,
    origin_form: bool,
) -> Result<http::Uri, http::Error> {
    let unchanged = match path {
        UpstreamPath::Joined(p) => target.base_path.is_empty() && p == client.path(),
        UpstreamPath::Replaced(_) => false,
    } && query == client.query();
    let pq = match client.path_and_query() {
        Some(pq) if unchanged => pq.clone(),
        _ => http::uri::PathAndQuery::try_from(joined(target, path, query))?,
    };
    if origin_form {
        return Ok(http::Uri::from(pq));
    }
    http::Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone())
        .path_and_query(pq)
        .build()
}

fn joined(target: &Target, path: &UpstreamPath<'_>, query: Option<&str>) -> String {
    let (base, path) = match path {
        UpstreamPath::Joined(p) => (&*target.base_path, &**p),
        UpstreamPath::Replaced(p) => ("", p.as_str()),
    };
    let mut pq = String::with_capacity(base.len() + path.len() + query.map_or(0, |q| q.len() + 1));
    pq.push_str(base);
    if path == "/" && !base.is_empty() {
        // `http://b/base` + `/` is `/base`, not `/base/`.
    } else {
        pq.push_str(path);
    }
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    pq
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Drops hop-by-hop headers, including those named in `Connection`.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present (most heads carry none, or only
    // `Connection`); only those are looked up again to be removed.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == PROXY_CONNECTION {
            present |= 1 << HOP_BY_HOP.len();
        }
    }
    if present == 0 {
        return;
    }
    // `HOP_BY_HOP[0]` is `Connection`: the headers it names go too.
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The usual tokens (`keep-alive`, `close`) name nothing beyond the fixed list.
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !HOP_BY_HOP.contains(n))
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if present & (1 << HOP_BY_HOP.len()) != 0 {
        headers.remove(PROXY_CONNECTION);
    }
}

const PROXY_CONNECTION: &str = "proxy-connection";

// Built at compile time: `from_static` checks its bytes on every call otherwise.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

/// Writes `ip` as text into `buf`, returning its length. IPv4, the usual case, is written
/// digit by digit: going through `Display` costs as much as the rest of this module's work
/// on a request.
fn write_ip(buf: &mut [u8; 64], ip: IpAddr) -> Option<usize> {
    let IpAddr::V4(v4) = ip else {
        let mut rest = &mut buf[..];
        std::io::Write::write_fmt(&mut rest, format_args!("{ip}")).ok()?;
        return Some(64 - rest.len());
    };
    let mut at = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[at] = b'.';
            at += 1;
        }
        if octet >= 100 {
            buf[at] = b'0' + octet / 100;
            at += 1;
        }
        if octet >= 10 {
            buf[at] = b'0' + octet / 10 % 10;
            at += 1;
        }
        buf[at] = b'0' + octet % 10;
        at += 1;
    }
    Some(at)
}

/// Adds `X-Forwarded-For` (appending), `-Proto` and `-Host` (the client's Host, port included).
/// `proto` is the client's scheme, `http` or `https`.
pub fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    // The address is written on the stack; the header value is the only allocation.
    // (An IPv6 address takes at most 45 bytes.)
    let mut buf = [0u8; 64];
    if let Some(written) = write_ip(&mut buf, client) {
        let ip = &buf[..written];
        let value = match headers.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
            Some(prev) if !prev.is_empty() => HeaderValue::from_bytes(&[prev, b", ", ip].concat()),
            _ => HeaderValue::from_bytes(ip),
        };
        if let Ok(v) = value {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    let proto = if proto == "https" { HTTPS } else { HTTP };
    headers.insert(X_FORWARDED_PROTO, proto);
    if let Some(v) = host {
        headers.insert(X_FORWARDED_HOST, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap_or_else(|e| panic!("{e}"))
    }

    fn uri(
        t: &Target,
        path: &str,
        query: Option<&str>,
        client: &str,
        origin_form: bool,
    ) -> Option<String> {
        let client: http::Uri = client.parse().unwrap_or_else(|e| panic!("{e}"));
        upstream_uri(
            t,
            &UpstreamPath::Joined(path.to_owned().into()),
            query,
            &client,
            origin_form,
        )
        .map(|u| u.to_string())
        .ok()
    }

    #[test]
    fn joins_base_path_and_keeps_query_bytes() {
        let t = target("http://b:1/base/");
        let q = "a=1&a=2&b=%20+x";
        assert_eq!(
            uri(&t, "/x", Some(q), "/x?a=1&a=2&b=%20+x", false).as_deref(),
            Some("http://b:1/base/x?a=1&a=2&b=%20+x")
        );
        assert_eq!(
            uri(&t, "/x", Some(q), "/x?a=1&a=2&b=%20+x", true).as_deref(),
            Some("/base/x?a=1&a=2&b=%20+x")
        );
        assert_eq!(
            uri(&t, "/", None, "/", false).as_deref(),
            Some("http://b:1/base")
        );
        let root = target("http://b:1");
        assert_eq!(
            uri(&root, "/", None, "/", false).as_deref(),
            Some("http://b:1/")
        );
    }

    #[test]
    fn the_clients_own_path_and_query_are_shared_when_unchanged() {
        let root = target("http://b:1");
        let client: http::Uri = "/a/b?x=%41&y".parse().unwrap_or_else(|e| panic!("{e}"));
        let path = UpstreamPath::Joined(client.path().into());
        let same = upstream_uri(&root, &path, client.query(), &client, true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same, "/a/b?x=%41&y");
        let shared = same.path_and_query().map(|pq| pq.as_str().as_ptr());
        let original = client.path_and_query().map(|pq| pq.as_str().as_ptr());
        assert_eq!(shared, original, "the bytes are the client's, not a copy");
        // A stripped prefix, a new query or a base path each make a new one.
        let stripped = UpstreamPath::Joined("/b".into());
        let other = upstream_uri(&root, &stripped, client.query(), &client, true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other, "/b?x=%41&y");
        let requery = upstream_uri(&root, &path, Some("z=1"), &client, false)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(requery, "http://b:1/a/b?z=1");
        let based = upstream_uri(&target("http://b:1/v1"), &path, None, &client, true)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(based, "/v1/a/b");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut buf = [0u8; 64];
        let ips: [IpAddr; 7] = [
            [127, 0, 0, 1].into(),
            [0, 0, 0, 0].into(),
            [255, 255, 255, 255].into(),
            [10, 100, 9, 250].into(),
            [1, 20, 199, 200].into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
            "2001:db8::ffff:1.2.3.4"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        ];
        for ip in ips {
            let n = write_ip(&mut buf, ip).unwrap_or_else(|| panic!("{ip} not written"));
            assert_eq!(std::str::from_utf8(&buf[..n]), Ok(ip.to_string().as_str()));
        }
    }

    #[test]
    fn forwarded_headers_append_to_a_chain_and_name_scheme_and_host() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        let host = HeaderValue::from_static("example.test:8080");
        add_forwarded(&mut h, [192, 168, 1, 20].into(), "https", Some(host));
        assert_eq!(h[X_FORWARDED_FOR], "203.0.113.7, 192.168.1.20");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "example.test:8080");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, std::net::Ipv6Addr::LOCALHOST.into(), "http", None);
        assert_eq!(h[X_FORWARDED_FOR], "::1");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        assert!(!h.contains_key(X_FORWARDED_HOST));
    }

    #[test]
    fn strips_prefixes() {
        assert_eq!(strip_prefix("/api/x", Some("/api")), "/x");
        assert_eq!(strip_prefix("/api", Some("/api")), "/");
        assert_eq!(strip_prefix("/api/x", Some("/api/")), "/x");
        assert_eq!(strip_prefix("/other", Some("/api")), "/other");
        assert_eq!(strip_prefix("/apix", Some("/api")), "/apix");
    }

    #[test]
    fn drops_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn drops_every_hop_by_hop_header_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        for name in &HOP_BY_HOP {
            h.append(name, HeaderValue::from_static("x"));
        }
        h.append(PROXY_CONNECTION, HeaderValue::from_static("x"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("x-a, Keep-Alive"),
        );
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        h.insert(header::HOST, HeaderValue::from_static("b"));
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "host"]);
        // Nothing hop-by-hop: nothing changes.
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}
