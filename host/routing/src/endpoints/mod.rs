//! A route's backends: one or more endpoints (`target_url`, or `targets` with weights), how a
//! request picks one (`balance`), when an endpoint that keeps failing is taken out (`outlier`),
//! and when a failed request is tried again (`retries`, in `retry`). Compiled from the route
//! rule with field-named errors; the endpoints' live state comes from [`EndpointStates`],
//! shared with every later table, so a route change keeps what routerd learned about them.

mod balance;
mod retry;
mod state;

use balance::Standing;
pub use balance::{Balance, HashOn, stable_hash};
pub use retry::{BudgetGuard, RetryOn, RetryPolicy};
pub use state::{EndpointState, EndpointStates, Health, InFlight, now_ms};

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderName;

use crate::backend::BackendConnection;
use crate::config::{ErrorCode, FieldError, RouteRule};
use crate::route::Target;

/// The most endpoints a route may have (a request's tried endpoints are a 64-bit set).
pub const MAX_ENDPOINTS: usize = 64;

/// The largest weight.
pub const MAX_WEIGHT: u32 = 100;

/// One endpoint of a route.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it is and how to connect.
    pub target: Target,
    /// Its share relative to the route's other endpoints.
    pub weight: u32,
    /// Its live state, shared with every table that names it.
    pub state: Arc<EndpointState>,
    /// Its seed for hashing: from its URL, so a key's endpoint does not depend on order.
    seed: u64,
}

/// Passive health: when an endpoint is taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outlier {
    /// Failures in a row that eject it.
    pub consecutive_failures: u32,
    /// Whether a 5xx answer is a failure.
    pub on_5xx: bool,
    /// The first ejection's length.
    pub base: Duration,
    /// The longest ejection.
    pub max: Duration,
    /// The largest share of endpoints out at once, in percent.
    pub max_ejected_percent: u32,
}

/// A route's endpoints and the policies over them.
#[derive(Debug)]
pub struct Backends {
    /// The endpoints, in the route's order.
    pub endpoints: Box<[Endpoint]>,
    /// How a request picks one.
    pub balance: Balance,
    /// Passive health, when the route asks for it.
    pub outlier: Option<Outlier>,
    /// Retries, when the route asks for them.
    pub retry: Option<RetryPolicy>,
    order: Box<[u16]>,
    next: AtomicUsize,
    /// Retries made, by [`RetryOn`].
    retries: [AtomicU64; 6],
    /// Retries the budget refused.
    budget_exhausted: AtomicU64,
}

/// Why no endpoint can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEndpoint {
    /// Endpoints the health check finds down.
    pub down: usize,
    /// Endpoints ejected for failing.
    pub ejected: usize,
    /// Endpoints this request already tried.
    pub tried: usize,
}

impl std::fmt::Display for NoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no endpoint can take the request: {} down by the health check, {} ejected for failing, {} already tried",
            self.down, self.ejected, self.tried
        )
    }
}

impl Backends {
    /// The hashed key of a request, for a hashing route.
    pub fn key(&self, headers: &http::HeaderMap, client: IpAddr) -> Option<u64> {
        match &self.balance {
            Balance::Hash(on) => on.key(headers, client),
            _ => None,
        }
    }

    /// The endpoint for a request with `key` (see [`Backends::key`]) that has tried the
    /// endpoints in `tried` (bit `i`: endpoint `i`), or why there is none.
    pub fn pick(&self, key: Option<u64>, tried: u64) -> Result<usize, NoEndpoint> {
        // A route's only endpoint, never ejected: the common case, without a clock or a cursor.
        if self.endpoints.len() == 1 && self.outlier.is_none() {
            return Ok(0);
        }
        let now = now_ms();
        let eps = &self.endpoints;
        let found = match (&self.balance, key) {
            (Balance::Hash(_), Some(key)) => balance::rendezvous(eps, key, tried, now),
            (Balance::LeastRequest, _) => balance::least_request(eps, tried, now),
            _ => balance::round_robin(eps, &self.order, &self.next, tried, now),
        };
        found.ok_or_else(|| self.why_none(tried, now))
    }

    fn why_none(&self, tried: u64, now: u64) -> NoEndpoint {
        let mut why = NoEndpoint {
            down: 0,
            ejected: 0,
            tried: 0,
        };
        for i in 0..self.endpoints.len() {
            match balance::standing(&self.endpoints, i, tried, now) {
                Standing::Tried => why.tried += 1,
                Standing::Down => why.down += 1,
                Standing::Ejected => why.ejected += 1,
                Standing::Usable => {}
            }
        }
        why
    }

