//! The admin API (`/api/v1`): routes (create, read, update with rename, delete, apply, with
//! optimistic concurrency), plugins (upload, list, unload), the explain tool (`match`), backend
//! health, the live view and Prometheus metrics, and the dashboard (`/ui/`) that shows them.
//! Changes need the bearer token when one is configured; so does every read from a client off
//! loopback (but `/healthz` and the dashboard's files, which hold no data).

mod error;
mod plugins;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

pub use error::ApiError;
use routerd_base::Peer;
use routerd_base::{ResponseBody, full};
use routerd_control::health::HealthChecks;
use routerd_control::live::{LiveQuery, LiveView};
use routerd_control::routeset::{RouteSet, RouteView, Source};
use routerd_proxy::metrics::Metrics;
use routerd_proxy::server::Handler;
use routerd_routing::config::{ConfigFile, RouteRule};
use routerd_routing::{BufferedBody, SharedHead};

/// The largest route document accepted.
const MAX_JSON_BODY: usize = 4 << 20;
/// The largest plugin accepted.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// The admin API.
pub struct Admin {
    routes: Arc<RouteSet>,
    metrics: Arc<Metrics>,
    health: Arc<HealthChecks>,
    live: Arc<LiveView>,
    token: Option<String>,
}

type Reply = Result<Response<ResponseBody>, ApiError>;

fn json(status: StatusCode, doc: &impl serde::Serialize) -> Response<ResponseBody> {
    let body = serde_json::to_vec(doc).unwrap_or_default();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<ResponseBody> {
    let mut doc = serde_json::json!({"error": e.code, "message": e.message});
    if !e.errors.is_empty() {
        doc["errors"] = e
            .errors
            .iter()
            .map(|r| {
                serde_json::json!({
                    "route": r.route, "field": r.field, "code": r.code.as_str(), "reason": r.reason,
                })
            })
            .collect();
    }
    json(e.status, &doc)
}

fn bad_body(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message.to_string())
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )),
        Err(e) => Err(bad_body(format!("cannot read the body: {e}"))),
    }
}

/// A route from a request body; the fields the API adds (`version`, `source`, `status`,
/// `reason`) are ignored.
pub fn parse_rule(bytes: &[u8]) -> Result<RouteRule, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(bad_body)?;
    if let Some(obj) = value.as_object_mut() {
        for key in ["version", "source", "status", "reason"] {
            obj.remove(key);
        }
    }
    serde_json::from_value(value).map_err(bad_body)
}

fn if_match(req_headers: &http::HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = req_headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .unwrap_or("")
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"');
    if text == "*" {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| bad_body(format!("If-Match {text:?} is not a route version")))
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Runs a blocking admin operation (database commits, plugin compilation) off the workers.
async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(Into::into)
}

impl Admin {
    /// The admin API over a live route set.
    pub fn new(
        routes: Arc<RouteSet>,
        metrics: Arc<Metrics>,
        health: Arc<HealthChecks>,
        live: Arc<LiveView>,
        token: Option<String>,
    ) -> Self {
        Admin {
            routes,
            metrics,
            health,
            live,
            token,
        }
    }

