//! The route phases around one context: the request filters (built-in and plugin) in order,
//! the upstream request (or a filter's own answer), then the response filters.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use tracing::warn;

use super::answer::{client_body_failed, rate_limited, reply_response};
use super::balanced::Destination;
use super::body::RequestBody;
use super::compress;
use super::edits::apply_ops;
use super::upstream::{self, UpstreamPath};
use super::{Proxy, Trace};
use routerd_base::Peer;
use routerd_base::ResponseBody;
use routerd_base::{empty, error, full};
use routerd_plugins::Phase;
use routerd_plugins::Plugin;
use routerd_routing::cors::Preflight;
use routerd_routing::filters::BuiltinFilter;
use routerd_routing::ratelimit::Verdict;
use routerd_routing::{
    ExternalRequest, FailurePolicy, FilterCall, Params, RequestAction, ResponseHead, Route,
    RouteFilter, RouteTable,
};

/// One request on its route: what the filters have decided so far about the upstream request.
struct RouteCtx<'a> {
    proxy: &'a Proxy,
    route: &'a Route<Plugin>,
    params: Params<'a>,
    peer: Peer,
    upstream_path: UpstreamPath<'a>,
    upstream_query: Option<Cow<'a, str>>,
    /// The path parameters as plugins take them (empty when the route has no plugin filter).
    owned_params: Vec<(String, String)>,
    /// What `cors` and `compress` filters keep of the request for the response (boxed: most
    /// routes have neither, and this context lives in every request's future).
    kept: Option<Box<KeptForResponse>>,
}

/// What the response phases of built-in filters need of the request.
#[derive(Default)]
struct KeptForResponse {
    /// The request's `Origin`, for `cors` (a preflight it answered keeps none).
    origin: Option<HeaderValue>,
    /// The request's method and `Accept-Encoding`, for `compress`.
    accept_encoding: Option<(http::Method, HeaderValue)>,
}

impl Proxy {
    /// Runs route `id` for a request: request filters, the upstream request unless a filter
    /// answered, response filters.
    pub(super) async fn run_route(
        &self,
        table: &RouteTable<Plugin>,
        id: u32,
        parts: http::request::Parts,
        body: RequestBody,
        peer: Peer,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let route = table.route(id);
        // A clone of the URI shares its bytes: the path and query are borrowed, not copied.
        let uri = parts.uri.clone();
        let path = uri.path();
        let params = table.params(id, path);
        let has_plugin_filters = route
            .filters
            .iter()
            .any(|f| matches!(f, RouteFilter::Plugin(_)));
        let mut ctx = RouteCtx {
            proxy: self,
            route,
            params,
            peer,
            upstream_path: UpstreamPath::Joined(upstream::strip_prefix(
                path,
                route.strip_prefix.as_deref(),
            )),
            upstream_query: uri.query().map(Cow::Borrowed),
            owned_params: if has_plugin_filters {
                params
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            } else {
                Vec::new()
            },
            kept: None,
        };
        let (parts, answer) = ctx.request_filters(parts, trace).await;
        // The response phases read the request too; it is kept only for a filter that has one.
        let response_head = route
            .filters
            .iter()
            .any(|f| matches!(f, RouteFilter::Plugin(c) if c.runs_on_response()))
            .then(|| Arc::new(parts.clone()));
        // A filter's answer goes out as it is; a request over the route's rate limit gets 429.
        let answer = answer.or_else(|| self.over_rate_limit(route, &parts, &ctx.peer, trace));
        let (answer, body) = match (answer, &route.mirror) {
            (None, Some(mirror)) => {
                let path = &ctx.upstream_path;
                let query = ctx.upstream_query.as_deref();
                // Boxed: a cold path, kept out of every request's future.
                let copied = Box::pin(self.mirror(
                    mirror,
                    &route.name,
                    path,
                    query,
                    &parts,
                    body,
                    &ctx.peer,
                ))
                .await;
                match copied {
                    Ok(body) => (None, body),
                    Err(e) => (
                        Some(client_body_failed(&e, Some(&route.name), trace)),
                        RequestBody::whole(Bytes::new()),
                    ),
                }
            }
            (answer, _) => (answer, body),
        };
        let resp = match (answer, &route.backends) {
            (Some(resp), _) => resp,
            (None, Some(backends)) => {
                let dest = Destination {
                    backends,
                    path: &ctx.upstream_path,
                    query: ctx.upstream_query.as_deref(),
                    timeout: route.timeout,
                    route: &route.name,
                };
                self.forward_balanced(dest, parts, body, peer, trace).await
            }
            (None, None) => error(
                StatusCode::NOT_FOUND,
                "the route has no target",
                Some(&route.name),
            ),
        };
        ctx.response_filters(resp, response_head, trace).await
    }
}

