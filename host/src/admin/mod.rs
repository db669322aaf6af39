//! The admin listener: health and a read-only view of the table. Mutations come with the
//! control-plane API.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::proxy::{Proxy, ResponseBody, error, full};
use crate::server::Handler;

/// The admin API.
pub struct Admin {
    proxy: Arc<Proxy>,
}

impl Admin {
    /// An admin API over `proxy`'s table.
    pub fn new(proxy: Arc<Proxy>) -> Self {
        Admin { proxy }
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
            (&Method::GET, "/api/v1/routes") => {
                let table = self.proxy.table();
                let routes: Vec<_> = table.routes().map(|r| &r.rule).collect();
                Self::json(
                    StatusCode::OK,
                    serde_json::json!({"routes": routes, "total": routes.len()}),
                )
            }
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
