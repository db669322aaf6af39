//! The answers routerd gives itself rather than a backend: its small JSON errors, the answers
//! to decisions that name no route (redirect, 405, OPTIONS, 415, 406, 404), a plugin's reply,
//! routerd's own 503 when it had no capacity to run a plugin call or no endpoint could take a
//! request, its 429 over a route's rate limit, and the answers to a client whose request body
//! broke.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ClientBodyError;
use super::edits::apply_ops;
use super::{Proxy, Trace};
use routerd_base::{ResponseBody, empty, error, full, json_response};
use routerd_plugins::Phase;
use routerd_routing::endpoints::NoEndpoint;
use routerd_routing::ratelimit::RateLimit;
use routerd_routing::{Decision, HeaderOp, Reply};
use std::time::Duration;
use tracing::warn;

/// The answer to a decision that names no route to run (`Route`, `DefaultUrl` and
/// `Overloaded` are the proxy's to handle).
pub(super) fn for_decision(decision: Decision) -> Response<ResponseBody> {
    match decision {
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
        Decision::Route(_)
        | Decision::DefaultUrl
        | Decision::Overloaded { .. }
        | Decision::NotFound
        | Decision::NeedBody
        | Decision::NeedPredicates { .. } => error(StatusCode::NOT_FOUND, "no route matches", None),
    }
}

impl Proxy {
    /// routerd's own answer when it had no capacity to run `plugin`'s call for `route`: 503
    /// with `Retry-After`, counted and logged as overloaded. Never the plugin's failure policy:
    /// the plugin did nothing wrong, and a silent no-match would be a wrong routing answer.
    pub(super) fn overloaded(
        &self,
        route: &str,
        plugin: &str,
        phase: Phase,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        if let Some(m) = &self.metrics {
            m.overloaded(route, plugin, phase.as_str());
        }
        trace.error = Some("overloaded");
        let doc = serde_json::json!({
            "error": "routerd is overloaded: no capacity to run a plugin call within its queue_ms",
            "route": route,
            "plugin": plugin,
        });
        retry_after(json_response(StatusCode::SERVICE_UNAVAILABLE, &doc), 1)
    }

    /// routerd's own answer when none of `route`'s endpoints can take a request: 503 with
    /// `Retry-After` and why, counted and logged.
    pub(super) fn no_endpoint(
        &self,
        route: &str,
        why: NoEndpoint,
        trace: &mut Trace,
    ) -> Response<ResponseBody> {
        let why = why.to_string();
        warn!(route, "{why}");
        trace.error = Some("no_endpoint");
        if let Some(m) = &self.metrics {
            m.no_endpoint(route);
        }
        retry_after(error(StatusCode::SERVICE_UNAVAILABLE, &why, Some(route)), 1)
    }
}

/// routerd's 429 for a request over `limit` of `route`, the next token `wait` away: with
/// `Retry-After` and the IETF draft's `RateLimit-*` headers.
pub(super) fn rate_limited(
    route: &str,
    limit: &RateLimit,
    wait: Duration,
    trace: &mut Trace,
) -> Response<ResponseBody> {
    trace.error = Some("rate_limited");
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = retry_after(
        error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded",
            Some(route),
        ),
        secs,
    );
    let headers = resp.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(limit.burst));
    headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
    headers.insert("ratelimit-reset", HeaderValue::from(secs));
    if let Ok(policy) = HeaderValue::from_str(&limit.policy()) {
        headers.insert("ratelimit-policy", policy);
    }
    resp
}

/// `resp` with `Retry-After: secs`.
fn retry_after(mut resp: Response<ResponseBody>, secs: u64) -> Response<ResponseBody> {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// The answer when the client's own request body failed, read for a matcher or forwarded:
/// 400 for a malformed body (nginx answers so too), 499 when the client went away (nginx's
/// "client closed request", for the access log and metrics: nobody is left to read it). The
/// client's fault, so it is logged as such and never as a backend failure.
pub(super) fn client_body_failed(
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

/// A JSON error with a list of media types under `key`.
fn error_with(status: StatusCode, message: &str, key: &str, types: &str) -> Response<ResponseBody> {
    let list: Vec<&str> = types.split(", ").collect();
    json_response(status, &serde_json::json!({ "error": message, key: list }))
}

/// A plugin's reply as a response.
pub(super) fn reply_response(reply: Reply, plugin: &str) -> Response<ResponseBody> {
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