    /// Records how a request to endpoint `i` ended (`failed`: a connect error, reset or
    /// timeout, or a 5xx the route counts); ejects the endpoint when it has failed too often
    /// in a row and the route's share of ejected endpoints allows. `true` when it was ejected.
    pub fn record(&self, i: usize, failed: bool) -> bool {
        let Some(e) = self.endpoints.get(i) else {
            return false;
        };
        if !failed {
            e.state.succeeded();
            return false;
        }
        let Some(outlier) = &self.outlier else {
            e.state.failed(0);
            return false;
        };
        if !e.state.failed(outlier.consecutive_failures) {
            return false;
        }
        let now = now_ms();
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.state.ejected_for(now).is_some())
            .count();
        let most = self.endpoints.len() * outlier.max_ejected_percent as usize / 100;
        ejected < most && e.state.eject(now, outlier.base, outlier.max)
    }

    /// Counts a retry for `reason`.
    pub fn note_retry(&self, reason: RetryOn) {
        self.retries[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a retry the budget refused.
    pub fn note_budget_exhausted(&self) {
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries made for each reason, as (reason, count).
    pub fn retries(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RetryOn::ALL
            .iter()
            .map(|(r, name)| (*name, self.retries[*r as usize].load(Ordering::Relaxed)))
    }

    /// Retries the budget refused.
    pub fn budget_exhausted(&self) -> u64 {
        self.budget_exhausted.load(Ordering::Relaxed)
    }

    /// Whether a 5xx from an endpoint counts as its failure.
    pub fn counts_5xx(&self) -> bool {
        self.outlier.as_ref().is_some_and(|o| o.on_5xx)
    }
}

/// A setting is wrong.
pub(super) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError::new(field, ErrorCode::InvalidBackends, reason)
}

/// Compiles a rule's backends: `None` without `target_url` or `targets`, else the endpoints
/// with their states from `states` and the policies, or every field at fault.
pub fn compile(
    rule: &RouteRule,
    states: &EndpointStates,
) -> Result<Option<Backends>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let urls: Vec<(String, &str, u32)> = match (&rule.target_url, rule.targets.as_slice()) {
        (Some(_), [_, ..]) => {
            return Err(vec![invalid(
                "targets",
                "give target_url or targets, not both",
            )]);
        }
        (Some(url), []) => vec![("target_url".to_owned(), url.as_str(), 1)],
        (None, []) => Vec::new(),
        (None, targets) => {
            if targets.len() > MAX_ENDPOINTS {
                errors.push(invalid(
                    "targets",
                    format!(
                        "{} targets; a route may have at most {MAX_ENDPOINTS}",
                        targets.len()
                    ),
                ));
            }
            let mut list = Vec::with_capacity(targets.len());
            for (i, t) in targets.iter().enumerate() {
                let weight = t.weight.unwrap_or(1);
                if !(1..=MAX_WEIGHT).contains(&weight) {
                    errors.push(invalid(
                        format!("targets[{i}].weight"),
                        format!("{weight} is outside 1..={MAX_WEIGHT}"),
                    ));
                }
                if targets[..i].iter().any(|o| o.url == t.url) {
                    errors.push(invalid(format!("targets[{i}].url"), "listed twice"));
                }
                list.push((format!("targets[{i}].url"), t.url.as_str(), weight));
            }
            list
        }
    };
    let mut endpoints = Vec::with_capacity(urls.len());
    for (field, url, weight) in urls {
        match endpoint(rule, &field, url, weight, states) {
            Ok(e) => endpoints.push(e),
            Err(e) => errors.push(e),
        }
    }
    let balance = balance_of(rule).map_err(|e| errors.push(e)).ok();
    let outlier = outlier_of(rule).map_err(|e| errors.push(e)).ok().flatten();
    let retry = retry::retry_of(rule)
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
    if endpoints.is_empty() {
        for (field, set) in [
            ("balance", rule.balance.is_some()),
            ("outlier", rule.outlier.is_some()),
            ("retries", rule.retries.is_some()),
        ] {
            if set {
                errors.push(invalid(field, "needs target_url or targets"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if endpoints.is_empty() {
        return Ok(None);
    }
    let weights: Vec<u32> = endpoints.iter().map(|e: &Endpoint| e.weight).collect();
    Ok(Some(Backends {
        endpoints: endpoints.into(),
        balance: balance.unwrap_or(Balance::RoundRobin),
        outlier,
        retry,
        order: balance::schedule(&weights),
        next: AtomicUsize::new(0),
        retries: Default::default(),
        budget_exhausted: AtomicU64::new(0),
    }))
}

fn endpoint(
    rule: &RouteRule,
    field: &str,
    url: &str,
    weight: u32,
    states: &EndpointStates,
) -> Result<Endpoint, FieldError> {
    let mut target = Target::parse(url)
        .map_err(|reason| FieldError::new(field, ErrorCode::InvalidUrl, reason))?;
    if let Some(c) = BackendConnection::from_rule(rule, &target.scheme)? {
        target.connection = Some(c);
    }
    let key = format!("{}://{}", target.scheme, target.authority);
    Ok(Endpoint {
        state: states.get(&key),
        seed: stable_hash(url.as_bytes()),
        target,
        weight,
    })
}

fn balance_of(rule: &RouteRule) -> Result<Balance, FieldError> {
    let Some(spec) = &rule.balance else {
        return Ok(Balance::RoundRobin);
    };
    let policy = spec.policy.as_deref().unwrap_or("round_robin");
    if policy != "hash" && spec.hash_on.is_some() {
        return Err(invalid("balance.hash_on", "only the hash policy uses it"));
    }
    match policy {
        "round_robin" => Ok(Balance::RoundRobin),
        "least_request" => Ok(Balance::LeastRequest),
        "hash" => {
            let on = spec.hash_on.as_deref().ok_or_else(|| {
                invalid(
                    "balance.hash_on",
                    "missing: header:NAME, cookie:NAME or client_addr",
                )
            })?;
            let hash_on = match on.split_once(':') {
                None if on == "client_addr" => HashOn::ClientAddr,
                Some(("header", name)) => {
                    HashOn::Header(HeaderName::try_from(name).map_err(|_| {
                        invalid("balance.hash_on", format!("{name:?} is not a header name"))
                    })?)
                }
                Some(("cookie", name)) if !name.is_empty() => HashOn::Cookie(name.into()),
                _ => {
                    return Err(invalid(
                        "balance.hash_on",
                        format!("{on:?}: use header:NAME, cookie:NAME or client_addr"),
                    ));
                }
            };
            Ok(Balance::Hash(hash_on))
        }
        other => Err(invalid(
            "balance.policy",
            format!("{other:?}: use round_robin, least_request or hash"),
        )),
    }
}

fn outlier_of(rule: &RouteRule) -> Result<Option<Outlier>, FieldError> {
    let Some(spec) = &rule.outlier else {
        return Ok(None);
    };
    let consecutive_failures = spec.consecutive_failures.unwrap_or(5);
    if consecutive_failures == 0 {
        return Err(invalid(
            "outlier.consecutive_failures",
            "must be at least 1 (leave outlier out to turn it off)",
        ));
    }
    let base = spec.base_ejection_ms.unwrap_or(30_000);
    let max = spec.max_ejection_ms.unwrap_or(300_000);
    if base == 0 {
        return Err(invalid("outlier.base_ejection_ms", "must be at least 1"));
    }
    if max < base {
        return Err(invalid(
            "outlier.max_ejection_ms",
            format!("{max} is below base_ejection_ms ({base})"),
        ));
    }
    let percent = spec.max_ejected_percent.unwrap_or(50);
    if percent > 100 {
        return Err(invalid(
            "outlier.max_ejected_percent",
            format!("{percent} is above 100"),
        ));
    }
    Ok(Some(Outlier {
        consecutive_failures,
        on_5xx: spec.on_5xx.unwrap_or(true),
        base: Duration::from_millis(base),
        max: Duration::from_millis(max),
        max_ejected_percent: percent,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(extra: serde_json::Value) -> RouteRule {
        let mut doc = serde_json::json!({"name": "r", "matchers": []});
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    fn backends(extra: serde_json::Value, states: &EndpointStates) -> Backends {
        compile(&rule(extra), states)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .unwrap_or_else(|| panic!("no backends"))
    }

    fn three() -> serde_json::Value {
        serde_json::json!({"targets": [
            {"url": "http://a:1", "weight": 3},
            {"url": "http://b:1"},
            {"url": "http://c:1", "weight": 2},
        ]})
    }

    #[test]
    fn round_robin_follows_the_weights_and_skips_what_is_out() {
        let states = EndpointStates::default();
        let b = backends(three(), &states);
        let mut counts = [0; 3];
        for _ in 0..600 {
            counts[b.pick(None, 0).unwrap_or_else(|e| panic!("{e}"))] += 1;
        }
        assert_eq!(counts, [300, 100, 200]);
        b.endpoints[0].state.set_health(false);
        for _ in 0..60 {
            assert_ne!(b.pick(None, 0), Ok(0), "a down endpoint is skipped");
        }
        assert_ne!(b.pick(None, 0b010), Ok(1), "a tried endpoint is skipped");
        let single = backends(serde_json::json!({"target_url": "http://a:1"}), &states);
        assert_eq!(
            single.pick(None, 0),
            Ok(0),
            "a route's only endpoint is always tried"
        );
        b.endpoints[1].state.set_health(false);
        b.endpoints[2].state.set_health(false);
        assert_eq!(
            b.pick(None, 0),
            Err(NoEndpoint {
                down: 3,
                ejected: 0,
                tried: 0
            })
        );
    }

    #[test]
    fn least_request_prefers_the_less_busy() {
        let states = EndpointStates::default();
        let mut spec = three();
        spec["targets"] = serde_json::json!([
            {"url": "http://a:1"}, {"url": "http://b:1"}, {"url": "http://c:1"}
        ]);
        spec["balance"] = serde_json::json!({"policy": "least_request"});
        let b = backends(spec, &states);
        let _busy: Vec<_> = (0..5)
            .flat_map(|_| [b.endpoints[0].state.begin(), b.endpoints[1].state.begin()])
            .collect();
        let idle = (0..600).filter(|_| b.pick(None, 0) == Ok(2)).count();
        // Two of three random pairs hold c, and c wins every pair it is in.
        assert!((340..460).contains(&idle), "c chosen {idle} of 600");
    }

    #[test]
    fn a_key_stays_and_only_a_leaving_endpoints_keys_move() {
        let states = EndpointStates::default();
        let mut spec = three();
        spec["balance"] = serde_json::json!({"policy": "hash", "hash_on": "header:x-user"});
        let all = backends(spec.clone(), &states);
        let keys: Vec<u64> = (0..3000u64)
            .map(|k| stable_hash(&k.to_le_bytes()))
            .collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|k| all.pick(Some(*k), 0).unwrap_or(9))
            .collect();
        for (k, i) in keys.iter().zip(&before) {
            assert_eq!(all.pick(Some(*k), 0), Ok(*i), "a key stays put");
        }
        let share = |i| before.iter().filter(|b| **b == i).count();
        assert!(
            (1300..1700).contains(&share(0)),
            "weight 3 of 6: {}",
            share(0)
        );
        // c leaves: a document without it.
        spec["targets"] =
            serde_json::json!([{"url": "http://a:1", "weight": 3}, {"url": "http://b:1"}]);
        let two = backends(spec, &states);
        for (k, i) in keys.iter().zip(&before) {
            let now = two.pick(Some(*k), 0).unwrap_or(9);
            if *i != 2 {
                assert_eq!(now, *i, "only c's keys move");
            }
        }
    }

    #[test]
    fn ejection_respects_the_share_and_states_outlive_a_table() {
        let states = EndpointStates::default();
        let mut spec = three();
        spec["outlier"] = serde_json::json!({"consecutive_failures": 2, "base_ejection_ms": 60000});
        let b = backends(spec.clone(), &states);
        assert!(!b.record(0, true));
        assert!(b.record(0, true), "ejected at the second failure in a row");
        assert!(
            !b.record(1, true) && !b.record(1, true),
            "50% of 3: one may be out"
        );
        let again = backends(spec, &states);
        assert!(
            again.endpoints[0].state.ejected_for(now_ms()).is_some(),
            "a rebuilt table sees the ejection"
        );
    }

    #[test]
    fn errors_name_their_field() {
        let field = |extra: serde_json::Value| {
            compile(&rule(extra), &EndpointStates::default())
                .err()
                .map(|e| {
                    e.iter()
                        .map(|e| e.field.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let t = serde_json::json!([{"url": "http://a:1"}]);
        assert_eq!(
            field(serde_json::json!({"target_url": "http://a:1", "targets": t})),
            "targets"
        );
        assert_eq!(
            field(serde_json::json!({"targets": [{"url": "http://a:1", "weight": 0}]})),
            "targets[0].weight"
        );
        assert_eq!(
            field(serde_json::json!({"targets": [{"url": "nope"}]})),
            "targets[0].url"
        );
        assert_eq!(
            field(serde_json::json!({"targets": t, "balance": {"policy": "hash"}})),
            "balance.hash_on"
        );
        assert_eq!(
            field(serde_json::json!({"targets": t, "retries": {"on": ["500"]}})),
            "retries.on[0]"
        );
        assert_eq!(
            field(serde_json::json!({"retries": {"attempts": 1}})),
            "retries"
        );
    }

    #[test]
    fn the_retry_budget_bounds_retries_in_flight() {
        let states = EndpointStates::default();
        let mut spec = three();
        spec["retries"] = serde_json::json!({"budget_percent": 10});
        let b = backends(spec, &states);
        let Some(r) = &b.retry else { panic!("retries") };
        let requests: Vec<_> = (0..50).map(|_| r.begin_request()).collect();
        let retries: Vec<_> = (0..10).filter_map(|_| r.begin_retry()).collect();
        assert_eq!(retries.len(), 5, "10% of 50 in flight");
        drop(retries);
        drop(requests);
        let few: Vec<_> = (0..10).filter_map(|_| r.begin_retry()).collect();
        assert_eq!(few.len(), 3, "at least 3 always");
        assert!(r.method_allowed(&http::Method::GET) && !r.method_allowed(&http::Method::POST));
    }
}
