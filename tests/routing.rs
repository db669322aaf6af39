//! Black-box routing tests: a real `routerd` process, requests over real sockets on 127.0.0.1.
//!
//! Covers every matcher condition (path, host, header, query, cookie, method with 405 and
//! OPTIONS, remote address). Which route wins is in `routing_precedence.rs`; the answers when
//! none does in `routing_answers.rs`.
#![allow(clippy::unwrap_used)]

mod harness;

use harness::*;

/// `matcher` with a field and regex flag.
fn field_m(condition: &str, field: &str, pattern: &str, is_regex: bool) -> serde_json::Value {
    matcher(condition, Some(field), pattern, is_regex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_radix_patterns() {
    let cfg = config(vec![
        Route::respond("root").m(path("/")),
        Route::respond("about").m(path("/about")),
        Route::respond("users-id").m(path("/users/{id}")),
        Route::respond("users-posts").m(path("/users/{user}/posts")),
        Route::respond("files").m(path("/files/{*rest}")),
        Route::respond("colon").m(path("/colon/:id/x")),
        Route::respond("star").m(path("/star/*rest")),
        Route::respond("docs-dir").m(path("/docs/")),
    ]);
    let probes = [
        probe("GET", "/").route("root"),
        probe("GET", "/about").route("about"),
        probe("GET", "/users/42").route("users-id"),
        probe("GET", "/users/abc-DEF_1.2").route("users-id"),
        probe("GET", "/users/42/posts").route("users-posts"),
        probe("GET", "/users/42/posts/extra").status(404),
        probe("GET", "/users/42/comments").status(404),
        // `{id}` needs one non-empty segment; `/users` itself matches nothing either.
        probe("GET", "/users").status(404),
        probe("GET", "/files/a").route("files"),
        probe("GET", "/files/a/b/c.txt").route("files"),
        // a catch-all needs at least one character
        probe("GET", "/files").status(404),
        probe("GET", "/colon/7/x").route("colon"),
        probe("GET", "/colon/7").status(404),
        probe("GET", "/star/a/b").route("star"),
        probe("GET", "/docs/").route("docs-dir"),
        probe("GET", "/nothing").status(404),
        probe("GET", "/aboutx").status(404),
        // query strings never take part in path matching
        probe("GET", "/about?x=1").route("about"),
        probe("POST", "/users/9").route("users-id"),
    ];
    assert_no_failures(&run_case("radix", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_regex_unanchored_and_anchored() {
    let cfg = config(vec![
        Route::respond("unanchored").m(path_re("v[0-9]+/items")),
        Route::respond("anchored").m(path_re("^/exact$")),
    ]);
    let probes = [
        probe("GET", "/api/v2/items/x").route("unanchored"),
        probe("GET", "/v10/items").route("unanchored"),
        probe("GET", "/v/items").status(404),
        probe("GET", "/exact").route("anchored"),
        probe("GET", "/exact/more").status(404),
        probe("GET", "/x/exact").status(404),
    ];
    assert_no_failures(&run_case("regex", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_prefix_matches_whole_segments() {
    let cfg = config(vec![Route::respond("static").m(prefix("/static"))]);
    let probes = [
        probe("GET", "/static").route("static"),
        probe("GET", "/static/").route("static"),
        probe("GET", "/static/a/b").route("static"),
        probe("GET", "/static?v=1").route("static"),
        probe("GET", "/staticx").status(404),
        probe("GET", "/stat").status(404),
        probe("GET", "/other/static").status(404),
    ];
    assert_no_failures(&run_case("prefix", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_matcher_exact_wildcard_regex() {
    let cfg = config(vec![
        Route::respond("exact")
            .m(host("api.example.com"))
            .priority(10),
        Route::respond("wild").m(host("*.example.com")),
        Route::respond("re").m(matcher("host", None, r"^shop[0-9]+\.test$", true)),
    ]);
    let probes = [
        probe("GET", "/")
            .header("Host", "api.example.com")
            .route("exact"),
        // case-insensitive, port ignored
        probe("GET", "/")
            .header("Host", "API.Example.COM:8080")
            .route("exact"),
        probe("GET", "/")
            .header("Host", "www.example.com")
            .route("wild"),
        // one or more labels
        probe("GET", "/")
            .header("Host", "a.b.example.com")
            .route("wild"),
        probe("GET", "/")
            .header("Host", "a.example.com:9000")
            .route("wild"),
        // the bare domain has no label in front
        probe("GET", "/").header("Host", "example.com").status(404),
        probe("GET", "/").header("Host", "example.org").status(404),
        probe("GET", "/")
            .header("Host", "notexample.com")
            .status(404),
        probe("GET", "/").header("Host", "shop12.test").route("re"),
        probe("GET", "/").header("Host", "shop.test").status(404),
    ];
    assert_no_failures(&run_case("host", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_query_cookie_matchers() {
    let cfg = config(vec![
        Route::respond("hdr")
            .m(path("/h"))
            .m(header("X-Tenant", "acme")),
        Route::respond("hdr-re")
            .m(path("/hr"))
            .m(field_m("header", "X-Version", "^v[23]$", true)),
        Route::respond("qp")
            .m(path("/q"))
            .m(field_m("query_param", "debug", "1", false)),
        Route::respond("qp-re")
            .m(path("/qr"))
            .m(field_m("query_param", "id", "^[0-9]+$", true)),
        Route::respond("ck")
            .m(path("/c"))
            .m(field_m("cookie", "session", "abc", false)),
        Route::respond("ck-re")
            .m(path("/cr"))
            .m(field_m("cookie", "theme", "^dark", true)),
    ]);
    let probes = [
        probe("GET", "/h").header("X-Tenant", "acme").route("hdr"),
        probe("GET", "/h").header("x-tenant", "acme").route("hdr"),
        probe("GET", "/h").header("X-Tenant", "other").status(404),
        probe("GET", "/h")
            .header("X-Tenant", "acme-corp")
            .status(404),
        probe("GET", "/h").status(404),
        probe("GET", "/hr")
            .header("X-Version", "v2")
            .route("hdr-re"),
        probe("GET", "/hr")
            .header("X-Version", "v3")
            .route("hdr-re"),
        probe("GET", "/hr").header("X-Version", "v4").status(404),
        probe("GET", "/q?debug=1").route("qp"),
        probe("GET", "/q?x=y&debug=1").route("qp"),
        probe("GET", "/q?debug=0").status(404),
        probe("GET", "/q?debug=10").status(404),
        probe("GET", "/q").status(404),
        probe("GET", "/qr?id=123").route("qp-re"),
        probe("GET", "/qr?id=12a").status(404),
        probe("GET", "/c")
            .header("Cookie", "session=abc")
            .route("ck"),
        probe("GET", "/c")
            .header("Cookie", "a=b; session=abc; c=d")
            .route("ck"),
        probe("GET", "/c")
            .header("Cookie", "session=abcd")
            .status(404),
        probe("GET", "/c")
            .header("Cookie", "xsession=abc")
            .status(404),
        probe("GET", "/c").status(404),
        probe("GET", "/cr")
            .header("Cookie", "theme=darkblue")
            .route("ck-re"),
        probe("GET", "/cr")
            .header("Cookie", "theme=light")
            .status(404),
    ];
    assert_no_failures(&run_case("header/query/cookie", &cfg, &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_matcher_405_and_options() {
    let cfg = config(vec![
        Route::respond("gp").m(path("/m")).m(method("GET|POST")),
        Route::respond("del").m(path("/d")).m(method("DELETE")),
        Route::respond("mh")
            .m(path("/mh"))
            .m(method("GET"))
            .m(header("X-A", "1")),
    ]);
    let rd = Routerd::start(&cfg).await;
    let failures = run_probes(
        &rd,
        "method",
        &[
            probe("GET", "/m").route("gp"),
            probe("POST", "/m").route("gp"),
            probe("DELETE", "/d").route("del"),
        ],
    )
    .await;
    assert_no_failures(&failures);

    let allow_set = |r: &Resp| -> Vec<String> {
        let mut v: Vec<String> = r
            .header_all("allow")
            .iter()
            .flat_map(|a| a.split(',').map(|s| s.trim().to_ascii_uppercase()))
            .filter(|s| !s.is_empty())
            .collect();
        v.sort();
        v.dedup();
        v
    };

    let put = rd.request("PUT", "/m", &[], "x").await;
    assert_eq!(put.status, 405, "PUT /m: {}", put.describe());
    let allow = allow_set(&put);
    assert!(
        allow.contains(&"GET".to_owned()) && allow.contains(&"POST".to_owned()),
        "405 Allow should list GET and POST, got {:?}",
        put.header_all("allow")
    );
    assert_json_error(&put);

    let opts = rd.request("OPTIONS", "/m", &[], "").await;
    assert_eq!(opts.status, 204, "OPTIONS /m: {}", opts.describe());
    let allow = allow_set(&opts);
    assert!(
        allow.contains(&"GET".to_owned()) && allow.contains(&"POST".to_owned()),
        "OPTIONS Allow should list GET and POST, got {:?}",
        opts.header_all("allow")
    );

    let get_d = rd.get("/d").await;
    assert_eq!(get_d.status, 405, "GET /d: {}", get_d.describe());
    assert!(
        allow_set(&get_d).contains(&"DELETE".to_owned()),
        "Allow should list DELETE, got {:?}",
        get_d.header_all("allow")
    );

    // 405 only when a route failed on nothing but its method.
    let both = rd.request("PUT", "/mh", &[], "").await;
    assert_eq!(
        both.status,
        404,
        "PUT /mh without X-A fails on method and header: {}",
        both.describe()
    );
    let only_method = rd.request("PUT", "/mh", &[("X-A", "1")], "").await;
    assert_eq!(
        only_method.status,
        405,
        "PUT /mh with X-A: {}",
        only_method.describe()
    );
    assert!(
        allow_set(&only_method).contains(&"GET".to_owned()),
        "Allow {:?}",
        only_method.header_all("allow")
    );

    // A path no route has is a 404, not a 405.
    let nf = rd.request("PUT", "/nothing", &[], "").await;
    assert_eq!(nf.status, 404, "PUT /nothing: {}", nf.describe());
    assert_json_error(&nf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_addr_cidr_matcher() {
    let cfg = config(vec![
        Route::respond("local").m(path("/ra")).m(matcher(
            "remote_addr",
            None,
            "127.0.0.0/8, ::1/128",
            false,
        )),
        Route::respond("ten")
            .m(path("/rb"))
            .m(matcher("remote_addr", None, "10.0.0.0/8", false)),
        Route::respond("single").m(path("/rc")).m(matcher(
            "remote_addr",
            None,
            "192.168.0.0/16,127.0.0.1/32",
            false,
        )),
    ]);
    let probes = [
        probe("GET", "/ra").route("local"),
        probe("GET", "/rb").status(404),
        // the socket address counts, not a client-supplied X-Forwarded-For
        probe("GET", "/rb")
            .header("X-Forwarded-For", "10.1.2.3")
            .status(404),
        probe("GET", "/rc").route("single"),
    ];
    assert_no_failures(&run_case("remote_addr", &cfg, &probes).await);
}
