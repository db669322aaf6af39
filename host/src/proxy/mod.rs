//! The request path: decide with the current [`RouteTable`], run the route's filters, proxy to
//! the backend, and answer every failure with a small JSON error (details go to the log).

pub mod body;
pub mod clients;
pub mod pool;
pub mod upgrade;
pub mod upstream;

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use tracing::warn;

use crate::access_log::{AccessLog, Record};
use crate::metrics::Metrics;
use crate::plugins::Phase;
use crate::routing::filters::BuiltinFilter;
use crate::routing::{
    BufferedBody, Decision, ExternalRequest, FailurePolicy, HeaderOp, PredicateResults, Reply,
    RequestAction, RequestView, ResponseHead, RouteFilter, RouteTable, SharedHead, Target,
    request_host,
};
use crate::server::Peer;
use body::{ClientBodyError, RequestBody};
use clients::{UpstreamClients, UpstreamError};
use upstream::{UpstreamOptions, UpstreamPath};

/// The body of every response routerd sends.
pub type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// The proxy: the current table and the upstream client.
pub struct Proxy {
    table: ArcSwap<RouteTable>,
    clients: UpstreamClients,
    response_timeout: std::time::Duration,
    upgrade_idle: std::time::Duration,
    upgrades: upgrade::UpgradeStats,
    metrics: Option<Arc<Metrics>>,
    access_log: Option<Arc<AccessLog>>,
}

/// The request head while the route is chosen: owned, until a plugin predicate needs it shared
/// (then it moves into an `Arc` once, and back out after the decision unless a plugin kept it).
enum Head {
    Owned(http::request::Parts),
    Shared(SharedHead),
}

impl Head {
    fn view<'a>(&'a self, peer: &Peer, body: Option<&'a BufferedBody>) -> RequestView<'a> {
        match self {
            Head::Owned(p) => RequestView {
                method: &p.method,
                path: p.uri.path(),
                query: p.uri.query(),
                host: request_host(&p.uri, &p.headers),
                headers: &p.headers,
                remote: peer.addr.ip(),
                body,
                shared: None,
            },
            Head::Shared(s) => s.view(body),
        }
    }

    /// The head as plugins take it.
    fn into_shared(self, peer: &Peer) -> SharedHead {
        match self {
            Head::Owned(parts) => SharedHead {
                parts: Arc::new(parts),
                remote: peer.addr,
                scheme: peer.scheme(),
            },
            Head::Shared(s) => s,
        }
    }

    fn into_parts(self) -> http::request::Parts {
        match self {
            Head::Owned(p) => p,
            Head::Shared(s) => Arc::try_unwrap(s.parts).unwrap_or_else(|shared| (*shared).clone()),
        }
    }
}

/// What a request's handling learns for its access-log line.
#[derive(Debug, Default)]
struct Trace {
    /// Whether anything reads it (the access log is on); otherwise nothing is measured.
    on: bool,
    upstream: Option<http::uri::Authority>,
    plugin_time: std::time::Duration,
    /// What went wrong, when routerd or the client (not the route or backend) decided the
    /// answer: `overloaded`, ...
    error: Option<&'static str>,
}

impl Trace {
    /// Runs a plugin call, adding its time.
    async fn plugin<T>(&mut self, call: impl Future<Output = T>) -> T {
        if !self.on {
            return call.await;
        }
        let started = std::time::Instant::now();
        let out = call.await;
        self.plugin_time += started.elapsed();
        out
    }
}

impl Proxy {
    /// A proxy serving `table`.
    pub fn new(
        table: RouteTable,
        upstream: UpstreamOptions,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Proxy {
            table: ArcSwap::from_pointee(table),
            clients: UpstreamClients::new(&upstream, 1),
            response_timeout: upstream.response,
            upgrade_idle: upstream.upgrade_idle,
            upgrades: metrics.as_ref().map(|m| m.upgrades()).unwrap_or_default(),
            metrics,
            access_log: None,
        }
    }

