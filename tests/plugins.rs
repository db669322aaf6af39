//! Black-box tests of WebAssembly plugins on routes: a real `routerd` process, real echo
//! backends on 127.0.0.1 and real plugins built from `plugins/` to wasm32-wasip2.
//!
//! Covers plugin predicates (header-eq, jwt-claim, ab-split) and filters (add-headers, api-key,
//! rewrite-path), and refusing invalid plugin routes at start and on reload. The plugins
//! directory is in `plugin_directory.rs`, misbehaving plugins in `plugin_containment.rs`, the
//! compile cache, logs and instance pool in `plugin_runtime.rs`.
//!
//! Tests that are not about the compile cache share one warm cache ([`shared_plugin_data`]).
#![allow(clippy::unwrap_used)]

mod harness;

use bytes::Bytes;
use harness::*;
use serde_json::{Value, json};

/// Unpadded base64url (RFC 4648 §5), as JWTs use it.
fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// An unsigned compact JWT (`alg: none`) with this payload.
fn jwt(payload: &Value) -> String {
    format!(
        "{}.{}.not-a-signature",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(payload.to_string().as_bytes())
    )
}

// ---------------------------------------------------------------------------------------------
// Predicates
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_eq_predicate_selects_the_route() {
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
        Route::respond("plain").m(path("/t")),
        Route::respond("other").m(path("/other")),
    ]);
    let rd = launch(&cfg, &["header-eq"]).start().await;
    let probes = [
        probe("GET", "/t").header("x-tier", "gold").route("gold"),
        // header names are case-insensitive, values are not
        probe("GET", "/t").header("X-Tier", "gold").route("gold"),
        probe("GET", "/t").header("x-tier", "Gold").route("plain"),
        probe("GET", "/t").header("x-tier", "silver").route("plain"),
        probe("GET", "/t").header("x-other", "gold").route("plain"),
        probe("GET", "/t").route("plain"),
        // the first value of the header decides
        probe("GET", "/t")
            .header("x-tier", "gold")
            .header("x-tier", "silver")
            .route("gold"),
        probe("GET", "/t")
            .header("x-tier", "silver")
            .header("x-tier", "gold")
            .route("plain"),
        probe("POST", "/t?x=1")
            .header("x-tier", "gold")
            .body("payload")
            .route("gold"),
        // the built-in path matcher runs first: another path never reaches the plugin route
        probe("GET", "/other")
            .header("x-tier", "gold")
            .route("other"),
        probe("GET", "/nothing")
            .header("x-tier", "gold")
            .status(404),
    ];
    let mut failures = Vec::new();
    // Three rounds: warm, reused instances keep answering the same way.
    for round in 1..=3 {
        failures.extend(run_probes(&rd, &format!("round {round}"), &probes).await);
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_claim_predicate_reads_the_bearer_token() {
    // Our encoder against a known value, so a mistake here cannot pass for a plugin bug.
    assert_eq!(base64url(br#"{"alg":"none"}"#), "eyJhbGciOiJub25lIn0");
    assert_eq!(base64url(b"\xfb\xff"), "-_8");

    let cfg = config(vec![
        Route::respond("premium")
            .m(path("/jwt"))
            .m(plugin_pred("jwt-claim", &["org.tier", "gold", "platinum"])),
        Route::respond("basic").m(path("/jwt")),
        Route::respond("admin")
            .m(path("/roles"))
            .m(plugin_pred("jwt-claim", &["roles", "admin"])),
        Route::respond("member").m(path("/roles")),
        Route::respond("team")
            .m(path("/team"))
            .m(plugin_pred("jwt-claim", &["team", "???>>>"])),
        Route::respond("no-team").m(path("/team")),
    ]);
    let rd = launch(&cfg, &["jwt-claim"]).start().await;

    let bearer = |payload: Value| format!("Bearer {}", jwt(&payload));
    let gold = bearer(json!({"sub": "alice", "org": {"tier": "gold"}}));
    let platinum = bearer(json!({"sub": "bob", "org": {"tier": "platinum"}}));
    let free = bearer(json!({"sub": "carol", "org": {"tier": "free"}}));
    let no_org = bearer(json!({"sub": "dave"}));
    let admin = bearer(json!({"sub": "erin", "roles": ["user", "admin"]}));
    let user = bearer(json!({"sub": "frank", "roles": ["user"]}));
    // `???>>>` encodes to base64url with `-`/`_` in it: the URL-safe alphabet is decoded.
    let team_payload = json!({"team": "???>>>"});
    let team_token = jwt(&team_payload);
    let team_part = team_token.split('.').nth(1).unwrap();
    assert!(
        team_part.contains('-') || team_part.contains('_'),
        "{team_part}"
    );
    let team = format!("Bearer {team_token}");
    // With `=` padding, which some encoders add.
    let mut padded_payload = base64url(json!({"org": {"tier": "gold"}}).to_string().as_bytes());
    while !padded_payload.len().is_multiple_of(4) {
        padded_payload.push('=');
    }
    let padded = format!("Bearer eyJhbGciOiJub25lIn0.{padded_payload}.sig");

    let auth = |p: Probe, value: &str| p.header("Authorization", value);
    let probes = [
        auth(probe("GET", "/jwt"), &gold).route("premium"),
        auth(probe("GET", "/jwt"), &platinum).route("premium"),
        auth(probe("GET", "/jwt"), &padded).route("premium"),
        auth(probe("GET", "/jwt"), &free).route("basic"),
        auth(probe("GET", "/jwt"), &no_org).route("basic"),
        probe("GET", "/jwt").route("basic"),
        auth(probe("GET", "/jwt"), "Basic dXNlcjpwYXNz").route("basic"),
        auth(probe("GET", "/jwt"), "Bearer garbage").route("basic"),
        auth(probe("GET", "/jwt"), "Bearer a.!!!.c").route("basic"),
        auth(probe("GET", "/roles"), &admin).route("admin"),
        auth(probe("GET", "/roles"), &user).route("member"),
        // a token that routes on /jwt does not leak into /roles
        auth(probe("GET", "/roles"), &gold).route("member"),
        auth(probe("GET", "/team"), &team).route("team"),
        auth(probe("GET", "/team"), &gold).route("no-team"),
    ];
    assert_no_failures(&run_probes(&rd, "jwt-claim", &probes).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ab_split_is_stable_and_proportional() {
    let cfg = config(vec![
        Route::respond("split")
            .m(path("/ab"))
            .m(plugin_pred("ab-split", &["30", "header:x-user"])),
        Route::respond("control").m(path("/ab")),
    ]);
    let rd = launch(&cfg, &["ab-split"]).start().await;

    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut first = Vec::with_capacity(users.len());
    let mut failures = Vec::new();
    for user in &users {
        let resp = rd
            .request("GET", "/ab", &[("x-user", user.as_str())], Bytes::new())
            .await;
        let route = resp.text();
        if resp.status != 200 || (route != "split" && route != "control") {
            failures.push(format!("{user}: {}", resp.describe()));
        }
        first.push(route);
    }
    let split = first.iter().filter(|r| *r == "split").count();
    println!(
        "ab-split 30%: {split} of {} distinct values went to the split route",
        users.len()
    );
    // 30% ± 10 points.
    if !(40..=80).contains(&split) {
        failures.push(format!(
            "{split} of 200 values (= {:.1}%) went to the split route; expected 30% ± 10",
            split as f64 / 2.0
        ));
    }
    // The same value always lands on the same route.
    for round in 1..=2 {
        for (user, expected) in users.iter().zip(&first).take(60) {
            let resp = rd
                .request("GET", "/ab", &[("x-user", user.as_str())], Bytes::new())
                .await;
            if resp.status != 200 || resp.text() != *expected {
                failures.push(format!(
                    "round {round}: {user} went to {expected} first, now {}",
                    resp.describe()
                ));
            }
        }
    }
    // No value (or an empty one) never matches.
    failures.extend(
        run_probes(
            &rd,
            "no value",
            &[
                probe("GET", "/ab").route("control"),
                probe("GET", "/ab").header("x-user", "").route("control"),
            ],
        )
        .await,
    );
    assert_no_failures(&failures);
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_headers_filter_edits_request_and_response() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("add", &backend.url())
            .m(prefix("/add"))
            .plugin_filter(
                "add-headers",
                &[
                    "req:X-Env",
                    "prod",
                    "req:X-Override",
                    "new",
                    "resp:Cache-Control",
                    "no-store",
                    "resp:X-Served-By",
                    "plugin",
                ],
            ),
        Route::proxy("bare", &backend.url()).m(prefix("/bare")),
    ]);
    let rd = launch(&cfg, &["add-headers"]).start().await;

    let resp = rd
        .request(
            "GET",
            "/add/page?q=1",
            &[("x-override", "old"), ("x-keep", "kept")],
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.backend().as_deref(), Some("echo"));
    let echo = resp.json();
    assert_eq!(echo["path"], "/add/page");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(
        resp.echoed_header("x-env"),
        ["prod"],
        "request header added"
    );
    assert_eq!(
        resp.echoed_header("x-override"),
        ["new"],
        "request header replaced, not appended"
    );
    assert_eq!(resp.echoed_header("x-keep"), ["kept"], "other headers kept");
    assert!(
        resp.echoed_header("cache-control").is_empty(),
        "a resp: header must not be sent to the backend"
    );
    assert_eq!(resp.header_all("cache-control"), ["no-store"]);
    assert_eq!(resp.header_all("x-served-by"), ["plugin"]);
    assert_eq!(
        resp.header("x-env"),
        None,
        "a req: header must not be sent to the client"
    );

    // A route without the filter is untouched.
    let resp = rd.get("/bare/page").await;
    assert_eq!(resp.status, 200);
    assert!(resp.echoed_header("x-env").is_empty());
    assert_eq!(resp.header("cache-control"), None);
    assert_eq!(resp.header("x-served-by"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_filter_answers_401_or_strips_the_key() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("keyed", &backend.url())
            .m(prefix("/secure"))
            .plugin_filter("api-key", &["x-api-key", "k1-secret", "k2-secret"]),
    ]);
    let rd = launch(&cfg, &["api-key"]).start().await;

    let rejected: [(&str, &[(&str, &str)]); 5] = [
        ("no key", &[]),
        ("wrong key", &[("x-api-key", "nope")]),
        ("a prefix of a key", &[("x-api-key", "k1-secre")]),
        ("a key with more after it", &[("x-api-key", "k1-secretx")]),
        (
            "the key in another header",
            &[("authorization", "k1-secret")],
        ),
    ];
    for (label, headers) in rejected {
        let before = backend.requests();
        let resp = rd
            .request("GET", "/secure/data", headers, Bytes::new())
            .await;
        assert_eq!(resp.status, 401, "{label}: {}", resp.describe());
        assert_eq!(
            resp.header("www-authenticate").as_deref(),
            Some(r#"ApiKey header="x-api-key""#),
            "{label}"
        );
        assert_eq!(resp.json(), json!({"error": "invalid api key"}), "{label}");
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("application/json"),
            "{label}"
        );
        assert_eq!(
            backend.requests(),
            before,
            "{label}: the backend must not be reached"
        );
    }

    for (label, name, key) in [
        ("first key", "x-api-key", "k1-secret"),
        ("second key", "x-api-key", "k2-secret"),
        ("header name in capitals", "X-API-KEY", "k1-secret"),
    ] {
        let before = backend.requests();
        let resp = rd
            .request(
                "GET",
                "/secure/data?page=2",
                &[(name, key), ("x-trace", "t-1")],
                Bytes::new(),
            )
            .await;
        assert_eq!(resp.status, 200, "{label}: {}", resp.describe());
        assert_eq!(backend.requests(), before + 1, "{label}");
        assert!(
            resp.echoed_header("x-api-key").is_empty(),
            "{label}: the backend saw the key: {:?}",
            resp.echoed_header("x-api-key")
        );
        assert_eq!(resp.echoed_header("x-trace"), ["t-1"], "{label}");
        let echo = resp.json();
        assert_eq!(
            (echo["path"].as_str(), echo["query"].as_str()),
            (Some("/secure/data"), Some("page=2")),
            "{label}"
        );
        assert_eq!(resp.header("www-authenticate"), None, "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_path_filter_rewrites_the_upstream_path_and_keeps_the_query() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("rw", &backend.url())
            .m(prefix("/api/v1"))
            .plugin_filter("rewrite-path", &["^/api/v1/(.*)$", "/v1/$1"]),
        Route::proxy("rw-named", &backend.url())
            .m(path("/u/{id}"))
            .plugin_filter(
                "rewrite-path",
                &["^/u/(?P<id>[0-9]+)$", "/users/${id}/profile"],
            ),
    ]);
    let rd = launch(&cfg, &["rewrite-path"]).start().await;

    let cases = [
        (
            "/api/v1/users/42?x=1&y=two",
            "/v1/users/42",
            Some("x=1&y=two"),
        ),
        ("/api/v1/a/b/c", "/v1/a/b/c", None),
        ("/api/v1/search?q=a%20b", "/v1/search", Some("q=a%20b")),
        // the regex does not match: the path is left alone
        ("/api/v1", "/api/v1", None),
        ("/u/7?v=1", "/users/7/profile", Some("v=1")),
        ("/u/abc", "/u/abc", None),
    ];
    let mut failures = Vec::new();
    for (request, want_path, want_query) in cases {
        let resp = rd.get(request).await;
        let got = resp.try_json().map(|j| {
            (
                j["path"].as_str().map(str::to_owned),
                j["query"].as_str().map(str::to_owned),
            )
        });
        let want = (Some(want_path.to_owned()), want_query.map(str::to_owned));
        if resp.status != 200 || got.as_ref() != Some(&want) {
            failures.push(format!(
                "GET {request}: expected the backend to see {want:?}, got {}",
                resp.describe()
            ));
        }
    }
    assert_no_failures(&failures);
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// A config with a valid route plus `bad`.
fn with_bad_route(bad: Route) -> Value {
    config(vec![
        Route::respond("fine").m(path("/fine")),
        Route::respond("extra").m(path("/extra")),
        bad,
    ])
}

/// Invalid plugin routes: (label, route, field, a piece of the reason).
fn invalid_plugin_routes() -> Vec<(&'static str, Route, &'static str, &'static str)> {
    vec![
        (
            "header-eq with one arg",
            Route::respond("needs-two")
                .m(path("/t"))
                .m(plugin_pred("header-eq", &["x-tier"])),
            "matchers[1].args",
            "expected 2 args",
        ),
        (
            "a predicate plugin that is not loaded",
            Route::respond("ghost")
                .m(path("/t"))
                .m(plugin_pred("no-such-plugin", &[])),
            "matchers[1].plugin",
            "no-such-plugin",
        ),
        (
            "add-headers with an odd number of args",
            Route::respond("odd")
                .m(path("/t"))
                .plugin_filter("add-headers", &["req:X-A"]),
            "filters[0].args",
            "expected pairs",
        ),
        (
            "a filter plugin that is not loaded",
            Route::respond("ghost-filter")
                .m(path("/t"))
                .plugin_filter("no-such-filter", &[]),
            "filters[0].plugin",
            "no-such-filter",
        ),
        (
            "a predicate plugin used as a filter",
            Route::respond("wrong-kind")
                .m(path("/t"))
                .plugin_filter("header-eq", &["x-tier", "gold"]),
            "filters[0].plugin",
            "not a filter",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plugin_routes_refuse_to_start() {
    let mut failures = Vec::new();
    for (label, bad, field, reason) in invalid_plugin_routes() {
        let route = bad.0["name"].as_str().unwrap().to_owned();
        let cfg = with_bad_route(bad);
        let out = launch(&cfg, &["header-eq", "add-headers"])
            .run_to_exit(STARTUP_TIMEOUT)
            .await;
        let exited_nonzero = out.status.is_some_and(|s| !s.success());
        let named = [route.as_str(), field, reason]
            .iter()
            .all(|piece| out.stderr.contains(piece));
        if out.started || !exited_nonzero || !named {
            failures.push(format!(
                "{label}: expected a non-zero exit naming route {route:?}, field {field} and \
                 {reason:?}; got status {:?}, started {}, stderr:\n{}",
                out.status, out.started, out.stderr
            ));
        }
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plugin_routes_on_reload_keep_the_last_good_table() {
    let good = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
        Route::respond("plain").m(path("/t")),
        Route::respond("fine").m(path("/fine")),
    ]);
    let rd = launch(&good, &["header-eq", "add-headers"]).start().await;
    let serving_good = [
        probe("GET", "/t").header("x-tier", "gold").route("gold"),
        probe("GET", "/t").route("plain"),
        probe("GET", "/fine").route("fine"),
        // the rejected documents add this route: it must not appear
        probe("GET", "/extra").status(404),
    ];
    let mut failures = run_probes(&rd, "before", &serving_good).await;

    for (label, bad, field, reason) in invalid_plugin_routes() {
        let route = bad.0["name"].as_str().unwrap().to_owned();
        let mark = rd.log_count();
        rd.write_config(&with_bad_route(bad));
        let line = rd
            .wait_for_log(mark, RELOAD_TIMEOUT, |l| {
                l.contains("config change rejected")
            })
            .await;
        match line {
            Some(line)
                if line.contains(&route) && line.contains(field) && line.contains(reason) => {}
            other => failures.push(format!(
                "{label}: expected a rejection naming route {route:?}, field {field} and \
                 {reason:?}; got {other:?}"
            )),
        }
        failures.extend(run_probes(&rd, label, &serving_good).await);
    }

    // A valid change still applies afterwards.
    rd.write_config(&config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "platinum"])),
        Route::respond("plain").m(path("/t")),
    ]));
    let applied = wait_until(
        async || {
            let resp = rd
                .request("GET", "/t", &[("x-tier", "platinum")], Bytes::new())
                .await;
            resp.text() == "gold"
        },
        RELOAD_TIMEOUT,
    )
    .await;
    if !applied {
        failures.push("a valid change after the rejected ones was not applied".into());
    }
    failures.extend(
        run_probes(
            &rd,
            "after",
            &[probe("GET", "/t").header("x-tier", "gold").route("plain")],
        )
        .await,
    );
    assert_no_failures(&failures);
}
