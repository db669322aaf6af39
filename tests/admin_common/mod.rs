//! What the admin API tests share: route documents, requests to the API, and assertions on
//! its answers.
// Each admin test file uses its own part.
#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::harness::*;

pub const ROUTES: &str = "/api/v1/routes";
pub const PLUGINS: &str = "/api/v1/plugins";

/// `/api/v1/routes/{name}`.
pub fn route_url(name: &str) -> String {
    format!("{ROUTES}/{name}")
}

/// A route on exact path `p` answering 200 with `body` (no backend).
pub fn answer(name: &str, p: &str, body: &str) -> Value {
    json!({
        "name": name,
        "matchers": [{"condition": "path", "pattern": p}],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    })
}

/// [`answer`] as a [`Route`], for config files.
pub fn answer_route(name: &str, p: &str, body: &str) -> Route {
    Route(answer(name, p, body))
}

/// A route on exact path `p` proxying to `target`.
pub fn to_backend(name: &str, p: &str, target: &str) -> Value {
    json!({
        "name": name,
        "target_url": target,
        "matchers": [{"condition": "path", "pattern": p}],
    })
}

/// Checks an error answer: the status, `{"error": code, "message": non-empty}`; returns the
/// message.
pub fn assert_error(resp: &Resp, status: u16, code: &str, what: &str) -> String {
    let body = resp.try_json();
    let got_code = body
        .as_ref()
        .and_then(|b| b.get("error"))
        .and_then(Value::as_str);
    let message = body
        .as_ref()
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str);
    assert!(
        resp.status == status && got_code == Some(code) && message.is_some_and(|m| !m.is_empty()),
        "{what}: expected {status} {{\"error\": {code:?}, \"message\": \"...\"}}, got {}",
        resp.describe()
    );
    message.unwrap().to_owned()
}

/// Checks a success answer's status; returns its JSON body (or `Null` when it is empty).
pub fn assert_status(resp: &Resp, status: u16, what: &str) -> Value {
    assert_eq!(
        resp.status,
        status,
        "{what}: expected {status}, got {}",
        resp.describe()
    );
    if resp.body.is_empty() {
        Value::Null
    } else {
        resp.json()
    }
}

/// The `version` of a stored route, as sent in `If-Match`.
pub fn version(doc: &Value) -> String {
    match &doc["version"] {
        Value::Number(n) => n.to_string(),
        other => panic!("route has no numeric version: {other} in {doc}"),
    }
}

/// Checks the fields every stored route carries.
pub fn assert_stored(doc: &Value, name: &str, source: &str, status: &str) {
    assert_eq!(doc["name"], name, "stored route name in {doc}");
    assert!(
        doc["version"].is_u64(),
        "stored route {name}: version must be a number: {doc}"
    );
    assert_eq!(
        doc["source"], source,
        "stored route {name}: source in {doc}"
    );
    assert_eq!(
        doc["status"], status,
        "stored route {name}: status in {doc}"
    );
}

/// `POST /api/v1/routes`, expecting 201; returns the stored route.
pub async fn create(rd: &Routerd, route: &Value) -> Value {
    let resp = rd.admin_json("POST", ROUTES, Some(route)).await;
    let what = format!("POST {}", route["name"]);
    let doc = assert_status(&resp, 201, &what);
    let status = if route["enabled"] == false {
        "disabled"
    } else {
        "active"
    };
    assert_stored(&doc, route["name"].as_str().unwrap(), "api", status);
    doc
}

/// `PUT /api/v1/routes/{name}`, expecting 200; returns the stored route.
pub async fn update(rd: &Routerd, name: &str, route: &Value) -> Value {
    let resp = rd.admin_json("PUT", &route_url(name), Some(route)).await;
    assert_status(&resp, 200, &format!("PUT {name}"))
}

/// `GET /api/v1/routes/{name}`.
pub async fn get_route(rd: &Routerd, name: &str) -> Resp {
    rd.admin_get(&route_url(name)).await
}

/// Every route listed by the API, following pages of 1000.
pub async fn all_routes(rd: &Routerd) -> Vec<Value> {
    let resp = rd.admin_get(&format!("{ROUTES}?offset=0&limit=1000")).await;
    let doc = assert_status(&resp, 200, "GET routes");
    doc["routes"].as_array().cloned().unwrap_or_default()
}

/// The names of the routes the API lists.
pub async fn route_names(rd: &Routerd) -> BTreeSet<String> {
    all_routes(rd)
        .await
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The body text of `GET p` on the proxy, with its status.
pub async fn traffic(rd: &Routerd, p: &str) -> (u16, String) {
    let resp = rd.get(p).await;
    (resp.status, resp.text())
}