    fn authorized(&self, headers: &http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Constant time, and on digests, so neither the first differing byte nor the token's
        // length shows in the timing.
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        Sha256::digest(given.as_bytes())
            .ct_eq(&Sha256::digest(token.as_bytes()))
            .into()
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>, peer: Peer) -> Reply {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        if (parts.method == Method::GET || parts.method == Method::HEAD)
            && let Some(rest) = path.strip_prefix("/ui")
        {
            return ui_file(rest, &parts.headers);
        }
        browser_guard(&parts, peer.addr.ip())?;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let method = parts.method.clone();
        if let Some(why) = token_needed(&method, &path, peer.addr.ip())
            && !self.authorized(&parts.headers)
        {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why));
        }
        let query = parts.uri.query();
        match (&method, segments.as_slice()) {
            (&Method::GET, ["healthz"]) => {
                Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"})))
            }
            (&Method::GET, ["metrics"]) => {
                let mut resp = Response::new(full(self.metrics.render()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(resp)
            }
            (&Method::GET, ["api", "v1", "routes"]) => self.list_routes(query, &parts.headers),
            (&Method::POST, ["api", "v1", "routes"]) => {
                let rule = parse_rule(&read_body(body, MAX_JSON_BODY).await?)?;
                let routes = self.routes.clone();
                let view = blocking(move || routes.create(rule)).await?;
                Ok(json(StatusCode::CREATED, &view))
            }
            (&Method::POST, ["api", "v1", "routes", "apply"]) => {
                let doc = parse_apply(&read_body(body, MAX_JSON_BODY).await?)?;
                let routes = self.routes.clone();
                let summary = blocking(move || routes.apply(doc)).await?;
                Ok(json(StatusCode::OK, &summary))
            }
            (&Method::GET, ["api", "v1", "routes", name]) => {
                let source = match query_param(query, "source").as_deref() {
                    None => None,
                    Some("api") => Some(Source::Api),
                    Some("file") => Some(Source::File),
                    Some(other) => {
                        return Err(bad_body(format!(
                            "source={other} is neither \"api\" nor \"file\""
                        )));
                    }
                };
                Ok(json(StatusCode::OK, &self.routes.get(name, source)?))
            }
            (&Method::PUT, ["api", "v1", "routes", name]) => {
                let version = if_match(&parts.headers)?;
                let rule = parse_rule(&read_body(body, MAX_JSON_BODY).await?)?;
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                let view = blocking(move || routes.update(&name, rule, version)).await?;
                Ok(json(StatusCode::OK, &view))
            }
            (&Method::DELETE, ["api", "v1", "routes", name]) => {
                let version = if_match(&parts.headers)?;
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                blocking(move || routes.delete(&name, version)).await?;
                Ok(no_content())
            }
            (&Method::GET, ["api", "v1", "plugins"]) => {
                Ok(json(StatusCode::OK, &plugins::list(&self.routes)))
            }
            (&Method::POST, ["api", "v1", "plugins"]) => {
                let name = query_param(query, "name")
                    .map(|n| n.into_owned())
                    .unwrap_or_default();
                let bytes = read_body(body, MAX_PLUGIN_BYTES).await?;
                let routes = self.routes.clone();
                let doc = blocking(move || plugins::upload(&routes, &name, &bytes)).await?;
                Ok(json(StatusCode::CREATED, &doc))
            }
            (&Method::GET, ["api", "v1", "plugins", name]) => {
                Ok(json(StatusCode::OK, &plugins::get(&self.routes, name)?))
            }
            (&Method::DELETE, ["api", "v1", "plugins", name]) => {
                let force = query_param(query, "force").is_some_and(|v| v == "true" || v == "1");
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                blocking(move || plugins::unload(&routes, &name, force)).await?;
                Ok(no_content())
            }
            (&Method::POST, ["api", "v1", "match"]) => {
                let (head, body) = parse_match(&read_body(body, MAX_JSON_BODY).await?)?;
                let table = self.routes.table();
                let explanation = table.explain(&head.view(body.as_ref())).await;
                Ok(json(StatusCode::OK, &explanation))
            }
            (&Method::GET, ["api", "v1", "cluster"]) => {
                let routes = self.routes.clone();
                let doc = blocking(move || cluster(&routes)).await?;
                Ok(json(StatusCode::OK, &doc))
            }
            (&Method::GET, ["api", "v1", "live"]) => {
                Ok(json(StatusCode::OK, &self.live.doc(&live_query(query)?)))
            }
            (&Method::GET, ["api", "v1", "health"]) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({"routes": self.health.snapshot()}),
            )),
            (
                _,
                ["healthz" | "metrics"]
                | [
                    "api",
                    "v1",
                    "routes" | "plugins" | "match" | "health" | "cluster" | "live",
                    ..,
                ],
            ) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not supported on {path}"),
            )),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no admin endpoint {path}"),
            )),
        }
    }

    fn list_routes(&self, query: Option<&str>, headers: &http::HeaderMap) -> Reply {
        let number = |key: &str, default: usize| -> Result<usize, ApiError> {
            match query_param(query, key) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| bad_body(format!("{key}={v} is not a number"))),
            }
        };
        let offset = number("offset", 0)?;
        let limit = number("limit", 50)?;
        if !(1..=1000).contains(&limit) {
            return Err(bad_body(format!("limit={limit} is outside 1..=1000")));
        }
        // `name=NAME`: the routes of one name (the file's, and an API route it excludes).
        let name = query_param(query, "name");
        Ok(self.routes.with_listing(|all, version| {
            // The listing changes only with the table, so its generation (in this process)
            // and the question name the answer: a client polling an unchanged table gets 304.
            let etag = listing_etag(version, query);
            if let Some(etag) = &etag
                && unchanged(headers, etag)
            {
                let mut resp = empty(StatusCode::NOT_MODIFIED);
                resp.headers_mut().insert(header::ETAG, etag.clone());
                return resp;
            }
            let matching: Vec<&RouteView> = all
                .iter()
                .filter(|r| name.as_ref().is_none_or(|n| r.rule.name == *n))
                .collect();
            let total = matching.len();
            let page: Vec<&RouteView> = matching.into_iter().skip(offset).take(limit).collect();
            let mut resp = json(
                StatusCode::OK,
                &serde_json::json!({"routes": page, "total": total, "offset": offset, "limit": limit}),
            );
            if let Some(etag) = etag {
                resp.headers_mut().insert(header::ETAG, etag);
            }
            resp
        }))
    }
}

