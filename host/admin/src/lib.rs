//! The admin API (`/api/v1`): routes (create, read, update with rename, delete, apply, with
//! optimistic concurrency), plugins (upload, list, unload), the explain tool (`match`), backend
//! health, the live view and Prometheus metrics, and the dashboard (`/ui/`) that shows them.
//! Changes need the bearer token when one is configured; so does every read from a client off
//! loopback (but `/healthz` and the dashboard's files, which hold no data).

mod access;
mod dry_run;
use dry_run::PluginChange;
mod error;
mod explain;
mod plugins;
mod requests;
mod ui;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use access::{browser_guard, token_needed};
pub use error::ApiError;
use requests::{bad_body, if_match, live_query, query_param, read_body};
pub use requests::{parse_apply, parse_match, parse_rule};
use routerd_base::Peer;
use routerd_base::{ResponseBody, full};
use routerd_control::health::HealthChecks;
use routerd_control::live::LiveView;
use routerd_control::routeset::{ProposedChange, RouteSet, RouteView, Source};
use routerd_proxy::metrics::Metrics;
use routerd_proxy::server::Handler;

/// The largest single route, match request or other JSON body accepted.
const MAX_JSON_BODY: usize = 4 << 20;
/// The largest document `apply` accepts: a controller syncing a cluster's routes sends them all
/// at once (100,000 routes are about 13 MiB of JSON).
const MAX_APPLY_BODY: usize = 64 << 20;
/// The largest plugin accepted.
pub const MAX_PLUGIN_BYTES: usize = 64 << 20;

/// The admin API.
pub struct Admin {
    routes: Arc<RouteSet>,
    metrics: Arc<Metrics>,
    health: Arc<HealthChecks>,
    live: Arc<LiveView>,
    token: Option<String>,
    /// Recent request heads, for dry runs.
    sample: dry_run::Sample,
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

/// Runs a blocking admin operation (database commits, plugin compilation) off the workers.
async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(Into::into)
}

/// What an endpoint reads of a request besides its body.
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: &'a http::HeaderMap,
}