    /// Gives each of `workers` its own pool of plain backend connections.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.clients = UpstreamClients::new(&self.clients.options(), workers);
        self
    }

    /// Writes a line per request to `log`.
    pub fn with_access_log(mut self, log: Option<Arc<AccessLog>>) -> Self {
        self.access_log = log;
        self
    }

    /// Replaces the table; requests in flight finish on the old one.
    pub fn swap_table(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Handles one request. Never fails: every error becomes a response.
    pub async fn handle(&self, req: Request<Incoming>, peer: Peer) -> Response<ResponseBody> {
        let started = std::time::Instant::now();
        let logged = self.access_log.as_ref().map(|_| {
            let path = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
            (std::time::SystemTime::now(), req.method().clone(), path)
        });
        let mut trace = Trace {
            on: logged.is_some(),
            ..Trace::default()
        };
        let (resp, route) = self.dispatch(req, peer, &mut trace).await;
        if let Some(m) = &self.metrics {
            m.request(&route, resp.status().as_u16(), started.elapsed());
        }
        match (&self.access_log, logged) {
            (Some(log), Some((time, method, path))) => {
                let record = Record {
                    time,
                    remote: peer.addr,
                    method,
                    path,
                    status: resp.status().as_u16(),
                    route,
                    upstream: trace.upstream,
                    plugin_time: trace.plugin_time,
                    error: trace.error,
                };
                resp.map(|body| log.wrap(record, started, body))
            }
            _ => resp,
        }
    }

    /// Answers a request; also says which route did (`default_url`, or `none`).
    async fn dispatch(
        &self,
        req: Request<Incoming>,
        peer: Peer,
        trace: &mut Trace,
    ) -> (Response<ResponseBody>, Arc<str>) {
        let table = self.table.load_full();
        let (parts, body) = req.into_parts();
        let mut head = Head::Owned(parts);
        let mut body = RequestBody::Streaming(body);
        let mut buffered: Option<BufferedBody> = None;
        let mut predicates = PredicateResults::default();
        let decision = loop {
            let decision = table.decide(&head.view(&peer, buffered.as_ref()), &predicates);
            match decision {
                Decision::NeedPredicates { route, toggled } => {
                    let shared = head.into_shared(&peer);
                    trace
                        .plugin(Box::pin(table.run_predicates(
                            route,
                            toggled,
                            &shared.view(buffered.as_ref()),
                            &mut predicates,
                        )))
                        .await;
                    head = Head::Shared(shared);
                }
                Decision::NeedBody => {
                    match Box::pin(body::read_prefix(body, table.max_body_bytes())).await {
                        Ok((bytes, too_large, replay)) => {
                            body = replay;
                            buffered = Some(BufferedBody::new(bytes, too_large));
                        }
                        Err(e) => {
                            let resp = client_body_failed(&e, None, trace);
                            return (resp, Arc::from("none"));
                        }
                    }
                }
                d => break d,
            }
        };
        let parts = head.into_parts();
        let route: Arc<str> = match &decision {
            Decision::Route(id) | Decision::Overloaded { route: id, .. } => {
                table.route(*id).name.clone()
            }
            Decision::DefaultUrl => Arc::from("default_url"),
            _ => Arc::from("none"),
        };
        let resp = match decision {
            Decision::Route(id) => self.run_route(&table, id, parts, body, peer, trace).await,
            Decision::DefaultUrl => match table.default_url() {
                Some(target) => {
                    let uri = parts.uri.clone();
                    let path = UpstreamPath::Joined(uri.path().into());
                    self.forward(
                        target,
                        &path,
                        uri.query(),
                        parts,
                        body,
                        peer,
                        None,
                        "default_url",
                        trace,
                    )
                    .await
                }
                None => error(StatusCode::NOT_FOUND, "no route matches", None),
            },
            Decision::Redirect(status, location) => {
                let mut resp = error(status, "redirecting to the canonical path", None);
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                resp
            }
            Decision::MethodNotAllowed(allow) => {
                let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None);
                set_allow(&mut resp, &allow);
                resp
            }
            Decision::Options(allow) => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                set_allow(&mut resp, &allow);
                resp
            }
            Decision::UnsupportedMediaType(types) => {
                let mut resp = error_with(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported media type",
                    "consumes",
                    &types,
                );
                if let Ok(v) = HeaderValue::from_str(&types) {
                    resp.headers_mut().insert(header::ACCEPT, v);
                }
                resp
            }
            Decision::NotAcceptable(types) => error_with(
                StatusCode::NOT_ACCEPTABLE,
                "none of the acceptable media types is available",
                "available",
                &types,
            ),
            Decision::Overloaded { plugin, .. } => {
                self.overloaded(&route, &plugin, Phase::Predicate, trace)
            }
            Decision::NotFound | Decision::NeedBody | Decision::NeedPredicates { .. } => {
                error(StatusCode::NOT_FOUND, "no route matches", None)
            }
        };
        (resp, route)
    }

    async fn run_route(
        &self,
        table: &RouteTable,
        id: u32,
        mut parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let route = table.route(id);
        // A clone of the URI shares its bytes: the path and query are borrowed, not copied.
        let uri = parts.uri.clone();
        let path = uri.path();
        let params = table.params(id, path);
        let mut upstream_path =
            UpstreamPath::Joined(upstream::strip_prefix(path, route.strip_prefix.as_deref()));
        let mut upstream_query = uri.query().map(Cow::Borrowed);
        let has_plugin_filters = route
            .filters
            .iter()
            .any(|f| matches!(f, RouteFilter::Plugin(_)));
        let owned_params: Vec<(String, String)> = if has_plugin_filters {
            params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let mut answer = None;
        for f in &route.filters {
            match f {
                RouteFilter::Builtin(BuiltinFilter::SetRequestHeader(name, value)) => {
                    match HeaderValue::from_str(&value.render(&params)) {
                        Ok(v) => {
                            parts.headers.insert(name.clone(), v);
                        }
                        Err(_) => {
                            warn!(route = %route.name, header = %name, "filter produced an invalid header value; skipped")
                        }
                    }
                }
                RouteFilter::Builtin(BuiltinFilter::RemoveRequestHeader(name)) => {
                    parts.headers.remove(name);
                }
                RouteFilter::Builtin(BuiltinFilter::SetPath(t)) => {
                    upstream_path = UpstreamPath::Replaced(t.render(&params));
                }
                RouteFilter::Builtin(BuiltinFilter::Redirect(status, location)) => {
                    let mut resp = Response::new(empty());
                    *resp.status_mut() = *status;
                    if let Ok(v) = HeaderValue::from_str(&location.render(&params)) {
                        resp.headers_mut().insert(header::LOCATION, v);
                    }
                    answer = Some(resp);
                    break;
                }
                RouteFilter::Builtin(BuiltinFilter::Respond(status, text, content_type)) => {
                    let mut resp = Response::new(full(text.render(&params)));
                    *resp.status_mut() = *status;
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, content_type.clone());
                    answer = Some(resp);
                    break;
                }
                RouteFilter::Builtin(
                    BuiltinFilter::SetResponseHeader(..) | BuiltinFilter::RemoveResponseHeader(_),
                ) => {}
                RouteFilter::Plugin(call) => {
                    let head = Arc::new(std::mem::replace(
                        &mut parts,
                        Request::new(()).into_parts().0,
                    ));
                    let request = ExternalRequest {
                        parts: head.clone(),
                        remote: peer.addr,
                        scheme: peer.scheme(),
                        path: Some(upstream_path.as_str().to_owned()),
                        params: owned_params.clone(),
                    };
                    let result = trace.plugin(Box::pin(call.on_request(request))).await;
                    parts = Arc::try_unwrap(head).unwrap_or_else(|head| (*head).clone());
                    match result {
                        Ok(RequestAction::Proceed(edits)) => {
                            apply_ops(&mut parts.headers, edits.headers, call.name());
                            if let Some(p) = edits.path {
                                if p.starts_with('/') {
                                    upstream_path = UpstreamPath::Replaced(p);
                                } else {
                                    warn!(plugin = call.name(), route = %route.name, path = %p, "plugin set a path without a leading '/'; ignored");
                                }
                            }
                            if let Some(q) = edits.query {
                                upstream_query = (!q.is_empty()).then_some(Cow::Owned(q));
                            }
                        }
                        Ok(RequestAction::Respond(reply)) => {
                            answer = Some(reply_response(reply, call.name()));
                            break;
                        }
                        Err(failure) if failure.overloaded => {
                            warn!(plugin = call.name(), route = %route.name, reason = %failure, "plugin filter could not run: routerd is overloaded; answering 503");
                            answer = Some(self.overloaded(
                                &route.name,
                                call.name(),
                                Phase::Request,
                                trace,
                            ));
                            break;
                        }
                        Err(failure) => {
                            let policy = call.failure_policy();
                            warn!(plugin = call.name(), route = %route.name, failure = failure.kind, reason = %failure, ?policy, "plugin filter failed");
                            if policy == FailurePolicy::FailClosed {
                                answer = Some(error(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "a plugin filter failed",
                                    Some(&route.name),
                                ));
                                break;
                            }
                        }
                    }
                }
            }
        }
        let response_head = has_plugin_filters.then(|| Arc::new(parts.clone()));
        let mut resp = match (answer, &route.target) {
            (Some(resp), _) => resp,
            (None, Some(target)) => {
                self.forward(
                    target,
                    &upstream_path,
                    upstream_query.as_deref(),
                    parts,
                    body,
                    peer,
                    route.timeout,
                    &route.name,
                    trace,
                )
                .await
            }
            (None, None) => error(
                StatusCode::NOT_FOUND,
                "the route has no target",
                Some(&route.name),
            ),
        };
        for f in &route.filters {
            match f {
                RouteFilter::Builtin(BuiltinFilter::SetResponseHeader(name, value)) => {
                    if let Ok(v) = HeaderValue::from_str(&value.render(&params)) {
                        resp.headers_mut().insert(name.clone(), v);
                    }
                }
                RouteFilter::Builtin(BuiltinFilter::RemoveResponseHeader(name)) => {
                    resp.headers_mut().remove(name);
                }
                RouteFilter::Plugin(call) => {
                    let Some(head) = &response_head else { continue };
                    let request = ExternalRequest {
                        parts: head.clone(),
                        remote: peer.addr,
                        scheme: peer.scheme(),
                        path: Some(upstream_path.as_str().to_owned()),
                        params: owned_params.clone(),
                    };
                    let view = ResponseHead {
                        status: resp.status().as_u16(),
                        headers: std::mem::take(resp.headers_mut()),
                    };
                    let (result, view) = trace
                        .plugin(Box::pin(call.on_response(request, view)))
                        .await;
                    *resp.headers_mut() = view.headers;
                    match result {
                        Ok(edits) => {
                            if let Some(status) = edits.status {
                                match StatusCode::from_u16(status) {
                                    Ok(s) => *resp.status_mut() = s,
                                    Err(_) => warn!(
                                        plugin = call.name(),
                                        status, "plugin set an invalid status; ignored"
                                    ),
                                }
                            }
                            apply_ops(resp.headers_mut(), edits.headers, call.name());
                        }
                        Err(failure) if failure.overloaded => {
                            warn!(plugin = call.name(), route = %route.name, reason = %failure, "plugin filter could not run: routerd is overloaded; answering 503");
                            resp =
                                self.overloaded(&route.name, call.name(), Phase::Response, trace);
                        }
                        Err(failure) => {
                            let policy = call.failure_policy();
                            warn!(plugin = call.name(), route = %route.name, failure = failure.kind, reason = %failure, ?policy, "plugin filter failed");
                            if policy == FailurePolicy::FailClosed {
                                resp = error(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    "a plugin filter failed",
                                    Some(&route.name),
                                );
                            }
                        }
                    }
                }
                RouteFilter::Builtin(_) => {}
            }
        }
        resp
    }

    /// routerd's own answer when it had no capacity to run `plugin`'s call for `route`: 503
    /// with `Retry-After`, counted and logged as overloaded. Never the plugin's failure policy:
    /// the plugin did nothing wrong, and a silent no-match would be a wrong routing answer.
    fn overloaded(
        &self,
        route: &str,
        plugin: &str,
        phase: Phase,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        if let Some(m) = &self.metrics {
            m.overloaded(route, plugin, phase);
        }
        trace.error = Some("overloaded");
        let doc = serde_json::json!({
            "error": "routerd is overloaded: no capacity to run a plugin call within its queue_ms",
            "route": route,
            "plugin": plugin,
        });
        let mut resp = json_response(StatusCode::SERVICE_UNAVAILABLE, &doc);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        resp
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        target: &Target,
        path: &UpstreamPath<'_>,
        query: Option<&str>,
        mut parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        timeout: Option<std::time::Duration>,
        route: &str,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        // An upgrade (WebSocket, ...) keeps its two hop-by-hop headers, on HTTP/1.1 only.
        let upgrade = (parts.version == http::Version::HTTP_11)
            .then(|| upgrade::requested(&parts.headers))
            .flatten();
        // The plain HTTP/1.1 pool writes the path and query only; the other clients take an
        // absolute URI.
        let origin_form = target.connection.is_none() && upgrade.is_none();
        let uri = match upstream::upstream_uri(target, path, query, &parts.uri, origin_form) {
            Ok(u) => u,
            Err(e) => {
                warn!(route, error = %e, "cannot build the backend URI");
                return error(
                    StatusCode::BAD_GATEWAY,
                    "cannot build the backend request",
                    Some(route),
                );
            }
        };
        // The Host as the client sent it (HTTP/2: the authority), port included.
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client_upgrade = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        upstream::remove_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = upgrade {
            upgrade::restore_headers(&mut parts.headers, protocol);
        }
        upstream::add_forwarded(&mut parts.headers, peer.addr.ip(), peer.scheme(), host);
        // The client sets Host from the URI: the backend sees its own authority.
        parts.headers.remove(header::HOST);
        if trace.on {
            trace.upstream = Some(target.authority.clone());
        }
        parts.uri = uri;
        parts.version = if target.connection.as_ref().is_some_and(|c| c.h2) {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        let limit = timeout.unwrap_or(self.response_timeout);
        let request = self.clients.send(
            target,
            Request::from_parts(parts, body),
            client_upgrade.is_some(),
        );
        let result = match tokio::time::timeout(limit, request).await {
            Ok(r) => r,
            Err(_) => {
                warn!(
                    route,
                    timeout_ms = limit.as_millis() as u64,
                    "backend timed out"
                );
                return error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the backend did not answer in time",
                    Some(route),
                );
            }
        };
        match result {
            Ok(mut resp) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client_upgrade) = client_upgrade else {
                        warn!(route, "the backend switched protocols without being asked");
                        return error(
                            StatusCode::BAD_GATEWAY,
                            "the backend switched protocols without being asked",
                            Some(route),
                        );
                    };
                    let backend_upgrade = hyper::upgrade::on(&mut resp);
                    upgrade::splice(
                        client_upgrade,
                        backend_upgrade,
                        self.upgrade_idle,
                        self.upgrades.clone(),
                    );
                    let protocol = resp.headers().get(header::UPGRADE).cloned();
                    upstream::remove_hop_by_hop(resp.headers_mut());
                    if let Some(protocol) = protocol {
                        upgrade::restore_headers(resp.headers_mut(), protocol);
                    }
                    return resp;
                }
                upstream::remove_hop_by_hop(resp.headers_mut());
                resp
            }
            Err(UpstreamError::Tls(e)) => {
                warn!(route, error = %e, "cannot set up TLS to the backend");
                error(
                    StatusCode::BAD_GATEWAY,
                    "cannot set up TLS to the backend",
                    Some(route),
                )
            }
            Err(e) if upstream::head_too_large(&e) => {
                warn!(route, error = %error_chain(&e), "backend response head over the limit (--max-response-headers)");
                error(
                    StatusCode::BAD_GATEWAY,
                    "backend response head too large",
                    Some(route),
                )
            }
            Err(e) => {
                if let Some(client) = ClientBodyError::among_causes(&e) {
                    return client_body_failed(client, Some(route), trace);
                }
                warn!(route, error = %error_chain(&e), "backend request failed");
                error(
                    StatusCode::BAD_GATEWAY,
                    "the backend is unreachable",
                    Some(route),
                )
            }
        }
    }
}

