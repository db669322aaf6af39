//! The serde model of a route set: what a config file (or, later, the admin API) says, before any
//! validation. Field names follow the Cube router's route rules, plus our extensions.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A whole config document: `{"routes": [...], "default_url": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The route rules (shared: the tables built from them and the API's listing hold the
    /// same rules, not copies).
    #[serde(default)]
    pub routes: Vec<Arc<RouteRule>>,
    /// Where requests go when no route (and no default rule) matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_url: Option<String>,
    /// How many body bytes a body matcher may read (default 1 MiB); a larger body never matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
}

/// A route document with its rules borrowed: what a table is built from, so a document made
/// of several sources (the config file's routes and the API's) is not copied to be built.
#[derive(Debug, Clone, Default)]
pub struct DocumentRef<'a> {
    /// The route rules.
    pub routes: Vec<&'a Arc<RouteRule>>,
    /// As [`ConfigFile::default_url`].
    pub default_url: Option<&'a str>,
    /// As [`ConfigFile::max_body_bytes`].
    pub max_body_bytes: Option<usize>,
}

impl<'a> DocumentRef<'a> {
    /// `file`'s settings, and none of its routes.
    pub fn settings_of(file: &'a ConfigFile) -> DocumentRef<'a> {
        DocumentRef {
            routes: Vec::new(),
            default_url: file.default_url.as_deref(),
            max_body_bytes: file.max_body_bytes,
        }
    }
}

impl<'a> From<&'a ConfigFile> for DocumentRef<'a> {
    fn from(file: &'a ConfigFile) -> DocumentRef<'a> {
        DocumentRef {
            routes: file.routes.iter().collect(),
            ..DocumentRef::settings_of(file)
        }
    }
}

/// One route rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Unique name: ASCII letters, digits, `-`, `_`.
    pub name: String,
    /// The backend base URL (`http://host:port/base`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_url: Option<String>,
    /// Several backends, instead of `target_url`: requests are spread over them by `balance`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "exact_vec"
    )]
    pub targets: Vec<TargetSpec>,
    /// How a request picks one of `targets` (default: weighted round robin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<Box<BalanceSpec>>,
    /// Passive health: endpoints that keep failing are taken out for a while.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<Box<OutlierSpec>>,
    /// Retrying a failed request (on another endpoint when there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Box<RetrySpec>>,
    /// A token bucket per client (or per header value): over it, 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<Box<RateLimitSpec>>,
    /// A share of requests copied to another backend, whose answer is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Box<MirrorSpec>>,
    /// Conditions that must all hold.
    #[serde(default, deserialize_with = "exact_vec")]
    pub matchers: Vec<MatcherSpec>,
    /// 0..=1000; higher wins.
    #[serde(default)]
    pub priority: i64,
    /// The fallback route used when no other route matches (its matchers are ignored).
    #[serde(default)]
    pub default_rule: bool,
    /// A path prefix removed before the path is joined to the target's base path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strip_prefix: Option<String>,
    /// Disabled routes are kept but never match.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Filters, run in order.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "exact_vec"
    )]
    pub filters: Vec<FilterSpec>,
    /// Deadline for the backend's response head, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Media types of request bodies the route takes (`application/json`, `text/*`); a request
    /// with a body of another type skips it (415 when every route skips it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumes: Vec<String>,
    /// Media types the route answers with; a request whose `Accept` allows none of them skips
    /// it (406 when every route skips it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub produces: Vec<String>,
    /// For an `https://` target: a PEM file of the CA certificates that may sign the backend's
    /// certificate, instead of Mozilla's roots. Read when the route set is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<String>,
    /// For an `https://` target: the name sent as SNI and checked in the backend's certificate,
    /// instead of the target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// For an `https://` target: accept any certificate. Only for tests and broken backends; a
    /// warning is logged each time a route set with it is loaded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure_skip_verify: bool,
    /// `http1` (the default) or `h2`: the protocol spoken to the backend (`h2` over `http://`
    /// is HTTP/2 with prior knowledge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_protocol: Option<String>,
    /// Routes marked as system routes cannot be changed through the admin API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
}

