//! Active health checks: every interval, a TCP connect to each route's backend, recording
//! up/down, the connect latency and since when the status holds (after godoxy's route registry).
//! Each backend address is probed once per round, however many routes share it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use routerd_proxy::Proxy;

/// One route's backend health.
#[derive(Debug, Clone, Serialize)]
pub struct RouteHealth {
    /// The route.
    pub route: String,
    /// The backend's `host:port`.
    pub target: String,
    /// `up`, `down` or `unknown` (not checked yet).
    pub status: &'static str,
    /// The last connect latency, when up.
    pub latency_ms: Option<f64>,
    /// Unix seconds since the status last changed.
    pub since: u64,
}

/// The health of every route's backend.
#[derive(Default)]
pub struct HealthChecks {
    routes: Mutex<HashMap<String, RouteHealth>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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
        let mut by_target: HashMap<String, Vec<String>> = HashMap::new();
        for r in table.routes() {
            if let Some(t) = &r.target {
                by_target
                    .entry(t.authority.to_string())
                    .or_default()
                    .push(r.name.to_string());
            }
        }
        let mut probes = tokio::task::JoinSet::new();
        for (target, routes) in by_target {
            probes.spawn(async move {
                let addr = if target.contains(':') {
                    target.clone()
                } else {
                    format!("{target}:80")
                };
                let started = Instant::now();
                let up = matches!(
                    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                    Ok(Ok(_))
                );
                (routes, target, up, started.elapsed())
            });
        }
        let mut results = Vec::new();
        while let Some(done) = probes.join_next().await {
            if let Ok((routes, target, up, took)) = done {
                results.extend(routes.into_iter().map(|r| (r, target.clone(), up, took)));
            }
        }
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = HashMap::with_capacity(results.len());
        for (route, target, up, took) in results {
            let status = if up { "up" } else { "down" };
            let since = match routes.get(&route) {
                Some(prev) if prev.status == status && prev.target == target => prev.since,
                _ => unix_now(),
            };
            seen.insert(
                route.clone(),
                RouteHealth {
                    route,
                    target,
                    status,
                    latency_ms: up.then_some(took.as_secs_f64() * 1000.0),
                    since,
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