/// The ETag of a route listing: this process (generations restart with it), the table
/// generation, and the query.
fn listing_etag(version: u64, query: Option<&str>) -> Option<HeaderValue> {
    use std::hash::{Hash, Hasher};
    static PROCESS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let process = *PROCESS.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (started, std::process::id()).hash(&mut h);
        h.finish()
    });
    let mut h = std::collections::hash_map::DefaultHasher::new();
    query.unwrap_or("").hash(&mut h);
    let tag = format!("\"{process:016x}-{version}-{:016x}\"", h.finish());
    HeaderValue::from_str(&tag).ok()
}

/// The query of `GET /api/v1/live`: `route=NAME` (repeatable), `contains=TEXT`, `top=N`,
/// `summary=true`.
fn live_query(query: Option<&str>) -> Result<LiveQuery, ApiError> {
    let mut q = LiveQuery::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "route" => q.routes.push(value.into_owned()),
            "contains" => q.contains = Some(value.into_owned()),
            "top" => {
                q.top = Some(
                    value
                        .parse()
                        .map_err(|_| bad_body(format!("top={value} is not a number of routes")))?,
                )
            }
            "summary" => q.summary = value == "true" || value == "1",
            other => {
                return Err(bad_body(format!(
                    "unknown parameter {other:?} (route, contains, top, summary)"
                )));
            }
        }
    }
    Ok(q)
}

/// `GET /api/v1/cluster`: the instances sharing the store, each with what it serves; a store
/// of this instance's own lists only this instance.
fn cluster(routes: &RouteSet) -> Result<serde_json::Value, ApiError> {
    let this = || {
        serde_json::json!({
            "id": "local",
            "table_version": routes.table_version(),
            "revision": routes.revision(),
        })
    };
    let Some(store) = routes.store() else {
        return Ok(serde_json::json!({"store": "none", "instances": [this()]}));
    };
    let instances = match store.instances() {
        Some(found) => found.map_err(routerd_control::routeset::store_error)?,
        None => vec![this()],
    };
    Ok(serde_json::json!({"store": store.describe(), "instances": instances}))
}

/// Why a request needs the token, when it does: every change (but `match`, which only
/// reads), and every read from a client off loopback but `/healthz`, which load balancers
/// probe.
fn token_needed(method: &Method, path: &str, peer: std::net::IpAddr) -> Option<&'static str> {
    let change =
        matches!(*method, Method::POST | Method::PUT | Method::DELETE) && path != "/api/v1/match";
    if change {
        Some("this change needs Authorization: Bearer <admin token>")
    } else if !peer.is_loopback() && path != "/healthz" {
        Some("reading from off loopback needs Authorization: Bearer <admin token>")
    } else {
        None
    }
}

