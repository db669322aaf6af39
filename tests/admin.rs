//! Black-box tests of the admin API's route endpoints over HTTP: a real `routerd` and real echo
//! backends on 127.0.0.1. Every documented status code and error code, file routes (read-only
//! and system routes) and oversized bodies. The rest of the API: `admin_changes.rs` (`If-Match`,
//! renames, pagination, concurrent writers), `admin_state.rs` (persistence, one name space),
//! `admin_load.rs` (work under concurrency), `admin_access.rs` (token, plugins, match),
//! `admin_observe.rs` (metrics, health, changes under load).
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::collections::BTreeSet;

use admin_common::*;
use harness::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Route endpoints: status codes and bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_update_delete_with_their_status_codes() {
    let backend = Backend::start("api-backend").await;
    let rd =
        Routerd::start_in_process(&config(vec![Route::respond("file-route").m(path("/file"))]))
            .await;

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
        .start_in_process()
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
    let rd = Routerd::start_in_process(&config(vec![
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
    let rd = Routerd::start_in_process(&config(vec![])).await;
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