/// The answer when the client's own request body failed, read for a matcher or forwarded:
/// 400 for a malformed body (nginx answers so too), 499 when the client went away (nginx's
/// "client closed request", for the access log and metrics: nobody is left to read it). The
/// client's fault, so it is logged as such and never as a backend failure.
fn client_body_failed(
    e: &ClientBodyError,
    route: Option<&str>,
    trace: &mut Trace,
) -> Response<ResponseBody> {
    let route_name = route.unwrap_or("none");
    match e {
        ClientBodyError::Invalid(_) => {
            tracing::info!(route = route_name, error = %e, "client sent a malformed request body; answered 400");
            trace.error = Some("client_body_invalid");
            error(
                StatusCode::BAD_REQUEST,
                "the request body is malformed",
                route,
            )
        }
        ClientBodyError::Closed(_) => {
            tracing::debug!(route = route_name, error = %e, "client went away before its request body ended");
            trace.error = Some("client_closed");
            let status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
            error(
                status,
                "the client closed the request before its body ended",
                route,
            )
        }
    }
}

/// An error and its causes on one line, joined by `: ` (a cause whose text its parent already
/// shows is left out), for a log record that stays one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// A JSON error with a list of media types under `key`.
fn error_with(status: StatusCode, message: &str, key: &str, types: &str) -> Response<ResponseBody> {
    let list: Vec<&str> = types.split(", ").collect();
    json_response(status, &serde_json::json!({ "error": message, key: list }))
}

