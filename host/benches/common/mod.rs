//! What the plugin benches share: the 12-header request every predicate call is about.

use std::sync::Arc;

use routerd::routing::ExternalRequest;

/// `GET /api/users/42?x=1` with twelve typical headers, `x-tier: gold` among them.
pub fn request() -> ExternalRequest {
    let mut req = http::Request::builder()
        .method("GET")
        .uri("/api/users/42?x=1");
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, br"),
        ("accept-language", "en-GB,en;q=0.9"),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        ),
        ("cookie", "session=abc; theme=dark"),
        ("x-request-id", "0f3c9a1e-5c2b-4c1e-9a57-2b9a7c1d0e11"),
        ("x-forwarded-for", "10.0.0.1"),
        ("cache-control", "no-cache"),
        ("x-tier", "gold"),
        ("connection", "keep-alive"),
    ] {
        req = req.header(k, v);
    }
    let (parts, ()) = req.body(()).unwrap_or_else(|e| panic!("{e}")).into_parts();
    ExternalRequest {
        parts: Arc::new(parts),
        remote: "127.0.0.1:50000".parse().unwrap_or_else(|e| panic!("{e}")),
        scheme: "http",
        path: None,
        params: Vec::new(),
    }
}