impl Call<'_> {
    /// 405 for a path that exists, with a method it does not take.
    fn not_allowed(&self) -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not supported on {}", self.method, self.path),
        )
    }
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
            sample: None,
        }
    }

    /// Replays `sample` in dry runs.
    pub fn with_sample(mut self, sample: dry_run::Sample) -> Self {
        self.sample = sample;
        self
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
        if let Some(why) = token_needed(&parts.method, &path, peer.addr.ip())
            && !self.authorized(&parts.headers)
        {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why));
        }
        let call = Call {
            method: &parts.method,
            path: &path,
            query: parts.uri.query(),
            headers: &parts.headers,
        };
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["api", "v1", "routes", rest @ ..] => self.routes_endpoint(&call, rest, body).await,
            ["api", "v1", "plugins", rest @ ..] => self.plugins_endpoint(&call, rest, body).await,
            other => self.other_endpoint(&call, other, body).await,
        }
    }

    /// `/api/v1/routes[/...]`.
    async fn routes_endpoint(&self, call: &Call<'_>, rest: &[&str], body: Incoming) -> Reply {
        match (call.method, rest) {
            (&Method::GET, []) => self.list_routes(call.query, call.headers),
            (&Method::POST, []) => {
                let rule = parse_rule(&read_body(body, MAX_JSON_BODY).await?)?;
                if dry_run::requested(call.query)? {
                    return self.dry_run(ProposedChange::Create(rule)).await;
                }
                let routes = self.routes.clone();
                let view = blocking(move || routes.create(rule)).await?;
                Ok(json(StatusCode::CREATED, &view))
            }
            (&Method::POST, ["apply"]) => {
                let doc = parse_apply(&read_body(body, MAX_APPLY_BODY).await?)?;
                if dry_run::requested(call.query)? {
                    return self.dry_run(ProposedChange::Apply(doc)).await;
                }
                let routes = self.routes.clone();
                let summary = blocking(move || routes.apply(doc)).await?;
                Ok(json(StatusCode::OK, &summary))
            }
            (&Method::GET, [name]) => {
                let source = match query_param(call.query, "source").as_deref() {
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
            (&Method::PUT, [name]) => {
                let version = if_match(call.headers)?;
                let rule = parse_rule(&read_body(body, MAX_JSON_BODY).await?)?;
                if dry_run::requested(call.query)? {
                    let name = (*name).to_owned();
                    let if_match = version;
                    return self
                        .dry_run(ProposedChange::Update {
                            name,
                            rule,
                            if_match,
                        })
                        .await;
                }
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                let view = blocking(move || routes.update(&name, rule, version)).await?;
                Ok(json(StatusCode::OK, &view))
            }
            (&Method::DELETE, [name]) => {
                let version = if_match(call.headers)?;
                if dry_run::requested(call.query)? {
                    let name = (*name).to_owned();
                    return self
                        .dry_run(ProposedChange::Delete {
                            name,
                            if_match: version,
                        })
                        .await;
                }
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                blocking(move || routes.delete(&name, version)).await?;
                Ok(no_content())
            }
            _ => Err(call.not_allowed()),
        }
    }

    /// `/api/v1/plugins[/...]`.
    async fn plugins_endpoint(&self, call: &Call<'_>, rest: &[&str], body: Incoming) -> Reply {
        match (call.method, rest) {
            (&Method::GET, []) => Ok(json(StatusCode::OK, &plugins::list(&self.routes))),
            (&Method::POST, []) => {
                let name = query_param(call.query, "name")
                    .map(|n| n.into_owned())
                    .unwrap_or_default();
                let trial = plugins::trial_mode(call.query)?;
                let bytes = read_body(body, MAX_PLUGIN_BYTES).await?;
                if dry_run::requested(call.query)? {
                    if trial.is_some() {
                        return Err(bad_body(
                            "a dry run replaces the live version: it goes without shadow or canary",
                        ));
                    }
                    return self.plugin_dry_run(PluginChange::Upload(name, bytes)).await;
                }
                let routes = self.routes.clone();
                let doc = match trial {
                    None => blocking(move || plugins::upload(&routes, &name, &bytes)).await?,
                    Some(mode) => {
                        blocking(move || plugins::try_version(&routes, &name, &bytes, mode)).await?
                    }
                };
                Ok(json(StatusCode::CREATED, &doc))
            }
            (&Method::GET, [name]) => Ok(json(StatusCode::OK, &plugins::get(&self.routes, name)?)),
            (&Method::POST, [name, "promote"]) => {
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                let doc = blocking(move || plugins::promote(&routes, &name)).await?;
                Ok(json(StatusCode::OK, &doc))
            }
            (&Method::POST, [name, "discard"]) => {
                plugins::discard(&self.routes, name)?;
                Ok(no_content())
            }
            (&Method::DELETE, [name]) => {
                if dry_run::requested(call.query)? {
                    let change = PluginChange::Unload((*name).to_owned());
                    return self.plugin_dry_run(change).await;
                }
                let force =
                    query_param(call.query, "force").is_some_and(|v| v == "true" || v == "1");
                let (routes, name) = (self.routes.clone(), (*name).to_owned());
                blocking(move || plugins::unload(&routes, &name, force)).await?;
                Ok(no_content())
            }
            _ => Err(call.not_allowed()),
        }
    }

    /// Everything else: health, metrics, `match`, the cluster, the live view, backend health.
    async fn other_endpoint(&self, call: &Call<'_>, segments: &[&str], body: Incoming) -> Reply {
        match (call.method, segments) {
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
            (&Method::POST, ["api", "v1", "match"]) => {
                let (head, body) = parse_match(&read_body(body, MAX_JSON_BODY).await?)?;
                let table = self.routes.table();
                let explanation = table.explain(&head.view(body.as_ref())).await;
                Ok(json(
                    StatusCode::OK,
                    &explain::document(&table, explanation, &head),
                ))
            }
            (&Method::GET, ["api", "v1", "cluster"]) => {
                let routes = self.routes.clone();
                let doc = blocking(move || cluster(&routes)).await?;
                Ok(json(StatusCode::OK, &doc))
            }
            (&Method::GET, ["api", "v1", "live"]) => Ok(json(
                StatusCode::OK,
                &self.live.doc(&live_query(call.query)?),
            )),
            (&Method::GET, ["api", "v1", "health"]) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({"routes": self.health.snapshot()}),
            )),
            (
                _,
                ["healthz" | "metrics"]
                | ["api", "v1", "match" | "health" | "cluster" | "live", ..],
            ) => Err(call.not_allowed()),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no admin endpoint {}", call.path),
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
    let trials = plugins::cluster_trials(&instances);
    Ok(serde_json::json!({"store": store.describe(), "instances": instances, "trials": trials}))
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
