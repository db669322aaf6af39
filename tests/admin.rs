//! Black-box tests of the admin API (`/api/v1`, `/metrics`) over HTTP: a real `routerd` process,
//! real echo backends and real plugins, all on 127.0.0.1.
//!
//! Covers every documented status code and error code of the route endpoints, `If-Match`
//! versions, renames, pagination, file routes (read-only and system routes), changes taking
//! effect for traffic at once, persistence across `kill -9`, the bearer token (and refusing a
//! non-loopback admin address without one), plugin upload and removal (with routes becoming
//! excluded), the match explainer, Prometheus metrics, active health checks, and route changes
//! under steady load.
#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ROUTES: &str = "/api/v1/routes";
const PLUGINS: &str = "/api/v1/plugins";

/// `/api/v1/routes/{name}`.
fn route_url(name: &str) -> String {
    format!("{ROUTES}/{name}")
}

/// A route on exact path `p` answering 200 with `body` (no backend).
fn answer(name: &str, p: &str, body: &str) -> Value {
    json!({
        "name": name,
        "matchers": [{"condition": "path", "pattern": p}],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    })
}

/// [`answer`] as a [`Route`], for config files.
fn answer_route(name: &str, p: &str, body: &str) -> Route {
    Route(answer(name, p, body))
}

/// A route on exact path `p` proxying to `target`.
fn to_backend(name: &str, p: &str, target: &str) -> Value {
    json!({
        "name": name,
        "target_url": target,
        "matchers": [{"condition": "path", "pattern": p}],
    })
}

