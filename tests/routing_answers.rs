//! Black-box tests of what a route answers beyond matching: a real `routerd` process, requests
//! over real sockets on 127.0.0.1. The default rule, `default_url`, trailing-slash redirects,
//! JSON 404s, the built-in request and response filters, `respond` and `redirect`, the Cube
//! router's documented example, and `consumes`/`produces` (415, 406).
#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rule_catches_unmatched_and_ignores_its_matchers() {
    let mut cfg = config(vec![
        Route::respond("api").m(prefix("/api")),
        Route::respond("fallback")
            .set("default_rule", json!(true))
            .m(path("/never")),
    ]);
    // default_url is only used when there is no default rule
    cfg["default_url"] = json!(format!("http://127.0.0.1:{}", unused_port()));
    let probes = [
        probe("GET", "/api/x").route("api"),
        probe("GET", "/other").route("fallback"),
        probe("DELETE", "/x/y?z=1").route("fallback"),
        probe("GET", "/never").route("fallback"),
        // no trailing-slash redirect when a default rule exists
        probe("GET", "/api/").route("api"),
    ];
    assert_no_failures(&run_case("default rule", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_url_proxies_unmatched_requests() {
    let fallback = Backend::start("fallback").await;
    let mut cfg = config(vec![Route::respond("api").m(prefix("/api"))]);
    cfg["default_url"] = json!(fallback.url());
    let rd = Routerd::start(&cfg).await;

    let resp = rd.request("POST", "/zzz/y?x=1&y", &[], "payload").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let echo = resp.json();
    assert_eq!(echo["backend"], "fallback");
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/zzz/y");
    assert_eq!(echo["query"], "x=1&y");
    assert_eq!(echo["body"], "payload");

    let api = rd.get("/api").await;
    assert_eq!(api.text(), "api", "{}", api.describe());
    assert_eq!(fallback.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_slash_redirects() {
    let cfg = config(vec![
        Route::respond("about").m(path("/about")),
        Route::respond("docs").m(path("/docs/")),
        Route::respond("item").m(path("/items/{id}")),
    ]);
    let probes = [
        probe("GET", "/about/").redirect(301, "/about"),
        probe("GET", "/about/?a=1&b=%20").redirect(301, "/about?a=1&b=%20"),
        probe("HEAD", "/about/").redirect(301, "/about"),
        probe("POST", "/about/?y=2").redirect(308, "/about?y=2"),
        probe("DELETE", "/about/").redirect(308, "/about"),
        probe("GET", "/docs?x=1").redirect(301, "/docs/?x=1"),
        probe("PUT", "/docs").redirect(308, "/docs/"),
        probe("GET", "/items/42/").redirect(301, "/items/42"),
        // neither form matches anything
        probe("GET", "/nope/").status(404),
        probe("GET", "/about").route("about"),
        probe("GET", "/docs/").route("docs"),
    ];
    assert_no_failures(&run_case("redirects", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_json() {
    let rd = Routerd::start(&config(vec![Route::respond("only").m(path("/only"))])).await;
    let resp = rd.get("/missing").await;
    assert_eq!(resp.status, 404, "{}", resp.describe());
    assert_json_error(&resp);
    let post = rd.request("POST", "/missing", &[], "x").await;
    assert_eq!(post.status, 404, "{}", post.describe());
    assert_json_error(&post);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_filters_and_path_params() {
    let b = Backend::start("b").await;
    let cfg = config(vec![
        Route::proxy("users", &b.url())
            .m(path("/users/{id}"))
            .filter("set_request_header", &["X-User", "{id}"])
            .filter("set_request_header", &["X-Combined", "user-{id}-x"])
            .filter("remove_request_header", &["X-Secret"]),
        Route::proxy("files", &b.url())
            .m(path("/files/{*rest}"))
            .filter("set_request_header", &["X-Rest", "{rest}"]),
        Route::proxy("set-then-remove", &b.url())
            .m(path("/str"))
            .filter("set_request_header", &["X-A", "1"])
            .filter("remove_request_header", &["X-A"]),
        Route::proxy("remove-then-set", &b.url())
            .m(path("/rts"))
            .filter("remove_request_header", &["X-A"])
            .filter("set_request_header", &["X-A", "2"]),
    ]);
    let rd = Routerd::start(&cfg).await;

    let resp = rd
        .request(
            "GET",
            "/users/42",
            &[("X-User", "evil"), ("X-Secret", "s3cr3t"), ("X-Keep", "k")],
            "",
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.echoed_header("x-user"), vec!["42"], "set overrides");
    assert_eq!(resp.echoed_header("x-combined"), vec!["user-42-x"]);
    assert!(resp.echoed_header("x-secret").is_empty(), "removed");
    assert_eq!(resp.echoed_header("x-keep"), vec!["k"], "others kept");

    let resp = rd.get("/files/a/b/c.txt").await;
    assert_eq!(resp.echoed_header("x-rest"), vec!["a/b/c.txt"]);

    let resp = rd.request("GET", "/str", &[("X-A", "client")], "").await;
    assert!(
        resp.echoed_header("x-a").is_empty(),
        "set then remove: {:?}",
        resp.echoed_header("x-a")
    );
    let resp = rd.request("GET", "/rts", &[("X-A", "client")], "").await;
    assert_eq!(resp.echoed_header("x-a"), vec!["2"], "remove then set");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_path_replaces_whole_upstream_path() {
    let b = Backend::start("b").await;
    let cfg = config(vec![
        Route::proxy("plain", &b.url())
            .m(path("/p/{id}"))
            .filter("set_path", &["/v2/p/{id}"]),
        Route::proxy("based", &format!("{}/base", b.url()))
            .m(path("/items/{id}"))
            .set("strip_prefix", json!("/items"))
            .filter("set_path", &["/v2/items/{id}/detail"]),
    ]);
    let rd = Routerd::start(&cfg).await;

    let echo = rd.get("/p/3?x=y").await.json();
    assert_eq!(echo["path"], "/v2/p/3");
    assert_eq!(echo["query"], "x=y", "set_path keeps the query");

    // Neither strip_prefix nor the target's base path applies once set_path has run.
    let echo = rd.get("/items/7?full=1").await.json();
    assert_eq!(
        echo["path"], "/v2/items/7/detail",
        "set_path replaces the whole upstream path (target base path /base)"
    );
    assert_eq!(echo["query"], "full=1", "set_path keeps the query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_filters() {
    let b = Backend::builder("b")
        .header("X-Backend-Internal", "secret")
        .header("X-Keep", "yes")
        .start()
        .await;
    let cfg = config(vec![
        Route::proxy("resp", &b.url())
            .m(path("/r/{id}"))
            .filter("set_response_header", &["X-Resp", "r-{id}"])
            .filter("set_response_header", &["X-Keep", "overridden"])
            .filter("remove_response_header", &["X-Backend-Internal"]),
    ]);
    let rd = Routerd::start(&cfg).await;
    let resp = rd.get("/r/9").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.backend().as_deref(), Some("b"));
    assert_eq!(resp.header_all("x-resp"), vec!["r-9"]);
    assert_eq!(resp.header_all("x-keep"), vec!["overridden"]);
    assert!(
        resp.header("x-backend-internal").is_none(),
        "removed response header still present"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respond_and_redirect_filters() {
    let b = Backend::start("b").await;
    let cfg = config(vec![
        Route::proxy("moved", &b.url())
            .m(path("/old/{id}"))
            .filter("redirect", &["302", "/new/{id}"]),
        Route(json!({
            "name": "moved-no-target",
            "matchers": [{"condition": "path", "pattern": "/gone"}],
            "filters": [{"name": "redirect", "args": ["301", "https://elsewhere.example/"]}],
        })),
        Route(json!({
            "name": "created",
            "matchers": [{"condition": "path", "pattern": "/make/{id}"}],
            "filters": [{"name": "respond", "args": ["201", "created {id}", "text/plain"]}],
        })),
        Route(json!({
            "name": "teapot",
            "matchers": [{"condition": "path", "pattern": "/tea"}],
            "filters": [
                {"name": "set_response_header", "args": ["X-Brew", "green"]},
                {"name": "respond", "args": ["418", "[\"stout\"]", "application/json"]}
            ],
        })),
    ]);
    let rd = Routerd::start(&cfg).await;

    let resp = rd.get("/old/5").await;
    assert_eq!(resp.status, 302, "{}", resp.describe());
    assert_eq!(resp.header("location").as_deref(), Some("/new/5"));
    assert_eq!(
        b.requests(),
        0,
        "a redirect filter must not reach the backend"
    );

    let resp = rd.get("/gone").await;
    assert_eq!(resp.status, 301, "{}", resp.describe());
    assert_eq!(
        resp.header("location").as_deref(),
        Some("https://elsewhere.example/")
    );

    let resp = rd.request("POST", "/make/77", &[], "ignored").await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    assert_eq!(resp.text(), "created 77");
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "content-type {:?}",
        resp.header("content-type")
    );

    let resp = rd.get("/tea").await;
    assert_eq!(resp.status, 418, "{}", resp.describe());
    assert_eq!(resp.json(), json!(["stout"]));
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(resp.header("x-brew").as_deref(), Some("green"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cube_documented_example_loads_unchanged() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("fixtures")
        .join("cube-example.json");
    let rd = Routerd::start_with_file(&fixture).await;
    // The example's backends (backend-v2, ...) don't resolve: every proxied request gets a 502
    // that names the chosen route.
    let probes = [
        probe("GET", "/api/v2/x").error_route(502, "api-v2"),
        probe("POST", "/api/v2/users").error_route(502, "api-v2"),
        probe("DELETE", "/api/v2/x").error_route(502, "default"),
        probe("GET", "/api/v1/x").error_route(502, "api-v1"),
        probe("DELETE", "/api/v1/x").error_route(502, "api-v1"),
        probe("GET", "/other").error_route(502, "default"),
        probe("GET", "/").error_route(502, "default"),
    ];
    assert_no_failures(&run_probes(&rd, "cube", &probes).await);
}

/// A route with `consumes` and `produces` added.
fn negotiated(route: Route, consumes: &[&str], produces: &[&str]) -> Route {
    let mut v = route.0;
    v["consumes"] = json!(consumes);
    v["produces"] = json!(produces);
    Route(v)
}

/// go-restful's content negotiation: a route whose `consumes` does not cover the body's
/// Content-Type is skipped (415 when every route skips a request with a body), then `Accept`
/// (q-values, wildcards, missing means */*) against `produces` (406 listing what is available);
/// the other routes' rules still apply, and the admin API's match explains it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_and_produces_answer_415_and_406() {
    let rd = Routerd::start(&config(vec![
        negotiated(
            Route::respond("items-json")
                .m(path("/items"))
                .m(method("POST"))
                .priority(10),
            &["application/json"],
            &[],
        ),
        negotiated(
            Route::respond("items-csv")
                .m(path("/items"))
                .m(method("POST")),
            &["text/csv", "text/tab-separated-values"],
            &[],
        ),
        negotiated(
            Route::respond("report-json")
                .m(path("/report"))
                .priority(10),
            &[],
            &["application/json"],
        ),
        negotiated(
            Route::respond("report-html").m(path("/report")),
            &[],
            &["text/html"],
        ),
    ]))
    .await;
    let post = |ct: &'static str| {
        let rd = &rd;
        async move {
            rd.request(
                "POST",
                "/items",
                &[("content-type", ct)],
                bytes::Bytes::from_static(b"a,b"),
            )
            .await
        }
    };
    assert_eq!(
        post("application/json; charset=utf-8").await.text(),
        "items-json"
    );
    assert_eq!(post("text/csv").await.text(), "items-csv");
    let resp = post("application/xml").await;
    assert_eq!(resp.status, 415, "{}", resp.describe());
    assert_eq!(resp.json()["error"], "unsupported media type");
    assert_eq!(
        resp.json()["consumes"],
        json!(["application/json", "text/csv", "text/tab-separated-values"])
    );
    // Without a body, consumes does not apply.
    let resp = rd.request("POST", "/items", &[], bytes::Bytes::new()).await;
    assert_eq!(resp.text(), "items-json");
    // The method rule comes first: 405, not 415.
    assert_eq!(
        rd.request(
            "PUT",
            "/items",
            &[("content-type", "application/xml")],
            bytes::Bytes::from_static(b"x")
        )
        .await
        .status,
        405
    );

    let get = |accept: &'static str| {
        let rd = &rd;
        async move {
            rd.request("GET", "/report", &[("accept", accept)], bytes::Bytes::new())
                .await
        }
    };
    assert_eq!(
        rd.get("/report").await.text(),
        "report-json",
        "no Accept: */*"
    );
    assert_eq!(get("text/html").await.text(), "report-html");
    assert_eq!(get("text/*;q=0.5").await.text(), "report-html");
    assert_eq!(
        get("application/json;q=0, text/*").await.text(),
        "report-html"
    );
    assert_eq!(get("*/*;q=0.1").await.text(), "report-json");
    let resp = get("image/png, application/json;q=0").await;
    assert_eq!(resp.status, 406, "{}", resp.describe());
    assert_eq!(
        resp.json()["available"],
        json!(["application/json", "text/html"])
    );

    let explain = rd
        .admin_json(
            "POST",
            "/api/v1/match",
            Some(&json!({"method": "GET", "path": "/report", "headers": {"accept": "image/png"}})),
        )
        .await
        .json();
    assert_eq!(explain["decision"], "not_acceptable", "{explain}");
    assert_eq!(
        explain["detail"], "application/json, text/html",
        "{explain}"
    );
    assert_eq!(
        explain["candidates"][0]["failed"], "produces (the request's Accept)",
        "{explain}"
    );
}

/// A `consumes` or `produces` entry that is not a media type is refused at start, naming the
/// route and the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_media_types_are_refused() {
    let cfg = config(vec![negotiated(
        Route::respond("bad").m(path("/b")),
        &["application/json", "json"],
        &[],
    )]);
    let run = Routerd::launch(&cfg)
        .run_to_exit(std::time::Duration::from_secs(20))
        .await;
    assert!(!run.started, "routerd served an invalid config");
    assert!(run.status.is_some_and(|s| !s.success()), "{run:?}");
    let out = run.stderr;
    assert!(
        out.contains("route \"bad\", field consumes[1]")
            && out.contains("\"json\" is not a media type"),
        "{out}"
    );
}
