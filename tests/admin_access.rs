//! Black-box tests of who may change what through the admin API (the bearer token, a
//! non-loopback address), plugin upload and removal through it, and the match explainer. Real
//! `routerd` processes, echo backends and plugins on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use admin_common::*;
use harness::*;
use serde_json::{Value, json};

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
        .start_in_process()
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
        .start_in_process()
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
    let rd = Routerd::start_in_process(&config(vec![
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