/// Checks an error answer: the status, `{"error": code, "message": non-empty}`; returns the
/// message.
fn assert_error(resp: &Resp, status: u16, code: &str, what: &str) -> String {
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
fn assert_status(resp: &Resp, status: u16, what: &str) -> Value {
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
fn version(doc: &Value) -> String {
    match &doc["version"] {
        Value::Number(n) => n.to_string(),
        other => panic!("route has no numeric version: {other} in {doc}"),
    }
}

/// Checks the fields every stored route carries.
fn assert_stored(doc: &Value, name: &str, source: &str, status: &str) {
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
async fn create(rd: &Routerd, route: &Value) -> Value {
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
async fn update(rd: &Routerd, name: &str, route: &Value) -> Value {
    let resp = rd.admin_json("PUT", &route_url(name), Some(route)).await;
    assert_status(&resp, 200, &format!("PUT {name}"))
}

/// `GET /api/v1/routes/{name}`.
async fn get_route(rd: &Routerd, name: &str) -> Resp {
    rd.admin_get(&route_url(name)).await
}

/// Every route listed by the API, following pages of 1000.
async fn all_routes(rd: &Routerd) -> Vec<Value> {
    let resp = rd.admin_get(&format!("{ROUTES}?offset=0&limit=1000")).await;
    let doc = assert_status(&resp, 200, "GET routes");
    doc["routes"].as_array().cloned().unwrap_or_default()
}

/// The names of the routes the API lists.
async fn route_names(rd: &Routerd) -> BTreeSet<String> {
    all_routes(rd)
        .await
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The body text of `GET p` on the proxy, with its status.
async fn traffic(rd: &Routerd, p: &str) -> (u16, String) {
    let resp = rd.get(p).await;
    (resp.status, resp.text())
}

// ---------------------------------------------------------------------------------------------
// Route endpoints: status codes and bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_update_delete_with_their_status_codes() {
    let backend = Backend::start("api-backend").await;
    let rd = Routerd::start(&config(vec![Route::respond("file-route").m(path("/file"))])).await;

    // 201: the stored route is the document plus version, source and status.
    let stored = create(&rd, &to_backend("web", "/web", &backend.url())).await;
    assert_eq!(stored["target_url"], backend.url(), "{stored}");
    assert_eq!(stored["matchers"][0]["pattern"], "/web", "{stored}");
    // It serves at once.
    let resp = rd.get("/web").await;
    assert_eq!(
        resp.backend().as_deref(),
        Some("api-backend"),
        "{}",
        resp.describe()
    );

    // 200 get, the same version.
    let got = assert_status(&get_route(&rd, "web").await, 200, "GET web");
    assert_stored(&got, "web", "api", "active");
    assert_eq!(version(&got), version(&stored));

    // 200 put: a new version, the change serves at once.
    let mut changed = to_backend("web", "/web", &backend.url());
    changed["filters"] = json!([{"name": "set_response_header", "args": ["X-Rev", "2"]}]);
    changed["priority"] = json!(7);
    let put = update(&rd, "web", &changed).await;
    assert_stored(&put, "web", "api", "active");
    assert_eq!(put["priority"], 7, "{put}");
    assert_ne!(
        version(&put),
        version(&stored),
        "PUT must change the version"
    );
    assert_eq!(rd.get("/web").await.header("x-rev").as_deref(), Some("2"));
    let got = assert_status(&get_route(&rd, "web").await, 200, "GET web after PUT");
    assert_eq!(version(&got), version(&put));

    // 409: a duplicate name, whether it belongs to an API route or a file route.
    let dup = rd
        .admin_json("POST", ROUTES, Some(&answer("web", "/other", "x")))
        .await;
    assert_error(&dup, 409, "route_conflict", "POST duplicate web");
    let dup = rd
        .admin_json("POST", ROUTES, Some(&answer("file-route", "/other", "x")))
        .await;
    assert_error(
        &dup,
        409,
        "route_conflict",
        "POST duplicate of a file route",
    );
    assert_eq!(traffic(&rd, "/other").await.0, 404, "a refused POST serves");

    // 404 for every verb on a missing route.
    let missing = get_route(&rd, "nope").await;
    assert_error(&missing, 404, "route_not_found", "GET nope");
    let missing = rd
        .admin_json(
            "PUT",
            &route_url("nope"),
            Some(&answer("nope", "/nope", "x")),
        )
        .await;
    assert_error(&missing, 404, "route_not_found", "PUT nope");
    let missing = rd.admin_json("DELETE", &route_url("nope"), None).await;
    assert_error(&missing, 404, "route_not_found", "DELETE nope");
    assert_eq!(traffic(&rd, "/nope").await.0, 404, "a refused PUT serves");

    // 204 delete: gone from the API and from traffic.
    let deleted = rd.admin_json("DELETE", &route_url("web"), None).await;
    assert_eq!(deleted.status, 204, "DELETE web: {}", deleted.describe());
    assert!(
        deleted.body.is_empty(),
        "204 with a body: {}",
        deleted.describe()
    );
    assert_error(
        &get_route(&rd, "web").await,
        404,
        "route_not_found",
        "GET web after DELETE",
    );
    assert_eq!(
        traffic(&rd, "/web").await.0,
        404,
        "deleted route still serves"
    );
    assert_eq!(traffic(&rd, "/file").await, (200, "file-route".to_owned()));

    // Unknown endpoints and methods.
    let resp = rd.admin_get("/api/v1/nothing-here").await;
    assert_error(&resp, 404, "not_found", "GET unknown endpoint");
    let resp = rd.admin_json("PATCH", &route_url("file-route"), None).await;
    assert_error(&resp, 405, "method_not_allowed", "PATCH a route");
    let health = rd.admin_get("/healthz").await;
    assert_eq!(
        assert_status(&health, 200, "healthz"),
        json!({"status": "ok"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_routes_are_refused_with_stable_codes() {
    let rd = Routerd::launch(&config(vec![Route::respond("file-route").m(path("/file"))]))
        .warm_cache()
        .plugin("header-eq")
        .start()
        .await;
    let ok = answer("ok-route", "/ok", "ok");
    let with = |key: &str, value: Value| {
        let mut r = ok.clone();
        r[key] = value;
        r
    };
    let header_re = |pattern: &str| {
        with(
            "matchers",
            json!([{"condition": "path", "pattern": "/ok"},
                   {"condition": "header", "field": "x-a", "pattern": pattern, "is_regex": true}]),
        )
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "name with a space",
            with("name", json!("bad name")),
            400,
            "invalid_route_name",
        ),
        (
            "name with a slash",
            with("name", json!("a/b")),
            400,
            "invalid_route_name",
        ),
        (
            "empty name",
            with("name", json!("")),
            400,
            "invalid_route_name",
        ),
        (
            "priority 1001",
            with("priority", json!(1001)),
            400,
            "invalid_priority",
        ),
        ("bad regex", header_re("(unclosed"), 400, "invalid_regex"),
        (
            "no matchers",
            with("matchers", json!([])),
            400,
            "no_matchers",
        ),
        (
            "ftp target",
            json!({"name": "ok-route", "target_url": "ftp://127.0.0.1/x",
                   "matchers": [{"condition": "path", "pattern": "/ok"}]}),
            400,
            "invalid_url",
        ),
        (
            "target is not a URL",
            json!({"name": "ok-route", "target_url": "not a url",
                   "matchers": [{"condition": "path", "pattern": "/ok"}]}),
            400,
            "invalid_url",
        ),
        (
            "strip_prefix without a slash",
            with("strip_prefix", json!("ok")),
            400,
            "invalid_strip_prefix",
        ),
        (
            "header matcher without a field",
            with(
                "matchers",
                json!([{"condition": "path", "pattern": "/ok"},
                       {"condition": "header", "pattern": "v"}]),
            ),
            400,
            "invalid_matcher",
        ),
        (
            "set_request_header with one arg",
            with(
                "filters",
                json!([{"name": "set_request_header", "args": ["X-A"]},
                       {"name": "respond", "args": ["200", "ok"]}]),
            ),
            400,
            "invalid_filter",
        ),
        (
            "unknown plugin",
            with(
                "matchers",
                json!([{"condition": "path", "pattern": "/ok"},
                       {"condition": "plugin", "plugin": "no-such-plugin", "args": []}]),
            ),
            400,
            "unknown_plugin",
        ),
    ];
    for (what, body, status, code) in &cases {
        let resp = rd.admin_json("POST", ROUTES, Some(body)).await;
        assert_error(&resp, *status, code, what);
    }

    // The plugin's own validation message comes back.
    let bad_args = with(
        "matchers",
        json!([{"condition": "path", "pattern": "/ok"},
               {"condition": "plugin", "plugin": "header-eq", "args": ["x-only-one"]}]),
    );
    let resp = rd.admin_json("POST", ROUTES, Some(&bad_args)).await;
    let message = assert_error(&resp, 400, "invalid_plugin_args", "header-eq with 1 arg");
    assert!(
        message.contains("header-eq: expected 2 args"),
        "the message must carry the plugin's own: {message:?}"
    );

    // Malformed JSON, and JSON that is not a route.
    for (what, raw) in [
        ("truncated JSON", "{\"name\": \"ok-route\", \"matchers\": ["),
        ("not JSON", "name=ok-route"),
        ("a JSON array", "[]"),
    ] {
        let resp = rd
            .admin_request("POST", ROUTES, &[("content-type", "application/json")], raw)
            .await;
        assert_error(&resp, 400, "invalid_body", what);
    }

    // One default rule at most.
    let default_rule = |name: &str| {
        json!({"name": name, "default_rule": true, "matchers": [],
               "filters": [{"name": "respond", "args": ["200", name]}]})
    };
    create(&rd, &default_rule("default-1")).await;
    let resp = rd
        .admin_json("POST", ROUTES, Some(&default_rule("default-2")))
        .await;
    assert_error(&resp, 409, "multiple_default_routes", "second default rule");
    assert_eq!(
        traffic(&rd, "/anything").await,
        (200, "default-1".to_owned())
    );

    // A PUT is validated like a POST and leaves the route as it was.
    create(&rd, &ok).await;
    let before = assert_status(&get_route(&rd, "ok-route").await, 200, "GET ok-route");
    let resp = rd
        .admin_json("PUT", &route_url("ok-route"), Some(&header_re("[")))
        .await;
    assert_error(&resp, 400, "invalid_regex", "PUT with a bad regex");
    let resp = rd
        .admin_json(
            "PUT",
            &route_url("ok-route"),
            Some(&with("priority", json!(5000))),
        )
        .await;
    assert_error(&resp, 400, "invalid_priority", "PUT with priority 5000");
    let after = assert_status(&get_route(&rd, "ok-route").await, 200, "GET ok-route");
    assert_eq!(before, after, "a refused PUT changed the route");

    // Nothing refused was stored.
    let names = route_names(&rd).await;
    let expected: BTreeSet<String> = ["file-route", "default-1", "ok-route"]
        .map(str::to_owned)
        .into();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_routes_are_read_only_and_system_routes_protected() {
    let mut system = Route::respond("sys").m(path("/sys"));
    system.0["system"] = json!(true);
    let rd = Routerd::start(&config(vec![
        system,
        Route::respond("from-file").m(path("/from-file")),
    ]))
    .await;

    let sys = assert_status(&get_route(&rd, "sys").await, 200, "GET sys");
    assert_stored(&sys, "sys", "file", "active");
    let file = assert_status(&get_route(&rd, "from-file").await, 200, "GET from-file");
    assert_stored(&file, "from-file", "file", "active");

    let replacement = |name: &str| answer(name, "/replaced", "replaced");
    let resp = rd
        .admin_json("PUT", &route_url("sys"), Some(&replacement("sys")))
        .await;
    assert_error(&resp, 403, "system_route_protected", "PUT sys");
    let resp = rd.admin_json("DELETE", &route_url("sys"), None).await;
    assert_error(&resp, 403, "system_route_protected", "DELETE sys");
    let resp = rd
        .admin_json(
            "PUT",
            &route_url("from-file"),
            Some(&replacement("from-file")),
        )
        .await;
    assert_error(&resp, 409, "read_only_route", "PUT from-file");
    let resp = rd.admin_json("DELETE", &route_url("from-file"), None).await;
    assert_error(&resp, 409, "read_only_route", "DELETE from-file");

    // Renaming an API route onto a file route is a conflict.
    create(&rd, &answer("mine", "/mine", "mine")).await;
    let resp = rd
        .admin_json(
            "PUT",
            &route_url("mine"),
            Some(&answer("sys", "/mine", "x")),
        )
        .await;
    assert_error(&resp, 409, "route_conflict", "rename mine -> sys");

    // The body of a route cannot claim to be a system or file route either.
    let mut sneaky = answer("sneaky", "/sneaky", "sneaky");
    sneaky["source"] = json!("file");
    let stored = create(&rd, &sneaky).await;
    assert_eq!(stored["source"], "api");

    for (p, body) in [
        ("/sys", "sys"),
        ("/from-file", "from-file"),
        ("/mine", "mine"),
    ] {
        assert_eq!(traffic(&rd, p).await, (200, body.to_owned()), "GET {p}");
    }
    assert_eq!(traffic(&rd, "/replaced").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_put_and_delete() {
    let rd = Routerd::start(&config(vec![])).await;
    // version, source and status in a body are ignored.
    let mut body = answer("guarded", "/g", "v1");
    body["version"] = json!(999_999);
    body["source"] = json!("file");
    body["status"] = json!("disabled");
    let v1 = create(&rd, &body).await;
    assert_ne!(
        version(&v1),
        "999999",
        "the body's version was stored: {v1}"
    );

    let v1_tag = version(&v1);
    let put = |text: &str| answer("guarded", "/g", text);
    let resp = rd
        .admin_request(
            "PUT",
            &route_url("guarded"),
            &[("content-type", "application/json"), ("if-match", &v1_tag)],
            put("v2").to_string(),
        )
        .await;
    let v2 = assert_status(&resp, 200, "PUT with the current If-Match");
    let v2_tag = version(&v2);
    assert_ne!(v2_tag, v1_tag);
    assert_eq!(traffic(&rd, "/g").await, (200, "v2".to_owned()));

    // A stale version: 412, nothing changes.
    let resp = rd
        .admin_request(
            "PUT",
            &route_url("guarded"),
            &[("content-type", "application/json"), ("if-match", &v1_tag)],
            put("v3").to_string(),
        )
        .await;
    assert_error(&resp, 412, "version_mismatch", "PUT with a stale If-Match");
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("if-match", &v1_tag)],
            "",
        )
        .await;
    assert_error(
        &resp,
        412,
        "version_mismatch",
        "DELETE with a stale If-Match",
    );
    let now = assert_status(&get_route(&rd, "guarded").await, 200, "GET guarded");
    assert_eq!(version(&now), v2_tag);
    assert_eq!(traffic(&rd, "/g").await, (200, "v2".to_owned()));

    // Without If-Match the write is unconditional; with the current version DELETE works.
    let v3 = update(&rd, "guarded", &put("v3")).await;
    assert_ne!(version(&v3), v2_tag);
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("if-match", &v2_tag)],
            "",
        )
        .await;
    assert_error(
        &resp,
        412,
        "version_mismatch",
        "DELETE with the previous version",
    );
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("if-match", &version(&v3))],
            "",
        )
        .await;
    assert_eq!(
        resp.status,
        204,
        "DELETE with the current If-Match: {}",
        resp.describe()
    );
    assert_eq!(traffic(&rd, "/g").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_moves_the_route_and_its_traffic() {
    let a = Backend::start("before").await;
    let b = Backend::start("after").await;
    let rd = Routerd::start(&config(vec![])).await;
    let old = create(&rd, &to_backend("old-name", "/r", &a.url())).await;
    create(&rd, &answer("other", "/other", "other")).await;
    assert_eq!(rd.get("/r").await.backend().as_deref(), Some("before"));

    let renamed = update(&rd, "old-name", &to_backend("new-name", "/r", &b.url())).await;
    assert_stored(&renamed, "new-name", "api", "active");
    assert_ne!(version(&renamed), version(&old));
    assert_error(
        &get_route(&rd, "old-name").await,
        404,
        "route_not_found",
        "GET the old name",
    );
    let got = assert_status(&get_route(&rd, "new-name").await, 200, "GET the new name");
    assert_eq!(got["target_url"], b.url());
    let resp = rd.get("/r").await;
    assert_eq!(
        resp.backend().as_deref(),
        Some("after"),
        "{}",
        resp.describe()
    );

    // Onto an existing name: 409, both unchanged.
    let resp = rd
        .admin_json(
            "PUT",
            &route_url("new-name"),
            Some(&to_backend("other", "/r", &a.url())),
        )
        .await;
    assert_error(&resp, 409, "route_conflict", "rename onto other");
    let names = route_names(&rd).await;
    assert_eq!(
        names,
        ["new-name", "other"].map(str::to_owned).into(),
        "routes after the refused rename"
    );
    assert_eq!(rd.get("/r").await.backend().as_deref(), Some("after"));
    assert_eq!(traffic(&rd, "/other").await, (200, "other".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_is_stable_and_complete() {
    let rd = Routerd::start(&config(vec![])).await;
    let mut created = BTreeSet::new();
    // Created out of name order.
    for i in [4, 1, 6, 0, 3, 5, 2] {
        let name = format!("page-{i}");
        create(&rd, &answer(&name, &format!("/p{i}"), &name)).await;
        created.insert(name);
    }

    let page = |offset: usize, limit: usize| {
        let rd = &rd;
        async move {
            let resp = rd
                .admin_get(&format!("{ROUTES}?offset={offset}&limit={limit}"))
                .await;
            let doc = assert_status(&resp, 200, &format!("page {offset}/{limit}"));
            assert_eq!(doc["total"], 7, "total on page {offset}: {doc}");
            assert_eq!(doc["offset"], offset, "offset echoed: {doc}");
            assert_eq!(doc["limit"], limit, "limit echoed: {doc}");
            doc["routes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };

    let mut listed = Vec::new();
    for (offset, len) in [(0, 3), (3, 3), (6, 1)] {
        let names = page(offset, 3).await;
        assert_eq!(names.len(), len, "page at {offset}: {names:?}");
        // The same page twice is the same.
        assert_eq!(page(offset, 3).await, names, "page at {offset} changed");
        listed.extend(names);
    }
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "duplicates across pages: {listed:?}"
    );
    assert_eq!(unique, created, "gaps across pages: {listed:?}");
    // The pages are slices of one order.
    assert_eq!(page(0, 7).await, listed);
    assert!(page(7, 3).await.is_empty());
    assert!(page(100, 3).await.is_empty());

    // Out of range or not numbers: 400 with an error body.
    for query in ["limit=0", "limit=1001", "limit=abc", "offset=-1"] {
        let resp = rd.admin_get(&format!("{ROUTES}?{query}")).await;
        let code = resp
            .try_json()
            .and_then(|d| d["error"].as_str().map(str::to_owned));
        assert!(
            resp.status == 400 && code.is_some(),
            "GET routes?{query}: expected 400 with an error code, got {}",
            resp.describe()
        );
    }
    let doc = assert_status(
        &rd.admin_get(&format!("{ROUTES}?limit=1000")).await,
        200,
        "limit=1000",
    );
    assert_eq!(doc["routes"].as_array().unwrap().len(), 7, "{doc}");

    // Defaults: offset 0, limit 50.
    let doc = assert_status(&rd.admin_get(ROUTES).await, 200, "GET routes");
    assert_eq!(doc["offset"], 0, "{doc}");
    assert_eq!(doc["limit"], 50, "{doc}");
    assert_eq!(doc["routes"].as_array().unwrap().len(), 7, "{doc}");

    // Deleting one closes the gap: still no duplicates or gaps.
    let resp = rd.admin_json("DELETE", &route_url("page-3"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    created.remove("page-3");
    let resp = rd.admin_get(&format!("{ROUTES}?offset=0&limit=1000")).await;
    let doc = assert_status(&resp, 200, "GET all");
    assert_eq!(doc["total"], 6);
    let names: BTreeSet<String> = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_overwrite_each_other() {
    const WRITERS: usize = 8;
    let rd = Arc::new(Routerd::start(&config(vec![])).await);

    // The same name from several clients at once: exactly one is created.
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let rd = rd.clone();
        posts.spawn(async move {
            let body = answer("contended", "/contended", &format!("post-{i}"));
            (i, rd.admin_json("POST", ROUTES, Some(&body)).await)
        });
    }
    let mut created = Vec::new();
    while let Some(joined) = posts.join_next().await {
        let (i, resp) = joined.unwrap();
        if resp.status == 201 {
            created.push(i);
        } else {
            assert_error(
                &resp,
                409,
                "route_conflict",
                &format!("concurrent POST {i}"),
            );
        }
    }
    assert_eq!(created.len(), 1, "concurrent POSTs created {created:?}");
    let winner = format!("post-{}", created[0]);
    assert_eq!(traffic(&rd, "/contended").await, (200, winner));

    // Conditional updates from the same version: exactly one wins, the rest get 412.
    let current = assert_status(&get_route(&rd, "contended").await, 200, "GET contended");
    let tag = version(&current);
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let (rd, tag) = (rd.clone(), tag.clone());
        puts.spawn(async move {
            let body = answer("contended", "/contended", &format!("put-{i}")).to_string();
            let headers = [("content-type", "application/json"), ("if-match", &*tag)];
            (
                i,
                rd.admin_request("PUT", &route_url("contended"), &headers, body)
                    .await,
            )
        });
    }
    let mut updated = Vec::new();
    while let Some(joined) = puts.join_next().await {
        let (i, resp) = joined.unwrap();
        if resp.status == 200 {
            updated.push((i, resp.json()));
        } else {
            assert_error(
                &resp,
                412,
                "version_mismatch",
                &format!("concurrent PUT {i}"),
            );
        }
    }
    assert_eq!(
        updated.len(),
        1,
        "concurrent PUTs from one version all won: {updated:?}"
    );
    let (i, stored) = &updated[0];
    let now = assert_status(&get_route(&rd, "contended").await, 200, "GET contended");
    assert_eq!(version(&now), version(stored));
    assert_eq!(traffic(&rd, "/contended").await, (200, format!("put-{i}")));

    // Many different routes at once: every acknowledged one is there.
    let mut many = tokio::task::JoinSet::new();
    for i in 0..WRITERS * 4 {
        let rd = rd.clone();
        many.spawn(async move {
            let name = format!("parallel-{i}");
            let resp = rd
                .admin_json(
                    "POST",
                    ROUTES,
                    Some(&answer(&name, &format!("/parallel/{i}"), &name)),
                )
                .await;
            (name, resp)
        });
    }
    let mut versions = BTreeSet::new();
    while let Some(joined) = many.join_next().await {
        let (name, resp) = joined.unwrap();
        let doc = assert_status(&resp, 201, &format!("parallel POST {name}"));
        assert!(
            versions.insert(version(&doc)),
            "version {} handed out twice",
            doc["version"]
        );
    }
    let names = route_names(&rd).await;
    assert_eq!(names.len(), WRITERS * 4 + 1, "{names:?}");
    for i in 0..WRITERS * 4 {
        let name = format!("parallel-{i}");
        assert_eq!(traffic(&rd, &format!("/parallel/{i}")).await, (200, name));
    }
}

/// POSTs a body of `len` JSON whitespace bytes to the admin listener over a raw socket, writing
/// and reading at once (a server may answer, and close, before the body is sent); returns the
/// response (head and body) as text.
async fn post_oversized(rd: &Routerd, path: &str, len: usize) -> String {
    let stream = TcpStream::connect(rd.admin).await.expect("connect admin");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {len}\r\n\r\n",
        rd.admin
    );
    let sender = tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 << 10];
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            if writer.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            sent += n;
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut buf = vec![0; 16 << 10];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            // Stop once the head and a Content-Length body are in.
            let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if length.is_some_and(|l| answer.len() >= end + 4 + l) {
                    break;
                }
            }
        }
    })
    .await;
    sender.abort();
    assert!(
        read.is_ok(),
        "no answer to an oversized POST {path} in time"
    );
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused() {
    let rd = Routerd::start(&config(vec![])).await;
    // 16 MiB for one route is no route anyone means to store.
    let answer_text = post_oversized(&rd, ROUTES, 16 << 20).await;
    let (head, body) = answer_text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {answer_text:?}"));
    assert!(
        head.starts_with("HTTP/1.1 413"),
        "expected 413, got {head:?}"
    );
    let doc: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(doc["error"], "payload_too_large", "{doc}");
    assert_eq!(all_routes(&rd).await.len(), 0);
    // The listener still answers.
    create(&rd, &answer("small", "/small", "small")).await;
    assert_eq!(traffic(&rd, "/small").await, (200, "small".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_kill_9() {
    let data = TempDir::new("persist");
    let cfg = config(vec![Route::respond("file-route").m(path("/file"))]);
    let mut rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;

    create(&rd, &answer("kept", "/kept", "kept")).await;
    create(&rd, &answer("changed", "/changed", "v1")).await;
    create(&rd, &answer("removed", "/removed", "removed")).await;
    create(&rd, &answer("moved-from", "/moved", "moved")).await;
    update(&rd, "changed", &answer("changed", "/changed", "v2")).await;
    let resp = rd.admin_json("DELETE", &route_url("removed"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    update(&rd, "moved-from", &answer("moved-to", "/moved", "moved")).await;
    let mut disabled = answer("disabled", "/disabled", "disabled");
    disabled["enabled"] = json!(false);
    create(&rd, &disabled).await;
    // A burst right before the kill: each acknowledged write must be on disk.
    for i in 0..20 {
        create(
            &rd,
            &answer(&format!("burst-{i}"), &format!("/burst/{i}"), "b"),
        )
        .await;
    }
    let before = all_routes(&rd).await;
    let status = rd.kill9();
    assert!(!status.success(), "SIGKILL must not look like a clean exit");
    assert!(
        data.path().join("routes.redb").is_file(),
        "no routes.redb in the data directory"
    );

    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    let after = all_routes(&rd).await;
    let by_name = |routes: &[Value]| -> BTreeMap<String, Value> {
        routes
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_owned(), r.clone()))
            .collect()
    };
    let (before, after) = (by_name(&before), by_name(&after));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the route names differ after the restart"
    );
    // File routes are read from the file again; API routes come back exactly as they were.
    for (name, route) in before.iter().filter(|(_, r)| r["source"] == "api") {
        let restored = &after[name];
        for key in [
            "matchers", "filters", "source", "status", "enabled", "version",
        ] {
            assert_eq!(
                route.get(key),
                restored.get(key),
                "route {name}: {key} differs after the restart"
            );
        }
    }
    assert!(!after.contains_key("removed") && !after.contains_key("moved-from"));

    for (p, expected) in [
        ("/file", Some("file-route")),
        ("/kept", Some("kept")),
        ("/changed", Some("v2")),
        ("/removed", None),
        ("/moved", Some("moved")),
        ("/disabled", None),
        ("/burst/19", Some("b")),
    ] {
        let (status, body) = traffic(&rd, p).await;
        match expected {
            Some(text) => assert_eq!((status, body.as_str()), (200, text), "GET {p}"),
            None => assert_eq!(status, 404, "GET {p}: {body}"),
        }
    }
    assert_eq!(after["disabled"]["status"], "disabled");

    // Versions keep increasing after the restart: a new write never reuses an old version.
    let max_before = before
        .values()
        .filter(|r| r["source"] == "api")
        .filter_map(|r| r["version"].as_u64())
        .max()
        .unwrap();
    let fresh = create(&rd, &answer("after-restart", "/after", "after")).await;
    assert!(
        fresh["version"].as_u64().unwrap() > max_before,
        "version {} reused after the restart (had {max_before})",
        fresh["version"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_keeps_api_routes() {
    let rd = Routerd::start(&config(vec![answer_route("file-a", "/file-a", "a1")])).await;
    create(&rd, &answer("api-route", "/api-route", "api")).await;

    rd.write_config(&config(vec![
        answer_route("file-a", "/file-a", "a2"),
        answer_route("file-b", "/file-b", "b"),
    ]));
    let reloaded = wait_until(
        async || traffic(&rd, "/file-b").await == (200, "b".to_owned()),
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(reloaded, "the config change never applied");
    assert_eq!(traffic(&rd, "/file-a").await, (200, "a2".to_owned()));
    assert_eq!(traffic(&rd, "/api-route").await, (200, "api".to_owned()));
    let routes = all_routes(&rd).await;
    let source = |name: &str| {
        routes
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["source"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(source("api-route").as_deref(), Some("api"));
    assert_eq!(source("file-a").as_deref(), Some("file"));
    assert_eq!(source("file-b").as_deref(), Some("file"));

    // A file route dropped from the file goes; the API route stays, and stays writable.
    rd.write_config(&config(vec![answer_route("file-b", "/file-b", "b")]));
    let dropped = wait_until(
        async || traffic(&rd, "/file-a").await.0 == 404,
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(dropped, "file-a still serves after it left the file");
    update(&rd, "api-route", &answer("api-route", "/api-route", "api2")).await;
    assert_eq!(traffic(&rd, "/api-route").await, (200, "api2".to_owned()));
    assert_error(
        &rd.admin_json("DELETE", &route_url("file-b"), None).await,
        409,
        "read_only_route",
        "DELETE file-b after the reload",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_plugins_and_their_routes_survive_a_restart() {
    let dir = TempDir::new("plugin-restart");
    let (plugins, data) = (dir.path().join("plugins"), dir.path().join("data"));
    let cfg = config(vec![Route::respond("fallback").m(path("/sel"))]);
    let launch = || {
        Routerd::launch(&cfg)
            .plugins_dir(&plugins)
            .data_dir(&data)
            .warm_cache()
    };
    let mut rd = launch().start().await;
    let wasm = std::fs::read(dist_plugin("header-eq")).unwrap();
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=sel"),
            &[("content-type", "application/wasm")],
            wasm.clone(),
        )
        .await;
    assert_status(&resp, 201, "upload sel");
    create(
        &rd,
        &json!({
            "name": "selected",
            "priority": 10,
            "matchers": [{"condition": "path", "pattern": "/sel"},
                         {"condition": "plugin", "plugin": "sel", "args": ["x-sel", "yes"]}],
            "filters": [{"name": "respond", "args": ["200", "selected"]}],
        }),
    )
    .await;
    rd.kill9();

    let rd = launch().start().await;
    let info = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/sel")).await,
        200,
        "GET sel",
    );
    assert_eq!(info["sha256"], sha256_hex(&wasm));
    let route = assert_status(&get_route(&rd, "selected").await, 200, "GET selected");
    assert_stored(&route, "selected", "api", "active");
    let yes = rd.request("GET", "/sel", &[("x-sel", "yes")], "").await;
    assert_eq!(yes.text(), "selected");
    assert_eq!(traffic(&rd, "/sel").await, (200, "fallback".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// Token
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_mutations_only() {
    let dir = TempDir::new("token");
    let token_file = dir.path().join("admin-token");
    let token = "s3cret-token-value";
    std::fs::write(&token_file, token).unwrap();
    let rd = Routerd::launch(&config(vec![Route::respond("file-route").m(path("/file"))]))
        .arg("--admin-token-file")
        .arg(&token_file)
        .start()
        .await;
    let good = format!("Bearer {token}");
    let json_ct = ("content-type", "application/json");
    let body = answer("guarded", "/guarded", "guarded").to_string();

    for (what, auth) in [
        ("no Authorization", None),
        ("a wrong token", Some("Bearer not-the-token")),
        ("the token without Bearer", Some(token)),
        ("Basic auth", Some("Basic czNjcmV0LXRva2VuLXZhbHVl")),
        ("a token prefix", Some("Bearer s3cret")),
    ] {
        let mut headers = vec![json_ct];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let resp = rd
            .admin_request("POST", ROUTES, &headers, body.clone())
            .await;
        assert_error(&resp, 401, "unauthorized", &format!("POST with {what}"));
    }
    assert_eq!(
        traffic(&rd, "/guarded").await.0,
        404,
        "an unauthorised POST serves"
    );

    let resp = rd
        .admin_request("POST", ROUTES, &[json_ct, ("authorization", &good)], body)
        .await;
    assert_status(&resp, 201, "POST with the token");
    assert_eq!(traffic(&rd, "/guarded").await.0, 200);

    let put = answer("guarded", "/guarded", "v2").to_string();
    let resp = rd
        .admin_request("PUT", &route_url("guarded"), &[json_ct], put.clone())
        .await;
    assert_error(&resp, 401, "unauthorized", "PUT without the token");
    let resp = rd
        .admin_request("DELETE", &route_url("guarded"), &[], "")
        .await;
    assert_error(&resp, 401, "unauthorized", "DELETE without the token");
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=sneaky"),
            &[("content-type", "application/wasm")],
            "\0asm",
        )
        .await;
    assert_error(
        &resp,
        401,
        "unauthorized",
        "plugin upload without the token",
    );
    assert!(!rd.plugins_dir().join("sneaky.wasm").exists());

    // Reads need no token.
    assert_status(&rd.admin_get(ROUTES).await, 200, "GET routes");
    assert_status(&get_route(&rd, "guarded").await, 200, "GET guarded");
    assert_status(&rd.admin_get(PLUGINS).await, 200, "GET plugins");
    assert_status(&rd.admin_get("/healthz").await, 200, "GET healthz");

    let resp = rd
        .admin_request(
            "PUT",
            &route_url("guarded"),
            &[json_ct, ("authorization", &good)],
            put,
        )
        .await;
    assert_status(&resp, 200, "PUT with the token");
    assert_eq!(traffic(&rd, "/guarded").await, (200, "v2".to_owned()));
    let resp = rd
        .admin_request(
            "DELETE",
            &route_url("guarded"),
            &[("authorization", &good)],
            "",
        )
        .await;
    assert_eq!(
        resp.status,
        204,
        "DELETE with the token: {}",
        resp.describe()
    );
    assert_eq!(traffic(&rd, "/guarded").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_address_needs_a_token_file() {
    // Only the refusal is observed: nothing is ever sent to a non-loopback address.
    let outcome = Routerd::launch(&config(vec![]))
        .admin_addr("0.0.0.0:0")
        .run_to_exit(STARTUP_TIMEOUT)
        .await;
    assert!(
        !outcome.started,
        "routerd served with --admin 0.0.0.0:0 and no token file; stderr:\n{}",
        outcome.stderr
    );
    let status = outcome.status.expect("routerd neither exited nor started");
    assert!(!status.success(), "exit status {status}");
    let text = format!("{}\n{}", outcome.stdout, outcome.stderr).to_lowercase();
    assert!(
        text.contains("token"),
        "the refusal must say a token is needed; output:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_upload_use_refuse_and_force_delete() {
    let rd = Routerd::launch(&config(vec![Route::respond("fallback").m(path("/sel"))]))
        .warm_cache()
        .start()
        .await;
    let wasm = std::fs::read(dist_plugin("header-eq")).unwrap();
    let wasm_ct = [("content-type", "application/wasm")];

    // Upload: 201 with kind and sha256, listed, written to the plugins directory.
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=sel"),
            &wasm_ct,
            wasm.clone(),
        )
        .await;
    let plugin = assert_status(&resp, 201, "upload header-eq as sel");
    assert_eq!(plugin["name"], "sel", "{plugin}");
    assert_eq!(plugin["kind"], "predicate", "{plugin}");
    assert_eq!(plugin["sha256"], sha256_hex(&wasm), "{plugin}");
    let listed = assert_status(&rd.admin_get(PLUGINS).await, 200, "GET plugins");
    let entry = listed["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sel")
        .cloned()
        .unwrap_or_else(|| panic!("sel not listed: {listed}"));
    assert_eq!(entry["sha256"], sha256_hex(&wasm));
    assert_eq!(entry["size"], wasm.len());
    let on_disk = std::fs::read(rd.plugins_dir().join("sel.wasm")).expect("sel.wasm written");
    assert_eq!(sha256_hex(&on_disk), sha256_hex(&wasm));
    let info = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/sel")).await,
        200,
        "GET sel",
    );
    assert_eq!(info["kind"], "predicate", "{info}");

    // A route can use it at once.
    let route = json!({
        "name": "selected",
        "priority": 10,
        "matchers": [{"condition": "path", "pattern": "/sel"},
                     {"condition": "plugin", "plugin": "sel", "args": ["x-sel", "yes"]}],
        "filters": [{"name": "respond", "args": ["200", "selected"]}],
    });
    create(&rd, &route).await;
    let yes = rd.request("GET", "/sel", &[("x-sel", "yes")], "").await;
    assert_eq!((yes.status, yes.text().as_str()), (200, "selected"));
    assert_eq!(traffic(&rd, "/sel").await, (200, "fallback".to_owned()));
    let info = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/sel")).await,
        200,
        "GET sel",
    );
    assert!(
        info["used_by"]
            .as_array()
            .is_some_and(|u| u.iter().any(|r| r == "selected")),
        "used_by must name the route: {info}"
    );

    // Garbage: 400, nothing written, nothing replaced.
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=junk"),
            &wasm_ct,
            "not wasm at all",
        )
        .await;
    assert_error(&resp, 400, "invalid_plugin", "garbage upload");
    assert!(
        !rd.plugins_dir().join("junk.wasm").exists(),
        "junk.wasm written"
    );
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=sel"),
            &wasm_ct,
            b"\0asm\x0d\0\x01\0garbage".to_vec(),
        )
        .await;
    assert_error(&resp, 400, "invalid_plugin", "garbage over sel");
    let info = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/sel")).await,
        200,
        "GET sel",
    );
    assert_eq!(info["sha256"], sha256_hex(&wasm), "garbage replaced sel");
    let yes = rd.request("GET", "/sel", &[("x-sel", "yes")], "").await;
    assert_eq!(
        yes.text(),
        "selected",
        "sel stopped working after a refused upload"
    );

    // Bad names.
    for name in ["../x", "a/b", "..%2Fx", ""] {
        let resp = rd
            .admin_request(
                "POST",
                &format!("{PLUGINS}?name={name}"),
                &wasm_ct,
                wasm.clone(),
            )
            .await;
        assert_error(&resp, 400, "invalid_plugin_name", &format!("name {name:?}"));
    }
    assert!(
        !rd.dir().join("x.wasm").exists(),
        "escaped the plugins directory"
    );

    // In use: 409 without force; with force 204 and the route is excluded.
    let resp = rd
        .admin_json("DELETE", &format!("{PLUGINS}/sel"), None)
        .await;
    assert_error(&resp, 409, "plugin_in_use", "DELETE sel in use");
    assert_status(
        &rd.admin_get(&format!("{PLUGINS}/sel")).await,
        200,
        "GET sel",
    );
    let resp = rd
        .admin_json("DELETE", &format!("{PLUGINS}/sel?force=true"), None)
        .await;
    assert_eq!(resp.status, 204, "forced DELETE: {}", resp.describe());
    let resp = rd.admin_get(&format!("{PLUGINS}/sel")).await;
    assert_error(&resp, 404, "plugin_not_found", "GET sel after delete");
    assert!(
        !rd.plugins_dir().join("sel.wasm").exists(),
        "sel.wasm still in the plugins directory"
    );
    let mut excluded = Value::Null;
    let became = wait_until(
        async || {
            excluded = get_route(&rd, "selected").await.json();
            excluded["status"] == "excluded"
        },
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(
        became,
        "route not excluded after its plugin went: {excluded}"
    );
    let reason = excluded["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("sel"),
        "the reason must name the plugin: {excluded}"
    );
    let yes = rd.request("GET", "/sel", &[("x-sel", "yes")], "").await;
    assert_eq!(yes.text(), "fallback", "an excluded route served");
    let resp = rd
        .admin_json("DELETE", &format!("{PLUGINS}/sel"), None)
        .await;
    assert_error(&resp, 404, "plugin_not_found", "DELETE sel twice");

    // The plugin comes back, and so does the route.
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=sel"),
            &wasm_ct,
            wasm.clone(),
        )
        .await;
    assert_status(&resp, 201, "upload sel again");
    let back = wait_until(
        async || get_route(&rd, "selected").await.json()["status"] == "active",
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(back, "route not active again after its plugin came back");
    let yes = rd.request("GET", "/sel", &[("x-sel", "yes")], "").await;
    assert_eq!(yes.text(), "selected");
}

// ---------------------------------------------------------------------------------------------
// Match explainer
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_explains_fall_through() {
    let rd = Routerd::start(&config(vec![
        Route::respond("needs-header")
            .m(path("/x"))
            .m(header("x-a", "1"))
            .priority(10),
        Route::respond("plain").m(path("/x")),
    ]))
    .await;
    let explain = |body: Value| {
        let rd = &rd;
        async move {
            let resp = rd.admin_json("POST", "/api/v1/match", Some(&body)).await;
            assert_status(&resp, 200, &format!("match {body}"))
        }
    };

    let doc = explain(json!({"method": "GET", "path": "/x", "headers": {"x-a": "2"}})).await;
    assert_eq!(doc["decision"], "route", "{doc}");
    assert_eq!(doc["route"], "plain", "{doc}");
    let candidates = doc["candidates"].as_array().expect("candidates");
    let first = &candidates[0];
    assert_eq!(first["route"], "needs-header", "{doc}");
    assert_eq!(first["result"], "failed", "{doc}");
    let failed = first["failed"].as_str().unwrap_or_default();
    assert!(
        failed.contains("matchers[1]") && failed.contains("header") && failed.contains("x-a"),
        "the failure must name the matcher: {failed:?}"
    );
    let plain = candidates
        .iter()
        .position(|c| c["route"] == "plain")
        .expect("plain among the candidates");
    assert!(plain > 0);
    assert_eq!(candidates[plain]["result"], "matched", "{doc}");
    // It agrees with the proxy.
    let resp = rd.request("GET", "/x", &[("x-a", "2")], "").await;
    assert_eq!(resp.text(), "plain");

    let doc = explain(json!({"method": "GET", "path": "/x", "headers": {"x-a": "1"}})).await;
    assert_eq!(doc["decision"], "route", "{doc}");
    assert_eq!(doc["route"], "needs-header", "{doc}");
    assert_eq!(doc["candidates"][0]["route"], "needs-header", "{doc}");
    assert_eq!(doc["candidates"][0]["result"], "matched", "{doc}");

    // Only `path` is required; nothing matching is not_found.
    let doc = explain(json!({"path": "/nothing/here"})).await;
    assert_eq!(doc["decision"], "not_found", "{doc}");
    assert!(doc["route"].is_null(), "{doc}");

    let resp = rd
        .admin_request(
            "POST",
            "/api/v1/match",
            &[("content-type", "application/json")],
            "{\"method\": ",
        )
        .await;
    assert_error(&resp, 400, "invalid_body", "match with malformed JSON");

    // The other decisions, and the other request fields.
    let post_only = Route::respond("post-only")
        .m(path("/form"))
        .m(method("POST"));
    let by_host = Route::respond("by-host")
        .m(path("/h"))
        .m(host("api.example.com"));
    let by_body = Route::respond("by-body").m(path("/b")).m(matcher(
        "body_field",
        Some("user.tier"),
        "gold",
        false,
    ));
    create(&rd, &post_only.build()).await;
    create(&rd, &by_host.build()).await;
    create(&rd, &by_body.build()).await;
    create(&rd, &answer("dir", "/dir/", "dir")).await;
    let doc = explain(json!({"method": "GET", "path": "/form"})).await;
    assert_eq!(doc["decision"], "method_not_allowed", "{doc}");
    let doc = explain(json!({"method": "POST", "path": "/form"})).await;
    assert_eq!(doc["route"], "post-only", "{doc}");
    let doc = explain(json!({"method": "GET", "path": "/dir"})).await;
    assert_eq!(doc["decision"], "redirect", "{doc}");
    let doc = explain(json!({"path": "/h", "host": "api.example.com"})).await;
    assert_eq!(doc["route"], "by-host", "{doc}");
    let doc = explain(json!({"path": "/h", "host": "other.example.com"})).await;
    assert_eq!(doc["decision"], "not_found", "{doc}");
    assert_eq!(doc["candidates"][0]["result"], "failed", "{doc}");
    let doc = explain(json!({"method": "POST", "path": "/b",
                             "body": "{\"user\": {\"tier\": \"gold\"}}"}))
    .await;
    assert_eq!(doc["route"], "by-body", "{doc}");
    let doc = explain(json!({"method": "POST", "path": "/b",
                             "body": "{\"user\": {\"tier\": \"tin\"}}"}))
    .await;
    assert_eq!(doc["decision"], "not_found", "{doc}");

    // With a default rule, an unmatched request gets it.
    let default_rule = json!({"name": "fallback-rule", "default_rule": true, "matchers": [],
                              "filters": [{"name": "respond", "args": ["200", "default"]}]});
    create(&rd, &default_rule).await;
    let doc = explain(json!({"path": "/nothing/here"})).await;
    assert_eq!(doc["route"], "fallback-rule", "{doc}");
    assert_eq!(
        traffic(&rd, "/nothing/here").await,
        (200, "default".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// One sample of Prometheus text: name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of Prometheus (or OpenMetrics) text; comments are skipped.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(_) => {
                let close = line.rfind('}').expect("closing brace");
                (&line[..close + 1], &line[close + 1..])
            }
            None => line.split_at(line.find(' ').expect("sample value")),
        };
        let value: f64 = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let (name, labels) = match series.find('{') {
            Some(open) => {
                let mut labels = BTreeMap::new();
                let inner = &series[open + 1..series.len() - 1];
                let mut rest = inner;
                while let Some(eq) = rest.find("=\"") {
                    let key = rest[..eq].trim_start_matches(',').trim().to_owned();
                    let after = &rest[eq + 2..];
                    let end = after.find('"').expect("closing quote");
                    labels.insert(key, after[..end].to_owned());
                    rest = &after[end + 1..];
                }
                (series[..open].to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// The sum of the samples named `name` whose labels include `labels` (`None` if there is none).
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Scrapes `/metrics`, checking it is Prometheus text.
async fn scrape(rd: &Routerd) -> Vec<Sample> {
    let resp = rd.admin_get("/metrics").await;
    assert_eq!(resp.status, 200, "GET /metrics: {}", resp.describe());
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") || content_type.contains("openmetrics-text"),
        "metrics content type {content_type:?}"
    );
    parse_metrics(&resp.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_plugin_calls_and_table_changes() {
    let rd = Routerd::launch(&config(vec![
        Route::respond("plain").m(path("/m")),
        Route(json!({
            "name": "teapot",
            "matchers": [{"condition": "path", "pattern": "/teapot"}],
            "filters": [{"name": "respond", "args": ["418", "short and stout"]}],
        })),
        Route::respond("gated")
            .m(path("/p"))
            .m(plugin_pred("header-eq", &["x-p", "1"])),
        Route::respond("trapping")
            .m(path("/trap"))
            .m(plugin_pred("bad-panic", &["panic"])),
    ]))
    .warm_cache()
    .plugin("header-eq")
    .plugin("bad-panic")
    .start()
    .await;
    let before = scrape(&rd).await;
    let requests = |s: &[Sample], route: &str, status: &str| {
        metric(
            s,
            "routerd_requests_total",
            &[("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    let plugin = |s: &[Sample], name: &str, plugin: &str| {
        metric(s, name, &[("plugin", plugin)]).unwrap_or(0.0)
    };
    let table_version = |s: &[Sample]| {
        metric(s, "routerd_table_version", &[]).expect("routerd_table_version in /metrics")
    };

    for _ in 0..5 {
        assert_eq!(rd.get("/m").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(rd.get("/teapot").await.status, 418);
    }
    for _ in 0..3 {
        let resp = rd.request("GET", "/p", &[("x-p", "1")], "").await;
        assert_eq!(resp.text(), "gated");
    }
    for _ in 0..2 {
        assert_eq!(
            rd.get("/trap").await.status,
            404,
            "a trapping predicate matched"
        );
    }

    let mut after = Vec::new();
    let counted = wait_until(
        async || {
            after = scrape(&rd).await;
            requests(&after, "plain", "2xx") >= requests(&before, "plain", "2xx") + 5.0
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(
        counted,
        "routerd_requests_total{{route=\"plain\",status=\"2xx\"}} went from {} to {}",
        requests(&before, "plain", "2xx"),
        requests(&after, "plain", "2xx")
    );
    assert_eq!(
        requests(&after, "plain", "2xx") - requests(&before, "plain", "2xx"),
        5.0
    );
    assert_eq!(
        requests(&after, "teapot", "4xx") - requests(&before, "teapot", "4xx"),
        2.0
    );
    assert_eq!(
        requests(&after, "gated", "2xx") - requests(&before, "gated", "2xx"),
        3.0
    );
    let count = metric(
        &after,
        "routerd_request_duration_seconds_count",
        &[("route", "plain")],
    )
    .expect("routerd_request_duration_seconds_count{route=\"plain\"}");
    assert!(count >= 5.0, "latency histogram count {count}");
    assert!(
        after
            .iter()
            .any(|s| s.name == "routerd_request_duration_seconds_bucket"
                && s.labels.get("route").map(String::as_str) == Some("plain")
                && s.labels.contains_key("le")),
        "no latency buckets for route plain"
    );

    let calls = "routerd_plugin_calls_total";
    let traps = "routerd_plugin_traps_total";
    assert!(
        plugin(&after, calls, "header-eq") >= plugin(&before, calls, "header-eq") + 3.0,
        "header-eq calls went from {} to {}",
        plugin(&before, calls, "header-eq"),
        plugin(&after, calls, "header-eq")
    );
    assert!(
        plugin(&after, traps, "bad-panic") >= plugin(&before, traps, "bad-panic") + 2.0,
        "bad-panic traps went from {} to {}",
        plugin(&before, traps, "bad-panic"),
        plugin(&after, traps, "bad-panic")
    );
    assert_eq!(plugin(&after, traps, "header-eq"), 0.0);
    assert_eq!(
        metric(
            &after,
            "routerd_plugin_deadline_hits_total",
            &[("plugin", "header-eq")]
        ),
        Some(0.0),
        "routerd_plugin_deadline_hits_total{{plugin=\"header-eq\"}}"
    );

    // A change moves the table version.
    let version_before = table_version(&after);
    create(&rd, &answer("new-route", "/new", "new")).await;
    let version_after = table_version(&scrape(&rd).await);
    assert!(
        version_after > version_before,
        "routerd_table_version {version_before} -> {version_after} after a POST"
    );

    // Label sets stay bounded: statuses by class only, and a deleted route's series go.
    assert!(
        after
            .iter()
            .filter(|s| s.name == "routerd_requests_total")
            .all(|s| s.labels.get("status").is_some_and(|c| c.ends_with("xx"))),
        "a status label that is not a class"
    );
    assert_eq!(rd.get("/new").await.status, 200);
    let has_series = |s: &[Sample]| {
        s.iter()
            .any(|x| x.labels.get("route").map(String::as_str) == Some("new-route"))
    };
    assert!(has_series(&scrape(&rd).await), "no series for new-route");
    let resp = rd.admin_json("DELETE", &route_url("new-route"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    assert!(
        !has_series(&scrape(&rd).await),
        "the deleted route's series are still in /metrics"
    );
}

// ---------------------------------------------------------------------------------------------
// Health checks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_report_up_and_down() {
    let live = Backend::start("live").await;
    let dead_target = format!("http://127.0.0.1:{}", unused_port());
    let rd = Routerd::start(&config(vec![
        Route::proxy("to-live", &live.url()).m(path("/live")),
        Route::respond("inline").m(path("/inline")),
    ]))
    .await;
    create(&rd, &to_backend("to-dead", "/dead", &dead_target)).await;

    let mut doc = Value::Null;
    let status_of = |doc: &Value, route: &str| {
        doc["routes"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["route"] == route))
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
    };
    let settled = wait_until(
        async || {
            doc = assert_status(&rd.admin_get("/api/v1/health").await, 200, "GET health");
            status_of(&doc, "to-live").as_deref() == Some("up")
                && status_of(&doc, "to-dead").as_deref() == Some("down")
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(
        settled,
        "health did not settle to live up / dead down: {doc}"
    );
    let routes = doc["routes"].as_array().unwrap();
    let entry = |route: &str| routes.iter().find(|r| r["route"] == route).unwrap();
    let up = entry("to-live");
    assert!(
        up["target"]
            .as_str()
            .is_some_and(|t| t.contains(&live.addr.to_string())),
        "{up}"
    );
    assert!(up["latency_ms"].is_number(), "latency_ms: {up}");
    assert!(!up["since"].is_null(), "since: {up}");
    let down = entry("to-dead");
    assert!(
        down["target"]
            .as_str()
            .is_some_and(|t| t.contains(dead_target.trim_start_matches("http://"))),
        "{down}"
    );
    assert!(!down["since"].is_null(), "since: {down}");
    assert!(
        routes.iter().all(|r| r["route"] != "inline"),
        "a route without a backend has no health: {doc}"
    );

    // A deleted route leaves the list.
    let resp = rd.admin_json("DELETE", &route_url("to-dead"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    let gone = wait_until(
        async || {
            doc = assert_status(&rd.admin_get("/api/v1/health").await, 200, "GET health");
            status_of(&doc, "to-dead").is_none() && status_of(&doc, "to-live").is_some()
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(gone, "a deleted route is still health-checked: {doc}");
}

// ---------------------------------------------------------------------------------------------
// Under load
// ---------------------------------------------------------------------------------------------

/// The `X-Gen` values one load task saw on one path, in order.
#[derive(Default)]
struct Seen {
    failures: Vec<String>,
    requests: usize,
    gens: BTreeMap<&'static str, Vec<u64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_under_steady_load_fail_no_request() {
    const TASKS: usize = 3;
    const MAX_LOAD: Duration = Duration::from_secs(10);
    const MAX_CHURN: Duration = Duration::from_secs(7);
    let a = Backend::start("hot-a").await;
    let b = Backend::start("hot-b").await;
    let rd = Arc::new(
        Routerd::start(&config(vec![Route::respond("file-route").m(path("/file"))])).await,
    );
    let hot = |name: &str, p: &str, backend: &Backend, generation: u64| {
        let mut r = to_backend(name, p, &backend.url());
        r["filters"] = json!([{"name": "set_response_header",
                               "args": ["X-Gen", generation.to_string()]}]);
        r
    };
    create(&rd, &hot("hot-a", "/hot/a", &a, 0)).await;
    create(&rd, &hot("hot-b", "/hot/b", &b, 0)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (rd, stop) = (rd.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut i = t;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LOAD {
                let (p, backend) = if i % 2 == 0 {
                    ("/hot/a", "hot-a")
                } else {
                    ("/hot/b", "hot-b")
                };
                i += 1;
                seen.requests += 1;
                match rd.try_request("GET", p, &[], "").await {
                    Ok(resp)
                        if resp.status == 200 && resp.backend().as_deref() == Some(backend) =>
                    {
                        match resp.header("x-gen").and_then(|g| g.parse().ok()) {
                            Some(g) => seen.gens.entry(p).or_default().push(g),
                            None => seen.failures.push(format!("GET {p}: no X-Gen")),
                        }
                    }
                    Ok(resp) => seen.failures.push(format!("GET {p}: {}", resp.describe())),
                    Err(e) => seen.failures.push(format!("GET {p}: {e}")),
                }
            }
            seen
        }));
    }

    // Churn: other routes come and go, the hot routes change generation.
    let mut last_gen = 0;
    for generation in 1..=120u64 {
        if started.elapsed() > MAX_CHURN {
            break;
        }
        let churn = format!("churn-{generation}");
        create(
            &rd,
            &answer(&churn, &format!("/churn/{generation}"), &churn),
        )
        .await;
        update(&rd, "hot-a", &hot("hot-a", "/hot/a", &a, generation)).await;
        // Visible at once to a new request.
        let resp = rd.get("/hot/a").await;
        assert_eq!(
            resp.header("x-gen"),
            Some(generation.to_string()),
            "hot-a generation {generation} not visible after its PUT: {}",
            resp.describe()
        );
        let mut moved = answer(&format!("{churn}-r"), &format!("/churn/{generation}"), "r");
        moved["priority"] = json!(3);
        update(&rd, &churn, &moved).await;
        update(&rd, "hot-b", &hot("hot-b", "/hot/b", &b, generation)).await;
        assert_eq!(
            traffic(&rd, &format!("/churn/{generation}")).await,
            (200, "r".to_owned())
        );
        let resp = rd
            .admin_json("DELETE", &route_url(&format!("{churn}-r")), None)
            .await;
        assert_eq!(resp.status, 204, "DELETE {churn}-r: {}", resp.describe());
        last_gen = generation;
    }
    assert!(
        last_gen >= 3,
        "only {last_gen} churn rounds in {MAX_CHURN:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    let mut total = 0;
    let mut finals = BTreeMap::new();
    for (t, task) in tasks.into_iter().enumerate() {
        let seen = task.await.unwrap();
        total += seen.requests;
        failures.extend(
            seen.failures
                .iter()
                .take(10)
                .map(|f| format!("task {t}: {f}")),
        );
        for (p, gens) in &seen.gens {
            // Each task's requests are sequential: a generation never goes backwards.
            if let Some(w) = gens.windows(2).find(|w| w[1] < w[0]) {
                failures.push(format!(
                    "task {t}: {p} went from X-Gen {} back to {}",
                    w[0], w[1]
                ));
            }
            let last = finals.entry(*p).or_insert(0);
            *last = (*last).max(*gens.last().unwrap());
        }
    }
    assert_no_failures(&failures);
    assert!(total >= 50, "only {total} requests under load");
    for p in ["/hot/a", "/hot/b"] {
        assert_eq!(
            finals.get(p).copied(),
            Some(last_gen),
            "the load on {p} never saw the last generation {last_gen}"
        );
    }
    let names = route_names(&rd).await;
    assert_eq!(
        names,
        ["file-route", "hot-a", "hot-b"].map(str::to_owned).into(),
        "churn routes left behind"
    );
}

// ---------------------------------------------------------------------------------------------
// One name space: what is served equals what a restart loads
// ---------------------------------------------------------------------------------------------

/// The routes as listed, keyed by (name, source), without the fields a restart renumbers for
/// file routes.
async fn listing(rd: &Routerd) -> BTreeMap<(String, String), Value> {
    all_routes(rd)
        .await
        .into_iter()
        .map(|mut r| {
            let key = (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["source"].as_str().unwrap_or_default().to_owned(),
            );
            if key.1 == "file" {
                r.as_object_mut().map(|o| o.remove("version"));
            }
            (key, r)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_route_taking_an_api_name_shadows_it_everywhere() {
    let data = TempDir::new("shadow");
    let before = config(vec![answer_route("file-a", "/file-a", "a")]);
    let rd = Routerd::launch(&before).data_dir(data.path()).start().await;
    create(&rd, &answer("b", "/api-b", "api b")).await;

    let after = config(vec![
        answer_route("file-a", "/file-a", "a"),
        answer_route("b", "/file-b", "file b"),
    ]);
    rd.write_config(&after);
    let reloaded = wait_until(
        async || traffic(&rd, "/file-b").await == (200, "file b".to_owned()),
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(reloaded, "the file route b never served");
    assert_eq!(
        traffic(&rd, "/api-b").await.0,
        404,
        "the shadowed route serves"
    );
    let listed = listing(&rd).await;
    let file_b = &listed[&("b".to_owned(), "file".to_owned())];
    let api_b = &listed[&("b".to_owned(), "api".to_owned())];
    assert_eq!(file_b["status"], "active", "{file_b}");
    assert_eq!(api_b["status"], "excluded", "{api_b}");
    assert!(
        api_b["reason"]
            .as_str()
            .is_some_and(|r| r.contains("config file")),
        "the reason must say the file took the name: {api_b}"
    );
    assert_eq!(get_route(&rd, "b").await.json()["source"], "file");

    // Unrelated writes keep working; writes to the name are refused with a reason.
    create(&rd, &answer("c", "/c", "c")).await;
    assert_error(
        &rd.admin_json("POST", ROUTES, Some(&answer("b", "/b2", "x")))
            .await,
        409,
        "route_conflict",
        "POST b while the file has b",
    );
    assert_error(
        &rd.admin_json("PUT", &route_url("b"), Some(&answer("b", "/b2", "x")))
            .await,
        409,
        "read_only_route",
        "PUT b while the file has b",
    );

    // A restart loads exactly that state.
    let served = listing(&rd).await;
    drop(rd);
    let rd = Routerd::launch(&after).data_dir(data.path()).start().await;
    assert_eq!(
        listing(&rd).await,
        served,
        "the listing differs after a restart"
    );
    assert_eq!(traffic(&rd, "/file-b").await, (200, "file b".to_owned()));
    assert_eq!(traffic(&rd, "/api-b").await.0, 404);
    assert_eq!(traffic(&rd, "/c").await, (200, "c".to_owned()));

    // The file drops the name: the API route serves again.
    rd.write_config(&before);
    let back = wait_until(
        async || traffic(&rd, "/api-b").await == (200, "api b".to_owned()),
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(back, "the API route b never came back");
    assert_eq!(get_route(&rd, "b").await.json()["status"], "active");

    // And a shadowed API route can be deleted.
    rd.write_config(&after);
    let shadowed = wait_until(
        async || traffic(&rd, "/file-b").await.0 == 200,
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(shadowed, "the file route b never served again");
    let resp = rd.admin_json("DELETE", &route_url("b"), None).await;
    assert_eq!(resp.status, 204, "DELETE shadowed b: {}", resp.describe());
    let listed = listing(&rd).await;
    assert!(
        !listed.contains_key(&("b".to_owned(), "api".to_owned())),
        "the shadowed route is still listed after DELETE"
    );
    assert!(listed.contains_key(&("b".to_owned(), "file".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_document_that_names_a_route_twice() {
    let data = TempDir::new("apply-dup");
    let cfg = config(vec![]);
    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    create(&rd, &answer("x", "/one", "one")).await;
    let doc = json!({"routes": [answer("x", "/two", "two"), answer("x", "/one", "one")]});
    let message = assert_error(
        &rd.admin_json("POST", &format!("{ROUTES}/apply"), Some(&doc))
            .await,
        409,
        "route_conflict",
        "apply [x, x]",
    );
    assert!(message.contains("\"x\""), "the message names x: {message}");
    assert_eq!(traffic(&rd, "/one").await, (200, "one".to_owned()));
    assert_eq!(traffic(&rd, "/two").await.0, 404);
    drop(rd);
    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    assert_eq!(traffic(&rd, "/one").await, (200, "one".to_owned()));
    assert_eq!(traffic(&rd, "/two").await.0, 404);
}

/// A small deterministic generator (the test's seed is printed on failure).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_sequence_of_writes_serves_what_a_restart_loads() {
    const NAMES: u64 = 6;
    let seed = 0x5eed_2026;
    let mut rng = Lcg(seed);
    let data = TempDir::new("sequence");
    let files = [
        config(vec![answer_route("f", "/f", "f")]),
        // Takes API names r0 and r1 when it is the file.
        config(vec![
            answer_route("f", "/f", "f2"),
            answer_route("r0", "/file-r0", "file r0"),
            answer_route("r1", "/file-r1", "file r1"),
        ]),
    ];
    let mut file = 0;
    let mut rd = Routerd::launch(&files[file])
        .data_dir(data.path())
        .start()
        .await;
    let probe_paths: Vec<String> = (0..NAMES)
        .map(|i| format!("/p{i}"))
        .chain(["/f", "/file-r0", "/file-r1"].map(String::from))
        .collect();
    let mut log = Vec::new();
    for round in 0..4 {
        for _ in 0..25 {
            let name = format!("r{}", rng.below(NAMES));
            let p = format!("/p{}", rng.below(NAMES));
            let body = format!("b{}", rng.below(1000));
            let (method, url, doc) = match rng.below(6) {
                0 | 1 => ("POST", ROUTES.to_owned(), Some(answer(&name, &p, &body))),
                2 => {
                    let to = format!("r{}", rng.below(NAMES));
                    ("PUT", route_url(&name), Some(answer(&to, &p, &body)))
                }
                3 => ("DELETE", route_url(&name), None),
                4 => {
                    let routes: Vec<Value> = (0..rng.below(4))
                        .map(|_| {
                            answer(
                                &format!("r{}", rng.below(NAMES)),
                                &format!("/p{}", rng.below(NAMES)),
                                &format!("a{}", rng.below(1000)),
                            )
                        })
                        .collect();
                    (
                        "POST",
                        format!("{ROUTES}/apply"),
                        Some(json!({ "routes": routes })),
                    )
                }
                _ => (
                    "POST",
                    ROUTES.to_owned(),
                    Some(answer(&name, "no-slash", &body)),
                ),
            };
            let resp = rd.admin_json(method, &url, doc.as_ref()).await;
            assert!(
                resp.status < 500,
                "seed {seed:#x}: {method} {url} answered {}",
                resp.describe()
            );
            log.push(format!("{method} {url} -> {}", resp.status));
        }
        if round == 1 {
            file = 1;
            rd.write_config(&files[file]);
            let applied = wait_until(
                async || traffic(&rd, "/f").await == (200, "f2".to_owned()),
                RELOAD_TIMEOUT,
            )
            .await;
            assert!(applied, "the config change never applied");
        }
        let served = listing(&rd).await;
        let mut answers = Vec::new();
        for p in &probe_paths {
            answers.push((p.clone(), traffic(&rd, p).await));
        }
        if round % 2 == 0 {
            drop(rd);
        } else {
            rd.kill9();
        }
        rd = Routerd::launch(&files[file])
            .data_dir(data.path())
            .start()
            .await;
        let context = || format!("seed {seed:#x}, round {round}, after:\n{}", log.join("\n"));
        assert_eq!(
            listing(&rd).await,
            served,
            "the listing differs after a restart; {}",
            context()
        );
        for (p, before) in &answers {
            assert_eq!(
                &traffic(&rd, p).await,
                before,
                "GET {p} differs after a restart; {}",
                context()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_probe_a_shared_backend_once_per_round() {
    // A bare listener that only counts connections: every one is a health probe.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let counting = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let routes: Vec<Route> = (0..10)
        .map(|i| Route::proxy(&format!("shared-{i}"), &target).m(path(&format!("/s{i}"))))
        .collect();
    let rd = Routerd::start(&config(routes)).await;
    let first = wait_until(
        async || accepted.load(Ordering::SeqCst) > 0,
        Duration::from_secs(10),
    )
    .await;
    assert!(first, "no health probe reached the backend");
    let start = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let probes = accepted.load(Ordering::SeqCst) - start;
    // One-second rounds: two or three in the window, one probe each (ten routes share it).
    assert!(
        (1..=4).contains(&probes),
        "{probes} probes in 2.5 s for one backend shared by 10 routes"
    );
    let doc = assert_status(&rd.admin_get("/api/v1/health").await, 200, "GET health");
    let up = doc["routes"]
        .as_array()
        .map_or(0, |rs| rs.iter().filter(|r| r["status"] == "up").count());
    assert_eq!(up, 10, "every route sharing the backend is reported: {doc}");
    counting.abort();
}

/// A slow write (a plugin's `validate` sleeping 900 ms while a route is created) holds up
/// neither admin reads nor proxied requests: both are answered while the write is still
/// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_write_holds_up_no_read_and_no_request() {
    let rd = Routerd::launch(&config(vec![Route::respond("fast").m(path("/fast"))]))
        .warm_cache()
        .plugin("bad-sleep")
        .start()
        .await;
    let admin = rd.admin;
    let slow = json!({
        "name": "slow",
        "matchers": [
            {"condition": "path", "pattern": "/slow"},
            {"condition": "plugin", "plugin": "bad-sleep", "args": ["900", "in-validate"]},
        ],
        "filters": [{"name": "respond", "args": ["200", "slow"]}],
    });
    let write = tokio::spawn(async move {
        request_to(
            admin,
            "POST",
            ROUTES,
            &[("content-type", "application/json")],
            slow.to_string(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    for round in 0..3 {
        let listed = rd.admin_get(ROUTES).await;
        assert_eq!(listed.status, 200, "{}", listed.describe());
        let proxied = rd.get("/fast").await;
        assert_eq!(proxied.text(), "fast");
        assert!(
            !write.is_finished(),
            "round {round}: the write finished first, so this proves nothing (validate too fast?)"
        );
    }
    let created = write.await.unwrap().unwrap();
    assert_eq!(created.status, 201, "{}", created.describe());
    assert_eq!(rd.get("/slow").await.text(), "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_race_safely_and_read_settings_like_the_watcher() {
    let data = TempDir::new("uploads");
    let cfg = config(vec![Route::respond("fallback").m(path("/u"))]);
    let rd = Routerd::launch(&cfg)
        .warm_cache()
        .data_dir(data.path())
        .start()
        .await;
    let builds = [
        std::fs::read(dist_plugin("header-eq")).unwrap(),
        std::fs::read(dist_plugin("header-eq-copyall")).unwrap(),
    ];

    // Concurrent uploads of one name: all answered, and what is loaded is what is on disk.
    let mut uploads = Vec::new();
    for i in 0..6 {
        let (admin, bytes) = (rd.admin, builds[i % 2].clone());
        uploads.push(tokio::spawn(async move {
            request_to(
                admin,
                "POST",
                &format!("{PLUGINS}?name=raced"),
                &[("content-type", "application/wasm")],
                bytes,
            )
            .await
        }));
    }
    for u in uploads {
        let resp = u.await.unwrap().unwrap();
        assert_eq!(resp.status, 201, "{}", resp.describe());
    }
    let loaded = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/raced")).await,
        200,
        "GET raced",
    );
    let on_disk = std::fs::read(rd.plugins_dir().join("raced.wasm")).unwrap();
    assert_eq!(
        loaded["sha256"],
        sha256_hex(&on_disk),
        "the loaded plugin is not the file on disk"
    );
    let leftovers: Vec<String> = std::fs::read_dir(rd.plugins_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".upload"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );

    // A malformed NAME.json: the upload is refused as the watcher would refuse the file.
    std::fs::write(rd.plugins_dir().join("configured.json"), "{ not json").unwrap();
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=configured"),
            &[("content-type", "application/wasm")],
            builds[0].clone(),
        )
        .await;
    let message = assert_error(
        &resp,
        400,
        "invalid_plugin_settings",
        "upload with bad json",
    );
    assert!(
        message.contains("configured.json"),
        "the message names the file: {message}"
    );
    assert_eq!(
        rd.admin_get(&format!("{PLUGINS}/configured")).await.status,
        404
    );
    assert!(
        !rd.plugins_dir().join("configured.wasm").exists(),
        "a refused upload was written"
    );

    // A restart loads the same plugin that was served.
    let sha = loaded["sha256"].clone();
    let plugins = rd.plugins_dir().to_owned();
    let keep = TempDir::new("uploads-plugins");
    for entry in std::fs::read_dir(&plugins).unwrap().flatten() {
        std::fs::copy(entry.path(), keep.path().join(entry.file_name())).unwrap();
    }
    drop(rd);
    let rd = Routerd::launch(&cfg)
        .warm_cache()
        .plugins_dir(keep.path())
        .start()
        .await;
    let after = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/raced")).await,
        200,
        "GET raced after a restart",
    );
    assert_eq!(after["sha256"], sha);
}

/// A route listing carries an ETag: an unchanged table answers a repeated read with a bodiless
/// 304, and any change, or another question, gets a fresh answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_listing_is_not_sent_again() {
    let rd = Routerd::start(&config(vec![answer_route("file-one", "/one", "one")])).await;
    let first = rd.admin_get(ROUTES).await;
    assert_status(&first, 200, "list");
    let etag = first.header("etag").expect("an ETag");
    let again = rd
        .admin_request("GET", ROUTES, &[("if-none-match", &etag)], "")
        .await;
    assert_eq!(again.status, 304, "{}", again.describe());
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag").as_deref(), Some(etag.as_str()));
    // Another page of the same table is another answer.
    let other = rd
        .admin_request(
            "GET",
            &format!("{ROUTES}?limit=1"),
            &[("if-none-match", &etag)],
            "",
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.describe());
    // A change makes the old tag stale.
    create(&rd, &answer("api-two", "/two", "two")).await;
    let changed = rd
        .admin_request("GET", ROUTES, &[("if-none-match", &etag)], "")
        .await;
    assert_eq!(changed.status, 200, "{}", changed.describe());
    assert_ne!(changed.header("etag"), Some(etag));
    assert_eq!(changed.json()["total"], 2);
}