impl RouteRule {
    /// Whether a matcher or filter of the rule names plugin `name`.
    pub fn uses_plugin(&self, name: &str) -> bool {
        self.matchers
            .iter()
            .any(|m| m.plugin.as_deref() == Some(name))
            || self
                .filters
                .iter()
                .any(|f| f.plugin.as_deref() == Some(name))
    }
}

fn default_true() -> bool {
    true
}

/// A list without the spare room its parse left: a route set keeps every rule for as long as
/// it serves it, and a list grown item by item holds room for four (matchers are 128 bytes).
fn exact_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    let mut items = Vec::<T>::deserialize(deserializer)?;
    items.shrink_to_fit();
    Ok(items)
}

/// One matcher: `{"condition": "header", "field": "X-Tier", "pattern": "gold", "is_regex": false}`,
/// or a plugin predicate: `{"condition": "plugin", "plugin": "geo", "args": ["DE"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatcherSpec {
    /// What is matched: path, path_prefix, host, method, header, query_param, cookie, body_field,
    /// body_regex, remote_addr, plugin.
    pub condition: String,
    /// The header / query key / cookie name / JSON path the condition looks at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The value (or regex, or pattern) to match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Whether `pattern` is a regular expression.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_regex: bool,
    /// The plugin name, for `condition: plugin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Arguments passed to the plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// One filter: `{"name": "set_request_header", "args": ["X-A", "v"]}` or
/// `{"plugin": "add-auth", "args": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// A built-in filter's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A plugin filter's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// The filter's arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

/// One of a route's `targets`: `{"url": "http://10.0.0.1:8080", "weight": 2}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The backend base URL, as `target_url`.
    pub url: String,
    /// Its share of requests relative to the others (1..=100, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// `{"policy": "round_robin"}`, `{"policy": "least_request"}` or
/// `{"policy": "hash", "hash_on": "header:x-user" | "cookie:session" | "client_addr"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceSpec {
    /// `round_robin` (weighted, the default), `least_request` (the less busy of two picked at
    /// random, by weight) or `hash` (the same key always goes to the same endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// For `hash`: what the key is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<String>,
}

/// Outlier ejection: `{"consecutive_failures": 5, "base_ejection_ms": 30000}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierSpec {
    /// Failures in a row that take an endpoint out (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Whether a 5xx answer counts as a failure (default true; connect errors and timeouts
    /// always do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_5xx: Option<bool>,
    /// The first ejection's length, doubled for each further one (default 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_ms: Option<u64>,
    /// The longest ejection (default 300000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_ms: Option<u64>,
    /// The largest share of the route's endpoints out at once, in percent (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejected_percent: Option<u32>,
}

/// Retries: `{"attempts": 2, "on": ["connect", "503"], "per_try_timeout_ms": 500}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Tries after the first (1..=5, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What is retried: `connect` (refused, unreachable), `reset` (the connection failed
    /// after it was made, before an answer), `timeout` (no answer head in time), `502`, `503`,
    /// `504`. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
    /// Each try's deadline for the answer head (default: the route's `timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
    /// Retry methods that are not idempotent (POST, PATCH) too (default false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub non_idempotent: bool,
    /// Retries in flight may be at most this share of the route's requests in flight, in
    /// percent (at least 3 retries are always allowed; default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<u32>,
    /// A request body is kept for a retry only up to this size (default 65536); a request with
    /// a larger body, or one of unknown length, is not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_bytes: Option<usize>,
}

/// `{"requests_per_second": 10, "burst": 20, "key": "client_addr"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Tokens added per second.
    pub requests_per_second: f64,
    /// The bucket's size: how many requests may come at once (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// `client_addr` (the default) or `header:NAME`: the header as the request filters left
    /// it, so a plugin filter before it can compute the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The most keys kept (default 100000); past it, idle keys are forgotten first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
}

/// `{"url": "http://10.0.0.9:8080", "percent": 10}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    /// Where copies go (a backend base URL, as `target_url`).
    pub url: String,
    /// The share of requests copied, 0 to 100 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
}