/// Applies a plugin's header changes; invalid names or values are logged and skipped.
fn apply_ops(headers: &mut http::HeaderMap, ops: Vec<HeaderOp>, plugin: &str) {
    use http::header::HeaderName;
    for op in ops {
        let (name, value, append) = match op {
            HeaderOp::Remove(name) => {
                if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                    headers.remove(n);
                }
                continue;
            }
            HeaderOp::Set(n, v) => (n, v, false),
            HeaderOp::Append(n, v) => (n, v, true),
        };
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) if append => {
                headers.append(n, v);
            }
            (Ok(n), Ok(v)) => {
                headers.insert(n, v);
            }
            _ => warn!(plugin, header = %name, "plugin produced an invalid header; skipped"),
        }
    }
}

/// A plugin's reply as a response.
fn reply_response(reply: Reply, plugin: &str) -> Response<ResponseBody> {
    let Ok(status) = StatusCode::from_u16(reply.status) else {
        warn!(
            plugin,
            status = reply.status,
            "plugin replied with an invalid status"
        );
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "a plugin filter failed",
            None,
        );
    };
    let mut resp = Response::new(full(reply.body));
    *resp.status_mut() = status;
    let ops = reply
        .headers
        .into_iter()
        .map(|(n, v)| HeaderOp::Append(n, v))
        .collect();
    apply_ops(resp.headers_mut(), ops, plugin);
    resp
}

