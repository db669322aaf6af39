//! The admin listener: health, and read-only views of the routes (with their status) and the
//! loaded plugins (with their counters). Mutations come with the control-plane API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::proxy::{Proxy, ResponseBody, error, full};
use crate::routeset::RouteSet;
use crate::server::Handler;

/// The admin API.
pub struct Admin {
    routes: Arc<RouteSet>,
}

impl Admin {
    /// An admin API over a live route set.
    pub fn new(routes: Arc<RouteSet>) -> Self {
        Admin { routes }
    }

    fn json(status: StatusCode, doc: serde_json::Value) -> Response<ResponseBody> {
        let mut resp = Response::new(full(doc.to_string()));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    }

    fn routes(&self) -> serde_json::Value {
        let table = self.routes.proxy().table();
        let mut routes: Vec<serde_json::Value> = table
            .routes()
            .map(|r| {
                let mut doc = serde_json::to_value(&r.rule).unwrap_or_default();
                doc["status"] = if r.rule.enabled { "active" } else { "disabled" }.into();
                doc
            })
            .collect();
        for (rule, reason) in table.excluded() {
            let mut doc = serde_json::to_value(rule).unwrap_or_default();
            doc["status"] = "excluded".into();
            doc["reason"] = reason.as_str().into();
            routes.push(doc);
        }
        let total = routes.len();
        serde_json::json!({ "routes": routes, "total": total })
    }

    fn plugins(&self) -> serde_json::Value {
        let table = self.routes.proxy().table();
        let plugins: Vec<serde_json::Value> = self
            .routes
            .plugins()
            .list()
            .iter()
            .map(|p| {
                let used_by: Vec<&str> = table
                    .routes()
                    .filter(|r| {
                        r.rule
                            .matchers
                            .iter()
                            .any(|m| m.plugin.as_deref() == Some(&*p.name))
                            || r.rule
                                .filters
                                .iter()
                                .any(|f| f.plugin.as_deref() == Some(&*p.name))
                    })
                    .map(|r| &*r.name)
                    .collect();
                let loaded_at = p
                    .loaded_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                serde_json::json!({
                    "name": &*p.name,
                    "kind": p.kind.as_str(),
                    "sha256": p.sha256,
                    "size": p.size,
                    "loaded_at_unix": loaded_at,
                    "compiled_from_cache": p.from_cache,
                    "settings": p.settings,
                    "used_by": used_by,
                    "calls": p.stats.calls.load(Ordering::Relaxed),
                    "traps": p.stats.traps.load(Ordering::Relaxed),
                    "deadline_hits": p.stats.deadline_hits.load(Ordering::Relaxed),
                    "memory_cap_hits": p.stats.memory_cap_hits.load(Ordering::Relaxed),
                    "rejected_results": p.stats.bad_results.load(Ordering::Relaxed),
                })
            })
            .collect();
        serde_json::json!({ "plugins": plugins })
    }
}

impl Handler for Admin {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        _remote: SocketAddr,
    ) -> Response<ResponseBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => {
                Self::json(StatusCode::OK, serde_json::json!({"status": "ok"}))
            }
            (&Method::GET, "/api/v1/routes") => Self::json(StatusCode::OK, self.routes()),
            (&Method::GET, "/api/v1/plugins") => Self::json(StatusCode::OK, self.plugins()),
            _ => error(StatusCode::NOT_FOUND, "no such admin endpoint", None),
        }
    }
}

impl Handler for Proxy {
    async fn call(
        self: Arc<Self>,
        req: Request<Incoming>,
        remote: SocketAddr,
    ) -> Response<ResponseBody> {
        self.handle(req, remote).await
    }
}
