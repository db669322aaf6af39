//! The `match` answer in the admin API's words: routing explains a decision as facts (the
//! decision, each candidate's id and the part of its rule that failed); this names the routes,
//! the decision and each failed matcher as the user wrote it (`matchers[1] (header x-tier)`).

use serde::Serialize;

use routerd_plugins::Plugin;
use routerd_routing::endpoints::{Health, now_ms};
use routerd_routing::{Decision, Explanation, Failure, Route, RouteTable, SharedHead};

/// One candidate route, as the API shows it.
#[derive(Debug, Serialize)]
pub struct CandidateDoc {
    /// The route's name.
    pub route: String,
    /// `matched` or `failed`.
    pub result: &'static str,
    /// The first part of the rule that failed, e.g. `matchers[1] (header x-tier)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// The `match` answer.
#[derive(Debug, Serialize)]
pub struct ExplanationDoc {
    /// `route`, `need_body`, `default_url`, `redirect`, `method_not_allowed`, `options`,
    /// `unsupported_media_type`, `not_acceptable`, `not_found` or `overloaded` (the detail
    /// names the plugin routerd had no capacity to run).
    pub decision: &'static str,
    /// The chosen route, for `route` (and `overloaded`).
    pub route: Option<String>,
    /// The redirect target, the `Allow` list, the media types or the plugin, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The candidates, in the order they were considered.
    pub candidates: Vec<CandidateDoc>,
    /// The chosen route's endpoints and which this request would go to, when it proxies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<BackendsDoc>,
}

/// A route's endpoints as the explanation shows them.
#[derive(Debug, Serialize)]
pub struct BackendsDoc {
    /// `round_robin`, `least_request` or `hash`.
    pub balance: &'static str,
    /// For `hash`: the endpoint this request's key goes to (none without a key, or when no
    /// endpoint can take it); the other policies pick per request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chosen: Option<String>,
    /// Every endpoint, with whether it can take requests now.
    pub endpoints: Vec<EndpointDoc>,
}

/// One endpoint.
#[derive(Debug, Serialize)]
pub struct EndpointDoc {
    /// `scheme://host:port`.
    pub endpoint: String,
    /// Its weight.
    pub weight: u32,
    /// `available`, `down` (health check) or `ejected`.
    pub state: &'static str,
}

/// The backends of `route` for a request with `head`.
fn backends(route: &Route<Plugin>, head: &SharedHead) -> Option<BackendsDoc> {
    let b = route.backends.as_ref()?;
    let now = now_ms();
    let endpoints = b
        .endpoints
        .iter()
        .map(|e| EndpointDoc {
            endpoint: e.state.key.to_string(),
            weight: e.weight,
            state: if e.state.health() == Health::Down {
                "down"
            } else if e.state.ejected_for(now).is_some() {
                "ejected"
            } else {
                "available"
            },
        })
        .collect();
    // Only a hashing route has a key: the other policies pick per request.
    let chosen = b
        .key(&head.parts.headers, head.remote.ip())
        .and_then(|key| b.pick(Some(key), 0).ok())
        .map(|i| b.endpoints[i].state.key.to_string());
    Some(BackendsDoc {
        balance: b.balance.as_str(),
        chosen,
        endpoints,
    })
}

/// `explanation` of a decision of `table` for the request `head`, in the API's words.
pub fn document(
    table: &RouteTable<Plugin>,
    explanation: Explanation,
    head: &SharedHead,
) -> ExplanationDoc {
    let name = |id: u32| table.route(id).name.to_string();
    let candidates = explanation
        .candidates
        .iter()
        .map(|c| CandidateDoc {
            route: name(c.route),
            result: if c.failed.is_none() {
                "matched"
            } else {
                "failed"
            },
            failed: c.failed.map(|f| failure(table.route(c.route), f)),
        })
        .collect();
    let backends = match explanation.decision {
        Decision::Route(id) => backends(table.route(id), head),
        _ => None,
    };
    let (decision, route, detail) = match explanation.decision {
        Decision::Route(id) => ("route", Some(name(id)), None),
        Decision::NeedBody | Decision::NeedPredicates { .. } => ("need_body", None, None),
        Decision::DefaultUrl => ("default_url", None, None),
        Decision::Redirect(status, location) => (
            "redirect",
            None,
            Some(format!("{} {location}", status.as_u16())),
        ),
        Decision::MethodNotAllowed(allow) => ("method_not_allowed", None, Some(allow)),
        Decision::Options(allow) => ("options", None, Some(allow)),
        Decision::UnsupportedMediaType(types) => ("unsupported_media_type", None, Some(types)),
        Decision::NotAcceptable(types) => ("not_acceptable", None, Some(types)),
        Decision::NotFound => ("not_found", None, None),
        Decision::Overloaded { route, plugin } => ("overloaded", Some(name(route)), Some(plugin)),
    };
    ExplanationDoc {
        decision,
        route,
        detail,
        candidates,
        backends,
    }
}

/// What failed, named as the rule has it.
fn failure(route: &Route<Plugin>, failed: Failure) -> String {
    let matcher = |i: usize| {
        let Some(spec) = route.rule.matchers.get(i) else {
            return format!("matchers[{i}]");
        };
        let what = match (&spec.field, &spec.plugin) {
            (Some(f), _) => format!("{} {f}", spec.condition),
            (None, Some(p)) => format!("plugin {p}"),
            _ => spec.condition.clone(),
        };
        format!("matchers[{i}] ({what})")
    };
    match failed {
        Failure::Matcher(i) => matcher(i),
        Failure::NoBody(i) => format!("{} (no body given)", matcher(i)),
        Failure::Consumes => "consumes (the request body's Content-Type)".into(),
        Failure::Produces => "produces (the request's Accept)".into(),
        Failure::Overloaded(i) => format!("{} (could not run: routerd is overloaded)", matcher(i)),
    }
}