impl Proxy {
    /// routerd's 429 when the request is over the route's rate limit.
    fn over_rate_limit(
        &self,
        route: &Route<Plugin>,
        parts: &http::request::Parts,
        peer: &Peer,
        trace: &mut Trace,
    ) -> Option<Response<ResponseBody>> {
        let limit = route.rate_limit.as_ref()?;
        let key = limit.key_of(&parts.headers, peer.addr.ip());
        match limit.check(key) {
            Verdict::Allowed => None,
            Verdict::Limited { retry_after } => {
                Some(rate_limited(&route.name, limit, retry_after, trace))
            }
        }
    }
}

impl RouteCtx<'_> {
    /// The request filters in order; the head they leave, and the answer of the filter that
    /// answered (a redirect, `respond`, a plugin's reply or failure), if one did.
    async fn request_filters(
        &mut self,
        mut parts: http::request::Parts,
        trace: &mut Trace,
    ) -> (http::request::Parts, Option<Response<ResponseBody>>) {
        for f in &self.route.filters {
            let answer = match f {
                RouteFilter::Builtin(b) => self.request_builtin(b, &mut parts),
                RouteFilter::Plugin(call) if call.runs_on_request() => {
                    self.request_plugin(call, &mut parts, trace).await
                }
                // The filter said it has nothing to do on this route's requests.
                RouteFilter::Plugin(_) => None,
            };
            if answer.is_some() {
                return (parts, answer);
            }
        }
        (parts, None)
    }

    /// A built-in filter's request part; `Some` when it answers the request itself.
    fn request_builtin(
        &mut self,
        filter: &BuiltinFilter,
        parts: &mut http::request::Parts,
    ) -> Option<Response<ResponseBody>> {
        match filter {
            BuiltinFilter::SetRequestHeader(name, value) => {
                match HeaderValue::from_str(&value.render(&self.params)) {
                    Ok(v) => {
                        parts.headers.insert(name.clone(), v);
                    }
                    Err(_) => {
                        warn!(route = %self.route.name, header = %name, "filter produced an invalid header value; skipped")
                    }
                }
            }
            BuiltinFilter::RemoveRequestHeader(name) => {
                parts.headers.remove(name);
            }
            BuiltinFilter::SetPath(t) => {
                self.upstream_path = UpstreamPath::Replaced(t.render(&self.params));
            }
            BuiltinFilter::Redirect(status, location) => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = *status;
                if let Ok(v) = HeaderValue::from_str(&location.render(&self.params)) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
                return Some(resp);
            }
            BuiltinFilter::Respond(status, text, content_type) => {
                let mut resp = Response::new(full(text.render(&self.params)));
                *resp.status_mut() = *status;
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
                return Some(resp);
            }
            BuiltinFilter::Cors(policy) => {
                match policy.preflight(&parts.method, &parts.headers) {
                    Some(Preflight::Allowed(headers)) => {
                        let mut resp = Response::new(empty());
                        *resp.status_mut() = StatusCode::NO_CONTENT;
                        resp.headers_mut().extend(headers);
                        return Some(resp);
                    }
                    Some(Preflight::Refused(why)) => {
                        return Some(error(
                            StatusCode::FORBIDDEN,
                            &format!("CORS preflight refused: {why}"),
                            Some(&self.route.name),
                        ));
                    }
                    // Not a preflight: the answer gets the policy's headers, if from an origin.
                    None => {
                        if let Some(origin) = parts.headers.get(header::ORIGIN) {
                            self.kept.get_or_insert_default().origin = Some(origin.clone());
                        }
                    }
                }
            }
            BuiltinFilter::Compress(_) => {
                if let Some(accept) = parts.headers.get(header::ACCEPT_ENCODING) {
                    self.kept.get_or_insert_default().accept_encoding =
                        Some((parts.method.clone(), accept.clone()));
                }
            }
            BuiltinFilter::SetResponseHeader(..) | BuiltinFilter::RemoveResponseHeader(_) => {}
        }
        None
    }

    /// The request the plugin calls see: the head shared, the path as the filters left it.
    fn external(&self, head: Arc<http::request::Parts>) -> ExternalRequest {
        ExternalRequest {
            parts: head,
            remote: self.peer.addr,
            scheme: self.peer.scheme(),
            path: Some(self.upstream_path.as_str().to_owned()),
            params: self.owned_params.clone(),
        }
    }

    /// A plugin filter's request phase; `Some` when it answers (a reply, or its failure).
    async fn request_plugin(
        &mut self,
        call: &FilterCall<Plugin>,
        parts: &mut http::request::Parts,
        trace: &mut Trace,
    ) -> Option<Response<ResponseBody>> {
        let head = Arc::new(std::mem::replace(parts, Request::new(()).into_parts().0));
        let request = self.external(head.clone());
        let result = trace.plugin(Box::pin(call.on_request(request))).await;
        *parts = Arc::try_unwrap(head).unwrap_or_else(|head| (*head).clone());
        let route = &self.route.name;
        match result {
            Ok(RequestAction::Proceed(edits)) => {
                apply_ops(&mut parts.headers, edits.headers, call.name());
                if let Some(p) = edits.path {
                    if p.starts_with('/') {
                        self.upstream_path = UpstreamPath::Replaced(p);
                    } else {
                        warn!(plugin = call.name(), route = %route, path = %p, "plugin set a path without a leading '/'; ignored");
                    }
                }
                if let Some(q) = edits.query {
                    self.upstream_query = (!q.is_empty()).then_some(Cow::Owned(q));
                }
                None
            }
            Ok(RequestAction::Respond(reply)) => Some(reply_response(reply, call.name())),
            Err(failure) if failure.overloaded => {
                warn!(plugin = call.name(), route = %route, reason = %failure, "plugin filter could not run: routerd is overloaded; answering 503");
                Some(
                    self.proxy
                        .overloaded(route, call.name(), Phase::Request, trace),
                )
            }
            Err(failure) => {
                let policy = call.failure_policy();
                warn!(plugin = call.name(), route = %route, failure = failure.kind, reason = %failure, ?policy, "plugin filter failed");
                (policy == FailurePolicy::FailClosed).then(|| filter_failed(route))
            }
        }
    }

    /// The response filters in order, on `resp`; `head` is the request as plugin filters see
    /// it (present when the route has any).
    async fn response_filters(
        &self,
        mut resp: Response<ResponseBody>,
        head: Option<Arc<http::request::Parts>>,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        for f in &self.route.filters {
            match f {
                RouteFilter::Builtin(BuiltinFilter::SetResponseHeader(name, value)) => {
                    if let Ok(v) = HeaderValue::from_str(&value.render(&self.params)) {
                        resp.headers_mut().insert(name.clone(), v);
                    }
                }
                RouteFilter::Builtin(BuiltinFilter::RemoveResponseHeader(name)) => {
                    resp.headers_mut().remove(name);
                }
                RouteFilter::Builtin(BuiltinFilter::Compress(policy)) => {
                    let kept = self.kept.as_ref().and_then(|k| k.accept_encoding.as_ref());
                    let Some((method, accept)) = kept else {
                        continue;
                    };
                    if let Some(encoding) = policy.choose(accept)
                        && policy.applies(method, resp.status(), resp.headers())
                    {
                        resp = compress::compress(resp, encoding);
                    }
                }
                RouteFilter::Builtin(BuiltinFilter::Cors(policy)) => {
                    let origin = self.kept.as_ref().and_then(|k| k.origin.as_ref());
                    for (name, value) in origin
                        .map(|o| policy.response_headers(o))
                        .into_iter()
                        .flatten()
                    {
                        if name == header::VARY {
                            resp.headers_mut().append(name, value);
                        } else {
                            resp.headers_mut().insert(name, value);
                        }
                    }
                }
                RouteFilter::Plugin(call) if call.runs_on_response() => {
                    let Some(head) = &head else { continue };
                    resp = self.response_plugin(call, resp, head.clone(), trace).await;
                }
                RouteFilter::Builtin(_) | RouteFilter::Plugin(_) => {}
            }
        }
        resp
    }

    /// A plugin filter's response phase on `resp`.
    async fn response_plugin(
        &self,
        call: &FilterCall<Plugin>,
        mut resp: Response<ResponseBody>,
        head: Arc<http::request::Parts>,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let view = ResponseHead {
            status: resp.status().as_u16(),
            headers: std::mem::take(resp.headers_mut()),
        };
        let request = self.external(head);
        let (result, view) = trace
            .plugin(Box::pin(call.on_response(request, view)))
            .await;
        *resp.headers_mut() = view.headers;
        let route = &self.route.name;
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
                resp
            }
            Err(failure) if failure.overloaded => {
                warn!(plugin = call.name(), route = %route, reason = %failure, "plugin filter could not run: routerd is overloaded; answering 503");
                self.proxy
                    .overloaded(route, call.name(), Phase::Response, trace)
            }
            Err(failure) => {
                let policy = call.failure_policy();
                warn!(plugin = call.name(), route = %route, failure = failure.kind, reason = %failure, ?policy, "plugin filter failed");
                match policy {
                    FailurePolicy::FailClosed => filter_failed(route),
                    FailurePolicy::FailOpen => resp,
                }
            }
        }
    }
}

/// A fail_closed plugin filter's failure: 500 naming the route.
fn filter_failed(route: &str) -> Response<ResponseBody> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "a plugin filter failed",
        Some(route),
    )
}
