//! Reading what a request sends: bodies within a limit, a route, a route document and a
//! `match` probe parsed with errors that name the field, `If-Match`, and query parameters.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::ApiError;
use routerd_control::live::LiveQuery;
use routerd_routing::config::{ConfigFile, RouteRule};
use routerd_routing::{BufferedBody, SharedHead};

pub(crate) fn bad_body(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", message.to_string())
}

pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
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

pub(crate) fn if_match(req_headers: &http::HeaderMap) -> Result<Option<u64>, ApiError> {
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

pub(crate) fn query_param<'a>(
    query: Option<&'a str>,
    key: &str,
) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The query of `GET /api/v1/live`: `route=NAME` (repeatable), `contains=TEXT`, `top=N`,
/// `summary=true`.
pub(crate) fn live_query(query: Option<&str>) -> Result<LiveQuery, ApiError> {
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
