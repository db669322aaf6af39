//! Black-box tests of the admin API's route endpoints over HTTP: a real `routerd` process and
//! real echo backends on 127.0.0.1. Every documented status code and error code, `If-Match`
//! versions, renames, pagination, file routes (read-only and system routes), concurrent
//! writers and oversized bodies. The rest of the API: `admin_state.rs` (persistence, one name
//! space), `admin_access.rs` (token, plugins, match), `admin_observe.rs` (metrics, health,
//! changes under load).
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::collections::BTreeSet;
use std::sync::Arc;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_guards_put_and_delete() {
    let rd = Routerd::start_in_process(&config(vec![])).await;
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
    let rd = Routerd::start_in_process(&config(vec![])).await;
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
    let rd = Routerd::start_in_process(&config(vec![])).await;
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
    let rd = Arc::new(Routerd::start_in_process(&config(vec![])).await);

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