/// Refuses what only another web site, acting through a browser, would send: a change from a
/// page of another origin (browsers send `Origin` with every cross-origin `POST`, `PUT` and
/// `DELETE`; API clients such as routerctl and curl send none), and, from loopback, a `Host`
/// that is a name other than `localhost` (DNS rebinding: a site whose name now resolves to
/// 127.0.0.1 must not read or change routerd from the user's own browser).
fn browser_guard(parts: &http::request::Parts, peer: std::net::IpAddr) -> Result<(), ApiError> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    if peer.is_loopback()
        && let Some(host) = host
        && !loopback_host(host)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "Host {host:?} is a name other than localhost; on loopback the admin listener answers only http://127.0.0.1:PORT, http://[::1]:PORT or http://localhost:PORT"
            ),
        ));
    }
    let change = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if change && let Some(origin) = parts.headers.get(header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        let same = matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h));
        if !same {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!(
                    "a page of another origin ({}) cannot change routerd",
                    origin.to_str().unwrap_or("?")
                ),
            ));
        }
    }
    Ok(())
}

/// An IP literal or `localhost` (with or without a port).
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
}

/// `/ui` redirects to `/ui/`, the page; `/ui/<file>` is one of its files.
fn ui_file(rest: &str, headers: &http::HeaderMap) -> Reply {
    if rest.is_empty() {
        let mut resp = empty(StatusCode::PERMANENT_REDIRECT);
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
        return Ok(resp);
    }
    rest.strip_prefix('/')
        .and_then(|file| ui::serve(file, headers))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("the dashboard has no file /ui{rest}"),
            )
        })
}

fn no_content() -> Response<ResponseBody> {
    empty(StatusCode::NO_CONTENT)
}

/// A response of `status` without a body.
fn empty(status: StatusCode) -> Response<ResponseBody> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// Whether the client already holds the answer tagged `etag` (`If-None-Match`).
fn unchanged(request: &http::HeaderMap, etag: &HeaderValue) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
}

/// A request to explain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchRequest {
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    remote_addr: Option<String>,
    /// `http` (the default) or `https`: which listener the request came in on.
    #[serde(default)]
    scheme: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

/// The body of `POST /api/v1/routes/apply`: a route document without the file-only fields.
pub fn parse_apply(bytes: &[u8]) -> Result<ConfigFile, ApiError> {
    let doc: ConfigFile = serde_json::from_slice(bytes).map_err(bad_body)?;
    if doc.default_url.is_some() || doc.max_body_bytes.is_some() {
        return Err(bad_body(
            "default_url and max_body_bytes belong to the config file",
        ));
    }
    Ok(doc)
}

/// The body of `POST /api/v1/match`: the request to explain, as a head and maybe a body.
pub fn parse_match(bytes: &[u8]) -> Result<(SharedHead, Option<BufferedBody>), ApiError> {
    let probe: MatchRequest = serde_json::from_slice(bytes).map_err(bad_body)?;
    let mut builder = Request::builder()
        .method(probe.method.as_str())
        .uri(probe.path.as_str());
    if let Some(host) = &probe.host {
        builder = builder.header(header::HOST, host.as_str());
    }
    for (k, v) in &probe.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let (parts, ()) = builder.body(()).map_err(bad_body)?.into_parts();
    if !parts.uri.path().starts_with('/') {
        return Err(bad_body("path must start with '/'"));
    }
    let remote: SocketAddr = match &probe.remote_addr {
        Some(a) => a
            .parse()
            .or_else(|_| {
                a.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 0))
            })
            .map_err(|_| bad_body(format!("remote_addr {a:?} is not an IP address")))?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let scheme = match probe.scheme.as_deref() {
        None | Some("http") => "http",
        Some("https") => "https",
        Some(other) => {
            return Err(bad_body(format!(
                "scheme {other:?} is neither \"http\" nor \"https\""
            )));
        }
    };
    let shared = SharedHead {
        parts: Arc::new(parts),
        remote,
        scheme,
    };
    let body = probe.body.map(|b| BufferedBody::new(Bytes::from(b), false));
    Ok((shared, body))
}

