//! Active health checks: every interval, a TCP connect to every endpoint of every route,
//! recording up/down, the connect latency and since when the status holds (after godoxy's route
//! registry). Each endpoint is probed once per round, however many routes share it, and its
//! finding goes into the endpoint's live state, which the request path reads: a down endpoint
//! is skipped. A route is `up` while any of its endpoints can take requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use routerd_proxy::Proxy;
use routerd_routing::Target;
use routerd_routing::endpoints::{EndpointState, now_ms};

/// One endpoint's health, as a route sees it.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointHealth {
    /// `host:port`.
    pub target: String,
    /// `up`, `down` or `unknown` (not checked yet): the health check's finding.
    pub status: &'static str,
    /// The last connect latency, when up.
    pub latency_ms: Option<f64>,
    /// Its weight in the route.
    pub weight: u32,
    /// Whether it is out for failing requests (outlier ejection), and for how much longer.
    pub ejected_ms: Option<u64>,
    /// Requests in flight to it.
    pub outstanding: u32,
}

/// One route's backend health.
#[derive(Debug, Clone, Serialize)]
pub struct RouteHealth {
    /// The route.
    pub route: String,
    /// The first endpoint's `host:port` (the route's only one without `targets`).
    pub target: String,
    /// `up` while any endpoint is up and not ejected, `down` when none is, `unknown` before
    /// the first check.
    pub status: &'static str,
    /// The first endpoint's last connect latency, when up.
    pub latency_ms: Option<f64>,
    /// Unix seconds since the status last changed.
    pub since: u64,
    /// Every endpoint.
    pub endpoints: Vec<EndpointHealth>,
}

/// The health of every route's endpoints.
#[derive(Default)]
pub struct HealthChecks {
    routes: Mutex<HashMap<String, RouteHealth>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `host:port` of a target, the port its scheme's when the URL names none.
fn address(target: &Target) -> String {
    let default = if target.scheme.as_str() == "https" {
        443
    } else {
        80
    };
    let port = target.authority.port_u16().unwrap_or(default);
    format!("{}:{port}", target.authority.host())
}

/// One endpoint's probe result: up, and the connect time.
type Probe = (bool, Duration);

impl HealthChecks {
    /// Starts checking `proxy`'s routes every `interval`.
    pub fn start(proxy: Arc<Proxy>, interval: Duration) -> Arc<Self> {
        let checks = Arc::new(HealthChecks::default());
        let me = checks.clone();
        tokio::spawn(async move {
            loop {
                me.check_all(&proxy, interval).await;
                tokio::time::sleep(interval).await;
            }
        });
        checks
    }

    async fn check_all(&self, proxy: &Proxy, timeout: Duration) {
        let table = proxy.table();
        // Each endpoint once, whatever routes name it: by its state's key, which its live
        // state (the one requests read) is shared under.
        let mut states: HashMap<Box<str>, (String, Arc<EndpointState>)> = HashMap::new();
        for r in table.routes() {
            for e in r.backends.iter().flat_map(|b| b.endpoints.iter()) {
                states
                    .entry(e.state.key.clone())
                    .or_insert_with(|| (address(&e.target), e.state.clone()));
            }
        }
        let mut probes = tokio::task::JoinSet::new();
        for (key, (addr, state)) in states {
            probes.spawn(async move {
                let started = Instant::now();
                let up = matches!(
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                state.set_health(up);
                (key, (up, started.elapsed()))
            });
        }
        let mut found: HashMap<Box<str>, Probe> = HashMap::new();
        while let Some(done) = probes.join_next().await {
            if let Ok((key, probe)) = done {
                found.insert(key, probe);
            }
        }
        let now = now_ms();
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::with_capacity(routes.len());
        for r in table.routes() {
            let Some(backends) = &r.backends else {
                continue;
            };
            let endpoints: Vec<EndpointHealth> = backends
                .endpoints
                .iter()
                .map(|e| {
                    let target = e.target.authority.to_string();
                    let probe = found.get(&e.state.key).copied();
                    EndpointHealth {
                        status: match probe {
                            Some((true, _)) => "up",
                            Some((false, _)) => "down",
                            None => "unknown",
                        },
                        latency_ms: probe
                            .filter(|(up, _)| *up)
                            .map(|(_, took)| took.as_secs_f64() * 1000.0),
                        target,
                        weight: e.weight,
                        ejected_ms: e.state.ejected_for(now).map(|d| d.as_millis() as u64),
                        outstanding: e.state.outstanding(),
                    }
                })
                .collect();
            let status = if endpoints
                .iter()
                .any(|e| e.status == "up" && e.ejected_ms.is_none())
            {
                "up"
            } else if endpoints.iter().all(|e| e.status == "unknown") {
                "unknown"
            } else {
                "down"
            };
            let name = r.name.to_string();
            let first = endpoints.first();
            let target = first.map(|e| e.target.clone()).unwrap_or_default();
            let since = match routes.get(&name) {
                Some(prev) if prev.status == status && prev.target == target => prev.since,
                _ => unix_now(),
            };
            let latency_ms = first.and_then(|e| e.latency_ms);
            seen.insert(
                name.clone(),
                RouteHealth {
                    route: name,
                    target,
                    status,
                    latency_ms,
                    since,
                    endpoints,
                },
            );
        }
        *routes = seen;
    }

    /// Every checked route, by name.
    pub fn snapshot(&self) -> Vec<RouteHealth> {
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<RouteHealth> = routes.values().cloned().collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }
}