fn set_allow(resp: &mut Response<ResponseBody>, allow: &str) {
    if let Ok(v) = HeaderValue::from_str(allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
}

/// An empty body.
pub fn empty() -> ResponseBody {
    full(Bytes::new())
}

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A small JSON error response: `{"error": message, "route": name}`.
pub fn error(status: StatusCode, message: &str, route: Option<&str>) -> Response<ResponseBody> {
    let mut doc = serde_json::json!({ "error": message });
    if let Some(r) = route {
        doc["route"] = r.into();
    }
    json_response(status, &doc)
}

fn json_response(status: StatusCode, doc: &serde_json::Value) -> Response<ResponseBody> {
    let mut resp = Response::new(full(doc.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    //! Plugin results come from untrusted guests: any header names, values and status codes
    //! must decode without a panic, keep what is valid and drop what is not.
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9-]{1,12}",
            "[ -~]{0,16}",
            any::<String>(),
            Just(String::new()),
            Just("bad\r\nheader".to_owned()),
        ]
    }

    fn op() -> impl Strategy<Value = HeaderOp> {
        prop_oneof![
            (text(), text()).prop_map(|(n, v)| HeaderOp::Set(n, v)),
            (text(), text()).prop_map(|(n, v)| HeaderOp::Append(n, v)),
            text().prop_map(HeaderOp::Remove),
        ]
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let refused =
            || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused\nby peer");
        assert_eq!(
            error_chain(&Wrapped(refused(), false)),
            "connecting: refused by peer"
        );
        assert_eq!(
            error_chain(&Wrapped(refused(), true)),
            "connecting: refused by peer",
            "a cause the parent already shows is not repeated"
        );
    }

    /// An error with a cause, whose own text shows the cause when `.1`.
    #[derive(Debug)]
    struct Wrapped(std::io::Error, bool);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.1 {
                true => write!(f, "connecting: {}", self.0),
                false => f.write_str("connecting"),
            }
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn header_ops_keep_the_valid_and_skip_the_rest(ops in proptest::collection::vec(op(), 0..16)) {
            let mut headers = http::HeaderMap::new();
            apply_ops(&mut headers, ops.clone(), "fuzz");
            // The last op on a valid name decides whether it is there.
            if let Some(HeaderOp::Set(n, v)) = ops.last()
                && let (Ok(name), Ok(value)) =
                    (http::HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v))
            {
                prop_assert_eq!(headers.get(&name), Some(&value));
            }
            if let Some(HeaderOp::Remove(n)) = ops.last()
                && let Ok(name) = http::HeaderName::from_bytes(n.as_bytes())
            {
                prop_assert!(headers.get(&name).is_none());
            }
        }

        #[test]
        fn replies_decode_to_their_status_or_500(
            status in any::<u16>(),
            headers in proptest::collection::vec((text(), text()), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let resp = reply_response(Reply { status, headers, body }, "fuzz");
            let want = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            prop_assert_eq!(resp.status(), want);
        }
    }
}

#[cfg(test)]
mod future_size {
    //! hyper moves a connection's request future into place on every request, and the memcpy
    //! showed in profiles while plugin and body-reading futures were stored inline (12.7 KB).
    //! Those paths are boxed now; this keeps the common path's future small.
    use super::*;

    fn output_size<A, B, C, R>(_: impl Fn(A, B, C) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_request_future_stays_small() {
        let size = output_size(<Proxy as crate::server::Handler>::call);
        assert!(size <= 6 * 1024, "the request future is {size} bytes");
    }
}