impl Handler for Admin {
    async fn call(self: Arc<Self>, req: Request<Incoming>, peer: Peer) -> Response<ResponseBody> {
        let read = req.method() == Method::GET && req.uri().path().starts_with("/api/");
        let mut resp = match self.clone().route(req, peer).await {
            Ok(resp) => resp,
            Err(e) => error_response(&e),
        };
        // Reads answer from this instance's view; while the shared store is unreachable that
        // view may be behind, and the answer says so.
        if read && let Some(why) = self.routes.stale() {
            let value = HeaderValue::from_str(&why).unwrap_or(HeaderValue::from_static("true"));
            resp.headers_mut().insert("routerd-stale", value);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_guards_changes_everywhere_and_reads_off_loopback() {
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        let local6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
        let remote = std::net::IpAddr::from([192, 0, 2, 7]);
        let get = Method::GET;
        for peer in [local, local6] {
            assert_eq!(token_needed(&get, "/api/v1/routes", peer), None);
            assert_eq!(token_needed(&get, "/metrics", peer), None);
            assert!(token_needed(&Method::PUT, "/api/v1/routes/a", peer).is_some());
        }
        assert!(token_needed(&Method::DELETE, "/api/v1/plugins/p", local).is_some());
        assert_eq!(token_needed(&Method::POST, "/api/v1/match", local), None);
        for path in [
            "/api/v1/routes",
            "/metrics",
            "/api/v1/live",
            "/api/v1/health",
        ] {
            let why = token_needed(&get, path, remote);
            assert!(why.is_some_and(|w| w.contains("off loopback")), "{path}");
        }
        assert!(token_needed(&Method::POST, "/api/v1/match", remote).is_some());
        assert_eq!(token_needed(&get, "/healthz", remote), None);
    }

    fn parts(method: Method, host: Option<&str>, origin: Option<&str>) -> http::request::Parts {
        let mut b = Request::builder().method(method).uri("/api/v1/routes");
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(())
            .map(|r| r.into_parts().0)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pages_of_other_sites_cannot_use_the_admin_api_through_a_browser() {
        let local = std::net::IpAddr::from([127, 0, 0, 1]);
        let remote = std::net::IpAddr::from([192, 0, 2, 7]);
        let code = |p: &http::request::Parts, peer| browser_guard(p, peer).err().map(|e| e.code);
        // The dashboard itself, and API clients without Origin.
        for host in [
            "127.0.0.1:9090",
            "localhost:9090",
            "[::1]:9090",
            "LOCALHOST",
            "a.localhost:1",
        ] {
            let origin = format!("http://{host}");
            assert_eq!(
                code(&parts(Method::POST, Some(host), Some(&origin)), local),
                None,
                "{host}"
            );
            assert_eq!(code(&parts(Method::DELETE, Some(host), None), local), None);
        }
        assert_eq!(code(&parts(Method::GET, None, None), local), None);
        // Another site's page posting to routerd.
        let cross = parts(
            Method::POST,
            Some("127.0.0.1:9090"),
            Some("http://evil.example"),
        );
        assert_eq!(code(&cross, local), Some("cross_origin"));
        let null = parts(Method::PUT, Some("127.0.0.1:9090"), Some("null"));
        assert_eq!(code(&null, local), Some("cross_origin"));
        // Reading cross-origin is the browser's to refuse (no CORS headers are sent).
        let read = parts(
            Method::GET,
            Some("127.0.0.1:9090"),
            Some("http://evil.example"),
        );
        assert_eq!(code(&read, local), None);
        // A rebound name, on loopback: refused, reads included.
        let rebound = parts(Method::GET, Some("evil.example:9090"), None);
        assert_eq!(code(&rebound, local), Some("host_not_allowed"));
        // Off loopback any name may reach routerd (the token guards it there).
        assert_eq!(code(&rebound, remote), None);
    }
}
