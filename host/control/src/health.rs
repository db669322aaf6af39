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

/// The health of every route's endpoints: what the last round found of each endpoint, kept
/// by endpoint (routes share them), and read against the routes being served when asked. So
/// a table of 100,000 routes keeps no health record per route, and an answer shows each
/// endpoint's ejection and requests in flight as they are now.
pub struct HealthChecks {
    proxy: Arc<Proxy>,
    /// By endpoint (its live state's key).
    findings: Mutex<HashMap<Box<str>, Finding>>,
    /// Unix seconds when checking began: the `since` of what was never checked.
    started: u64,
}

/// What the last round found of one endpoint.
#[derive(Debug, Clone, Copy)]
struct Finding {
    up: bool,
    /// The connect time.
    took: Duration,
    /// Unix seconds since `up` holds.
    since: u64,
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

impl HealthChecks {
    /// Starts checking `proxy`'s routes every `interval`.
    pub fn start(proxy: Arc<Proxy>, interval: Duration) -> Arc<Self> {
        let checks = Arc::new(HealthChecks {
            proxy,
            findings: Mutex::new(HashMap::new()),
            started: unix_now(),
        });
        let me = checks.clone();
        tokio::spawn(async move {
            loop {
                me.check_all(interval).await;
                tokio::time::sleep(interval).await;
            }
        });
        checks
    }

    async fn check_all(&self, timeout: Duration) {
        let table = self.proxy.table();
        // Each endpoint once, whatever routes name it: by its state's key, which its live
        // state (the one requests read) is shared under.
        let mut states: HashMap<Box<str>, (String, Arc<EndpointState>)> = HashMap::new();
        for r in table.routes() {
            for e in r.backends.iter().flat_map(|b| b.endpoints.iter()) {
                // Looked up before the key is copied: most routes share their endpoints.
                if !states.contains_key(&e.state.key) {
                    states.insert(e.state.key.clone(), (address(&e.target), e.state.clone()));
                }
            }
        }
        drop(table);
        let mut probes = tokio::task::JoinSet::new();
        for (key, (addr, state)) in states {
            probes.spawn(async move {
                let started = Instant::now();
                let up = matches!(
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                state.set_health(up);
                (key, up, started.elapsed())
            });
        }
        let mut results = Vec::with_capacity(probes.len());
        while let Some(done) = probes.join_next().await {
            if let Ok(result) = done {
                results.push(result);
            }
        }
        let now = unix_now();
        let mut findings = self.findings.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = HashMap::with_capacity(results.len());
        for (key, up, took) in results {
            let since = match findings.get(&key) {
                Some(prev) if prev.up == up => prev.since,
                _ => now,
            };
            found.insert(key, Finding { up, took, since });
        }
        // Endpoints no route names any more are forgotten with the round.
        *findings = found;
    }

    /// Every served route with backends, by name, as its endpoints are now.
    pub fn snapshot(&self) -> Vec<RouteHealth> {
        let table = self.proxy.table();
        let findings = self.findings.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let mut out: Vec<RouteHealth> = table
            .routes()
            .filter_map(|r| {
                let backends = r.backends.as_ref()?;
                let mut since = None::<u64>;
                let endpoints: Vec<EndpointHealth> = backends
                    .endpoints
                    .iter()
                    .map(|e| {
                        let finding = findings.get(&e.state.key).copied();
                        // The route's status holds since its latest endpoint change.
                        let changed = finding.map_or(self.started, |f| f.since);
                        since = Some(since.map_or(changed, |s| s.max(changed)));
                        EndpointHealth {
                            status: match finding {
                                Some(f) if f.up => "up",
                                Some(_) => "down",
                                None => "unknown",
                            },
                            latency_ms: finding
                                .filter(|f| f.up)
                                .map(|f| f.took.as_secs_f64() * 1000.0),
                            target: e.target.authority.to_string(),
                            weight: e.weight,
                            ejected_ms: e.state.ejected_for(now).map(|d| d.as_millis() as u64),
                            outstanding: e.state.outstanding(),
                        }
                    })
                    .collect();
                Some(route_health(
                    &r.name,
                    endpoints,
                    since.unwrap_or(self.started),
                ))
            })
            .collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }
}

/// A route's health from its endpoints': `up` while any is up and not ejected.
fn route_health(name: &str, endpoints: Vec<EndpointHealth>, since: u64) -> RouteHealth {
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
    let first = endpoints.first();
    RouteHealth {
        route: name.to_owned(),
        target: first.map(|e| e.target.clone()).unwrap_or_default(),
        status,
        latency_ms: first.and_then(|e| e.latency_ms),
        since,
        endpoints,
    }
}
