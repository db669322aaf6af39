//! Black-box tests of the WebAssembly plugin runtime: a real `routerd` process, real echo
//! backends on 127.0.0.1 and real plugins built from `plugins/` to wasm32-wasip2.
//!
//! Covers plugin predicates (header-eq, jwt-claim, ab-split) and filters (add-headers, api-key,
//! rewrite-path); refusing invalid plugin routes at start and on reload; the plugins directory
//! under steady load (replace, delete, restore, garbage and half-written files); containment of
//! misbehaving plugins (deadline, memory cap, stack overflow, panics, header floods, sandbox
//! escapes) under both failure policies; the fresh instance mode; the compile cache across
//! restarts; and plugin log lines tagged with the plugin's name.
//!
//! Tests that are not about the compile cache share one warm cache ([`shared_plugin_data`]).
#![allow(clippy::unwrap_used)]

mod harness;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use serde_json::{Value, json};

/// How fast a request must be answered when a plugin misbehaves (the precise figure is for
/// benchmarks; this only proves the request is not stuck behind the plugin).
const CONTAINED_WITHIN: Duration = Duration::from_secs(2);

/// A launch on the shared warm compile cache, with these built plugins installed.
fn launch(cfg: &Value, plugins: &[&str]) -> Launch {
    plugins
        .iter()
        .fold(Routerd::launch(cfg).warm_cache(), |l, p| l.plugin(p))
}

/// The value of `key` in a log line's `key="value"` or `key=value` field.
fn log_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.find('"').map(|end| quoted[..end].to_owned()),
        None => Some(rest.split_whitespace().next().unwrap_or("").to_owned()),
    }
}

/// Whether `line` is a `plugin {kind} failed` line for this plugin and route.
fn is_failure_line(line: &str, kind: &str, plugin: &str, route: &str) -> bool {
    line.contains(&format!("plugin {kind} failed"))
        && log_field(line, "plugin").as_deref() == Some(plugin)
        && log_field(line, "route").as_deref() == Some(route)
}

/// Whether `line` is a `plugin loaded` line for `plugin`.
fn is_loaded_line(line: &str, plugin: &str) -> bool {
    line.contains("plugin loaded") && log_field(line, "plugin").as_deref() == Some(plugin)
}

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

// ---------------------------------------------------------------------------------------------
// The plugins directory
// ---------------------------------------------------------------------------------------------

/// Route A needs `sel(x-tier, gold)`; route B has the same path and no plugin.
fn selector_config() -> Value {
    config(vec![
        Route::respond("A")
            .m(path("/t"))
            .m(plugin_pred("sel", &["x-tier", "gold"])),
        Route::respond("B").m(path("/t")),
    ])
}

const LOAD_TASKS: usize = 4;
const LOAD_MAX_REQUESTS_PER_TASK: usize = 800;
const LOAD_MAX_TIME: Duration = Duration::from_secs(15);

/// What one load task saw.
#[derive(Default)]
struct LoadStats {
    requests: usize,
    a_without_header: usize,
    b_with_header: usize,
    failures: Vec<String>,
}

/// Sends `GET /t` (every other one with `x-tier: gold`) until told to stop, at most
/// [`LOAD_MAX_REQUESTS_PER_TASK`] requests and [`LOAD_MAX_TIME`]. Anything but 200 A or B is a
/// failure.
async fn load_task(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    started: Instant,
    task: usize,
) -> LoadStats {
    let mut stats = LoadStats::default();
    for i in 0..LOAD_MAX_REQUESTS_PER_TASK {
        if stop.load(Ordering::SeqCst) || started.elapsed() >= LOAD_MAX_TIME {
            break;
        }
        let gold = (i + task).is_multiple_of(2);
        let headers: &[(&str, &str)] = if gold { &[("x-tier", "gold")] } else { &[] };
        let at = started.elapsed();
        stats.requests += 1;
        match request_to(addr, "GET", "/t", headers, Bytes::new()).await {
            Ok(r) if r.status == 200 && (r.text() == "A" || r.text() == "B") => {
                if !gold && r.text() == "A" {
                    stats.a_without_header += 1;
                }
                if gold && r.text() == "B" {
                    stats.b_with_header += 1;
                }
            }
            Ok(r) => stats.failures.push(format!(
                "load task {task} at {at:?} (gold: {gold}): {}",
                r.describe()
            )),
            Err(e) => stats.failures.push(format!(
                "load task {task} at {at:?} (gold: {gold}): transport error: {e}"
            )),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stats
}

/// Polls `GET /t` (with `x-tier: gold` if `gold`) every 10 ms until it answers `want`; returns
/// how long that took, or `None` after `timeout`. Answers other than 200 A or B go to `failures`.
async fn poll_until(
    rd: &Routerd,
    gold: bool,
    want: &str,
    timeout: Duration,
    failures: &mut Vec<String>,
) -> Option<Duration> {
    let started = Instant::now();
    let headers: &[(&str, &str)] = if gold { &[("x-tier", "gold")] } else { &[] };
    while started.elapsed() < timeout {
        match rd.try_request("GET", "/t", headers, Bytes::new()).await {
            Ok(r) if r.status == 200 && r.text() == want => return Some(started.elapsed()),
            Ok(r) if r.status == 200 && (r.text() == "A" || r.text() == "B") => {}
            Ok(r) => failures.push(format!("poll (gold: {gold}): {}", r.describe())),
            Err(e) => failures.push(format!("poll (gold: {gold}): transport error: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_directory_changes_apply_under_load_without_failed_requests() {
    let header_eq = std::fs::read(dist_plugin("header-eq")).unwrap();
    let noop = std::fs::read(dist_plugin("noop-predicate")).unwrap();
    let plugins = TempDir::new("plugins");
    let sel = plugins.path().join("sel.wasm");
    install_file(&sel, &header_eq);
    let rd = Routerd::launch(&selector_config())
        .plugins_dir(plugins.path())
        .warm_cache()
        .start()
        .await;
    let mut failures = run_probes(
        &rd,
        "start",
        &[
            probe("GET", "/t").header("x-tier", "gold").route("A"),
            probe("GET", "/t").route("B"),
        ],
    )
    .await;
    // Checks on what routerd logs (the traffic checks are in `failures`).
    let mut problems: Vec<String> = Vec::new();

    let stop = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let tasks: Vec<_> = (0..LOAD_TASKS)
        .map(|task| tokio::spawn(load_task(rd.proxy, stop.clone(), load_started, task)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 1. Replace sel by noop-predicate (temp file + rename): requests without the header now
    //    reach A.
    let mark = rd.log_count();
    install_file(&sel, &noop);
    let replaced = poll_until(&rd, false, "A", RELOAD_TIMEOUT, &mut failures).await;
    println!("replace sel.wasm -> A for requests without the header after {replaced:?}");
    match replaced {
        Some(t) if t > Duration::from_secs(2) => {
            println!("  (slower than the 2 s target)");
        }
        Some(_) => {}
        None => problems.push(format!(
            "replacing sel.wasm by noop-predicate was not applied within {RELOAD_TIMEOUT:?}"
        )),
    }
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "sel"))
    {
        problems.push("no `plugin loaded plugin=\"sel\"` line after the replace".into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. Delete sel: route A is excluded, everything goes to B.
    let mark = rd.log_count();
    std::fs::remove_file(&sel).unwrap();
    let deleted = poll_until(&rd, true, "B", RELOAD_TIMEOUT, &mut failures).await;
    println!("delete sel.wasm -> B for requests with the header after {deleted:?}");
    if deleted.is_none() {
        problems.push(format!(
            "deleting sel.wasm did not exclude route A within {RELOAD_TIMEOUT:?}"
        ));
    }
    if rd
        .wait_for_log(mark, Duration::from_secs(2), |l| {
            l.contains("plugin unloaded") && log_field(l, "plugin").as_deref() == Some("sel")
        })
        .await
        .is_none()
    {
        problems.push("no `plugin unloaded plugin=\"sel\"` line after the delete".into());
    }
    if rd
        .wait_for_log(mark, Duration::from_secs(2), |l| {
            l.contains("route excluded")
                && log_field(l, "route").as_deref() == Some("A")
                && l.contains("sel")
        })
        .await
        .is_none()
    {
        problems.push(format!(
            "no `route excluded` line for route A after deleting sel.wasm; log records since: {:?}",
            rd.log_records_since(mark)
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. Restore header-eq as sel: A needs the header again.
    let mark = rd.log_count();
    install_file(&sel, &header_eq);
    let restored = poll_until(&rd, true, "A", RELOAD_TIMEOUT, &mut failures).await;
    println!("restore sel.wasm -> A for requests with the header after {restored:?}");
    if restored.is_none() {
        problems.push(format!(
            "restoring sel.wasm did not bring route A back within {RELOAD_TIMEOUT:?}"
        ));
    }
    failures.extend(
        run_probes(
            &rd,
            "restored",
            &[
                probe("GET", "/t").header("x-tier", "gold").route("A"),
                probe("GET", "/t").route("B"),
            ],
        )
        .await,
    );
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "sel"))
    {
        problems.push("no `plugin loaded plugin=\"sel\"` line after the restore".into());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop.store(true, Ordering::SeqCst);
    let mut total = LoadStats::default();
    for task in tasks {
        let stats = task.await.expect("load task panicked");
        total.requests += stats.requests;
        total.a_without_header += stats.a_without_header;
        total.b_with_header += stats.b_with_header;
        total.failures.extend(stats.failures);
    }
    println!(
        "load: {} requests in {:?} over {LOAD_TASKS} tasks, {} failed; {} without the header \
         reached A (noop phase), {} with it reached B (excluded phase)",
        total.requests,
        load_started.elapsed(),
        total.failures.len(),
        total.a_without_header,
        total.b_with_header
    );
    failures.extend(total.failures);
    if total.requests < 100 {
        problems.push(format!(
            "the load loop sent only {} requests",
            total.requests
        ));
    }
    if total.a_without_header == 0 {
        problems.push("the load never saw the noop-predicate version (A without header)".into());
    }
    if total.b_with_header == 0 {
        problems.push("the load never saw route A excluded (B with the header)".into());
    }
    failures.extend(problems);
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_written_plugins_do_not_disturb_serving() {
    let header_eq = std::fs::read(dist_plugin("header-eq")).unwrap();
    let noop = std::fs::read(dist_plugin("noop-predicate")).unwrap();
    let plugins = TempDir::new("plugins");
    let sel = plugins.path().join("sel.wasm");
    install_file(&sel, &header_eq);
    let rd = Routerd::launch(&selector_config())
        .plugins_dir(plugins.path())
        .warm_cache()
        .start()
        .await;
    let old_version = [
        probe("GET", "/t").header("x-tier", "gold").route("A"),
        probe("GET", "/t").route("B"),
    ];
    let mut failures = run_probes(&rd, "start", &old_version).await;

    // A garbage file is logged and changes nothing.
    let mark = rd.log_count();
    std::fs::write(
        plugins.path().join("junk.wasm"),
        b"this is not a WebAssembly component",
    )
    .unwrap();
    let junk_line = rd
        .wait_for_log(mark, RELOAD_TIMEOUT, |l| {
            l.contains("plugin not loaded") && l.contains("junk")
        })
        .await;
    println!("junk.wasm: {junk_line:?}");
    if junk_line.is_none() {
        failures.push("no `plugin not loaded` line for junk.wasm".into());
    }
    failures.extend(run_probes(&rd, "after junk.wasm", &old_version).await);

    // Half of noop-predicate written over sel.wasm (in place, not renamed): the load fails and
    // the old version keeps serving.
    let half = noop.len() / 2;
    let mark = rd.log_count();
    let mut file = std::fs::File::create(&sel).unwrap();
    file.write_all(&noop[..half]).unwrap();
    file.sync_all().unwrap();
    let partial_line = rd
        .wait_for_log(mark, RELOAD_TIMEOUT, |l| {
            l.contains("plugin not loaded") && log_field(l, "plugin").as_deref() == Some("sel")
        })
        .await;
    println!("half-written sel.wasm: {partial_line:?}");
    match &partial_line {
        Some(line) if line.contains("previous version keeps serving") => {}
        other => failures.push(format!(
            "expected `plugin not loaded ... the previous version keeps serving` for the \
             half-written sel.wasm, got {other:?}"
        )),
    }
    for round in 1..=5 {
        failures
            .extend(run_probes(&rd, &format!("half-written, round {round}"), &old_version).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Completing the write loads the new version.
    let mark = rd.log_count();
    file.write_all(&noop[half..]).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let loaded = poll_until(&rd, false, "A", RELOAD_TIMEOUT, &mut failures).await;
    println!("completed sel.wasm -> noop-predicate serving after {loaded:?}");
    if loaded.is_none() {
        failures.push(format!(
            "the completed noop-predicate was not serving within {RELOAD_TIMEOUT:?}"
        ));
    }
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "sel"))
    {
        failures.push("no `plugin loaded plugin=\"sel\"` line after completing the write".into());
    }
    assert_no_failures(&failures);
}

// ---------------------------------------------------------------------------------------------
// Misbehaving plugins
// ---------------------------------------------------------------------------------------------

/// Routes for containing a misbehaving predicate: `guarded` (path `/bad` + the plugin), its
/// fallback `fallback` on the same path, an unrelated built-in route and a healthy plugin route.
fn contained_config(plugin: &str, args: &[&str]) -> Value {
    config(vec![
        Route::respond("guarded")
            .m(path("/bad"))
            .m(plugin_pred(plugin, args)),
        Route::respond("fallback").m(path("/bad")),
        Route::respond("unrelated").m(path("/ok")),
        Route::respond("healthy")
            .m(path("/ok-plugin"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
    ])
}

/// The value of the series `name{plugin="plugin"...}` in a `/metrics` text (summed over the
/// other labels).
fn plugin_metric(metrics: &str, name: &str, plugin: &str) -> Option<f64> {
    let label = format!("plugin=\"{plugin}\"");
    let mut found = None;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        if labels.split(',').any(|l| l == label)
            && let Ok(v) = value.trim().parse::<f64>()
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Runs a misbehaving predicate three times under fail_closed (the request gets the fallback,
/// fast, with a failure log line naming the failure `kind`; nothing else is disturbed), then
/// three times under fail_open (the guarded route matches); each time `/metrics` must count
/// the three failures in `counter`.
async fn misbehaving_predicate_is_contained(
    plugin: &str,
    args: &[&str],
    kind: &str,
    counter: &str,
) {
    let cfg = contained_config(plugin, args);
    // Deadlines count wall time: on a busy machine a memory bomb or a deep recursion can run
    // past 10 ms before it hits the limit under test, so only the deadline case keeps it.
    let deadline_ms = if kind == "deadline" { 10 } else { 5_000 };
    for (policy, failure, want, policy_field) in [
        ("fail_closed", "fail_closed", "fallback", "FailClosed"),
        ("fail_open", "fail_open", "guarded", "FailOpen"),
    ] {
        let settings = json!({"failure": failure, "deadline_ms": deadline_ms});
        let with_plugins = launch(&cfg, &[plugin, "header-eq"]).plugin_settings(plugin, settings);
        let mut rd = with_plugins.start().await;
        for attempt in 1..=3 {
            let mark = rd.log_count();
            let started = Instant::now();
            let resp = rd.get("/bad").await;
            let elapsed = started.elapsed();
            println!(
                "{plugin} {args:?} ({policy}) request {attempt}: {} in {elapsed:?}",
                resp.describe()
            );
            assert_eq!(
                (resp.status, resp.text()),
                (200, want.to_owned()),
                "{plugin} ({policy}) request {attempt}"
            );
            assert!(
                elapsed < CONTAINED_WITHIN,
                "{plugin} ({policy}) request {attempt} took {elapsed:?}"
            );
            let line = rd
                .wait_for_log(mark, Duration::from_secs(5), |l| {
                    is_failure_line(l, "predicate", plugin, "guarded")
                })
                .await;
            let Some(line) = line else {
                panic!(
                    "{plugin} ({policy}) request {attempt}: no `plugin predicate failed \
                     plugin=\"{plugin}\" route=\"guarded\"` line"
                );
            };
            println!("  {line}");
            assert!(
                log_field(&line, "reason").is_some_and(|r| !r.is_empty()),
                "no reason in {line:?}"
            );
            assert!(
                line.contains(policy_field),
                "{line:?} does not name the policy {policy_field}"
            );
            assert_eq!(
                log_field(&line, "failure").as_deref(),
                Some(kind),
                "{plugin}: the failure kind in {line:?}"
            );

            // Nothing else is disturbed.
            let resp = rd.get("/ok").await;
            assert_eq!((resp.status, resp.text()), (200, "unrelated".to_owned()));
            let resp = rd
                .request("GET", "/ok-plugin", &[("x-tier", "gold")], Bytes::new())
                .await;
            assert_eq!(
                (resp.status, resp.text()),
                (200, "healthy".to_owned()),
                "a healthy plugin route after {plugin} failed"
            );
        }
        assert!(rd.is_running(), "routerd died after {plugin} ({policy})");
        let health = rd.admin_get("/healthz").await;
        assert_eq!(health.status, 200, "{}", health.describe());
        let metrics = rd.admin_get("/metrics").await.text();
        assert_eq!(
            plugin_metric(&metrics, counter, plugin),
            Some(3.0),
            "{plugin} ({policy}): {counter} in /metrics:\n{metrics}"
        );
        assert_eq!(
            plugin_metric_phase(&metrics, plugin, "predicate"),
            3.0,
            "{plugin}: three predicate calls"
        );
    }
}

/// `routerd_plugin_calls{plugin, phase}`.
fn plugin_metric_phase(metrics: &str, plugin: &str, phase: &str) -> f64 {
    let want = format!("routerd_plugin_calls_total{{plugin=\"{plugin}\",phase=\"{phase}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_loop_is_stopped_at_the_deadline() {
    misbehaving_predicate_is_contained(
        "bad-loop",
        &[],
        "deadline",
        "routerd_plugin_deadline_hits_total",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_memory_is_stopped_at_the_memory_cap() {
    misbehaving_predicate_is_contained(
        "bad-memory",
        &[],
        "memory_cap",
        "routerd_plugin_memory_cap_hits_total",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_recursion_stack_overflow_is_contained() {
    misbehaving_predicate_is_contained("bad-recursion", &[], "trap", "routerd_plugin_traps_total")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_panic_predicate_is_contained() {
    misbehaving_predicate_is_contained(
        "bad-panic",
        &["panic"],
        "trap",
        "routerd_plugin_traps_total",
    )
    .await;
}

/// A guest that waits in WASI (`std::thread::sleep`, 5 s) runs no guest code, so only a timer
/// can end its call: each request must get the fallback long before the sleep would end, with
/// a `deadline` failure, and each call must run exactly once (one stderr line per call, no
/// replays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sleep_blocking_in_wasi_is_stopped_at_the_deadline_and_runs_once() {
    let cfg = contained_config("bad-sleep", &["5000"]);
    let mut rd = launch(&cfg, &["bad-sleep", "header-eq"])
        .plugin_settings("bad-sleep", json!({"deadline_ms": 200}))
        .start()
        .await;
    for attempt in 1..=3 {
        let mark = rd.log_count();
        let started = Instant::now();
        let resp = rd.get("/bad").await;
        let elapsed = started.elapsed();
        println!(
            "bad-sleep request {attempt}: {} in {elapsed:?}",
            resp.describe()
        );
        assert_eq!((resp.status, resp.text()), (200, "fallback".to_owned()));
        // Deadline 200 ms, sleep 5 s: anything near the sleep means the wait was not cut.
        assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
        let line = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| {
                is_failure_line(l, "predicate", "bad-sleep", "guarded")
            })
            .await
            .unwrap_or_else(|| panic!("request {attempt}: no failure line"));
        assert_eq!(
            log_field(&line, "failure").as_deref(),
            Some("deadline"),
            "{line}"
        );
        let starts: Vec<String> = rd
            .logs_since(mark)
            .into_iter()
            .filter(|l| l.contains("bad-sleep: call "))
            .collect();
        assert_eq!(
            starts.len(),
            1,
            "request {attempt} ran the guest {} times: {starts:?}",
            starts.len()
        );
        let resp = rd.get("/ok").await;
        assert_eq!((resp.status, resp.text()), (200, "unrelated".to_owned()));
    }
    let metrics = rd.admin_get("/metrics").await.text();
    assert_eq!(
        plugin_metric(&metrics, "routerd_plugin_deadline_hits_total", "bad-sleep"),
        Some(3.0),
        "{metrics}"
    );
    assert!(rd.is_running());
}

/// A plugin that fails on every call opens its circuit breaker after `breaker_failures` calls
/// in a row: later requests get the failure policy without the plugin running (counted as
/// short-circuited), and once the back-off is over a probe call runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_opens_after_consecutive_failures_and_probes_later() {
    let cfg = contained_config("bad-loop", &[]);
    let rd = launch(&cfg, &["bad-loop", "header-eq"])
        .plugin_settings(
            "bad-loop",
            json!({"breaker_failures": 3, "breaker_backoff_ms": 1500}),
        )
        .start()
        .await;
    for _ in 0..3 {
        let resp = rd.get("/bad").await;
        assert_eq!(resp.text(), "fallback");
    }
    let mark = rd.log_count();
    let opened = rd
        .wait_for_log(0, Duration::from_secs(5), |l| {
            l.contains("circuit breaker opened")
                && log_field(l, "plugin").as_deref() == Some("bad-loop")
        })
        .await;
    assert!(opened.is_some(), "no `circuit breaker opened` line");
    for _ in 0..5 {
        let resp = rd.get("/bad").await;
        assert_eq!(resp.text(), "fallback");
    }
    let refused: Vec<String> = rd
        .logs_since(mark)
        .into_iter()
        .filter(|l| is_failure_line(l, "predicate", "bad-loop", "guarded"))
        .collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|l| log_field(l, "failure").as_deref() == Some("circuit_open")),
        "while open, calls are refused without running: {refused:?}"
    );
    let metrics = rd.admin_get("/metrics").await.text();
    assert_eq!(
        plugin_metric(&metrics, "routerd_plugin_short_circuited_total", "bad-loop"),
        Some(5.0)
    );
    assert_eq!(
        plugin_metric(&metrics, "routerd_plugin_breaker_opened_total", "bad-loop"),
        Some(1.0)
    );
    assert_eq!(
        plugin_metric(&metrics, "routerd_plugin_breaker_open", "bad-loop"),
        Some(1.0)
    );
    // After the back-off one probe runs (and fails again: a deadline, not a refusal).
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mark = rd.log_count();
    let resp = rd.get("/bad").await;
    assert_eq!(resp.text(), "fallback");
    let probe = rd
        .wait_for_log(mark, Duration::from_secs(5), |l| {
            is_failure_line(l, "predicate", "bad-loop", "guarded")
        })
        .await
        .unwrap_or_default();
    assert_eq!(
        log_field(&probe, "failure").as_deref(),
        Some("deadline"),
        "{probe}"
    );
    // The healthy plugin was never affected.
    let resp = rd
        .request("GET", "/ok-plugin", &[("x-tier", "gold")], Bytes::new())
        .await;
    assert_eq!(resp.text(), "healthy");
}

/// Six requests at once on a predicate that spins for 20 ms, with one slot and a 50 ms
/// deadline: together they need 120 ms, more than one deadline. A call takes the slot when it
/// reaches its first epoch tick still running; the wait for it is bounded by `queue_ms`, and
/// does not count against the deadline, so with a long enough queue every call runs and
/// matches; with `queue_ms: 0` the calls that find the slot taken are refused at once, counted
/// as overloaded and answered 503 by routerd itself (not by the plugin's failure policy). A predicate that waits in WASI holds no thread and takes no slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queue_for_a_slot_for_queue_ms_not_for_the_deadline() {
    let cfg = contained_config("bad-loop", &["20"]);
    for (queue_ms, all_run) in [(2000, true), (0, false)] {
        let mut rd = launch(&cfg, &["bad-loop", "header-eq"])
            .plugin_settings(
                "bad-loop",
                json!({"max_concurrent": 1, "deadline_ms": 50, "queue_ms": queue_ms,
                       "breaker_failures": 0}),
            )
            .start()
            .await;
        let started = Instant::now();
        let (a, b, c, d, e, f) = tokio::join!(
            rd.get("/bad"),
            rd.get("/bad"),
            rd.get("/bad"),
            rd.get("/bad"),
            rd.get("/bad"),
            rd.get("/bad")
        );
        let answers = [a, b, c, d, e, f];
        let elapsed = started.elapsed();
        let guarded = answers.iter().filter(|r| r.text() == "guarded").count();
        let metrics = rd.admin_get("/metrics").await.text();
        let overloaded =
            plugin_metric(&metrics, "routerd_plugin_overloaded_total", "bad-loop").unwrap_or(-1.0);
        let deadlines = plugin_metric(&metrics, "routerd_plugin_deadline_hits_total", "bad-loop")
            .unwrap_or(-1.0);
        if all_run {
            assert_eq!(
                guarded,
                6,
                "queue_ms {queue_ms}: every call runs in turn; {}",
                metrics
                    .lines()
                    .filter(|l| l.contains("bad-loop"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            assert_eq!((overloaded, deadlines), (0.0, 0.0), "{metrics}");
            assert!(
                elapsed >= Duration::from_millis(100),
                "one slot: the six 20 ms calls ran one after another, not in {elapsed:?}"
            );
        } else {
            assert!((1..6).contains(&guarded), "queue_ms 0: {guarded} of 6 ran");
            assert_eq!(overloaded, (6 - guarded) as f64, "{metrics}");
            assert_eq!(deadlines, 0.0, "{metrics}");
            // routerd could not run them: its own 503, never the policy's fall-through.
            let resp = answers.iter().find(|r| r.text() != "guarded");
            assert_eq!(resp.map(|r| r.status), Some(503));
            assert!(answers.iter().all(|r| r.text() != "fallback"));
        }
        assert!(rd.is_running());
    }
}

/// Asserts a fail_closed plugin-filter answer: 500 `{"error":"a plugin filter failed","route":…}`.
fn assert_filter_failed(resp: &Resp, route: &str, label: &str) {
    assert_eq!(resp.status, 500, "{label}: {}", resp.describe());
    assert_eq!(
        resp.try_json(),
        Some(json!({"error": "a plugin filter failed", "route": route})),
        "{label}: {}",
        resp.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_panic_filter_answers_500() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("panic-filter", &backend.url())
            .m(path("/pf"))
            .plugin_filter("bad-panic", &["panic"]),
        Route::proxy("panic-response", &backend.url())
            .m(path("/pr"))
            .plugin_filter("bad-panic", &["panic-response"]),
        Route::proxy("calm-filter", &backend.url())
            .m(path("/calm"))
            .plugin_filter("bad-panic", &["ok"]),
        Route::respond("unrelated").m(path("/ok")),
    ]);
    let mut rd = launch(&cfg, &["bad-panic"]).start().await;

    for attempt in 1..=3 {
        let before = backend.requests();
        let mark = rd.log_count();
        let started = Instant::now();
        let resp = rd.get("/pf").await;
        let elapsed = started.elapsed();
        println!(
            "bad-panic filter (on-request) request {attempt}: {} in {elapsed:?}",
            resp.describe()
        );
        assert_filter_failed(&resp, "panic-filter", "on-request panic");
        assert!(elapsed < CONTAINED_WITHIN, "took {elapsed:?}");
        assert_eq!(
            backend.requests(),
            before,
            "the request must not be proxied"
        );
        let line = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| {
                is_failure_line(l, "filter", "bad-panic", "panic-filter")
            })
            .await;
        assert!(
            line.is_some(),
            "no `plugin filter failed plugin=\"bad-panic\" route=panic-filter` line"
        );

        // Panicking in the response phase: the backend was reached, the answer is still 500.
        let before = backend.requests();
        let resp = rd.get("/pr").await;
        assert_filter_failed(&resp, "panic-response", "on-response panic");
        assert_eq!(backend.requests(), before + 1);

        // The same plugin with harmless args, and an unrelated route, keep working.
        let resp = rd.get("/calm").await;
        assert_eq!(resp.status, 200, "{}", resp.describe());
        assert_eq!(resp.backend().as_deref(), Some("echo"));
        assert_eq!(rd.get("/ok").await.text(), "unrelated");
    }
    assert!(rd.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_filter_flood_answers_500() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("flood-reply", &backend.url())
            .m(path("/reply"))
            .plugin_filter("bad-headers", &["reply"]),
        Route::proxy("flood-edits", &backend.url())
            .m(path("/edits"))
            .plugin_filter("bad-headers", &["edits"]),
        Route::proxy("flood-response", &backend.url())
            .m(path("/response"))
            .plugin_filter("bad-headers", &["response"]),
        // Fast enough for the deadline but over the 256-header cap: the limit itself refuses it.
        Route::proxy("over-cap", &backend.url())
            .m(path("/over-cap"))
            .plugin_filter("bad-headers", &["edits", "300", "8"]),
        // Within the limits the same plugin's reply goes through.
        Route::proxy("small-reply", &backend.url())
            .m(path("/small"))
            .plugin_filter("bad-headers", &["reply", "3", "8"]),
        Route::respond("unrelated").m(path("/ok")),
    ]);
    let mut rd = launch(&cfg, &["bad-headers"]).start().await;

    for (request, route, reaches_backend) in [
        ("/reply", "flood-reply", false),
        ("/edits", "flood-edits", false),
        ("/response", "flood-response", true),
    ] {
        for attempt in 1..=2 {
            let before = backend.requests();
            let mark = rd.log_count();
            let started = Instant::now();
            let resp = rd.get(request).await;
            let elapsed = started.elapsed();
            println!(
                "bad-headers {request} request {attempt}: {} in {elapsed:?}",
                resp.describe()
            );
            assert_filter_failed(&resp, route, request);
            assert!(elapsed < CONTAINED_WITHIN, "took {elapsed:?}");
            assert!(
                !resp
                    .headers
                    .keys()
                    .any(|k| k.as_str().starts_with("x-bad-")),
                "{request}: flood headers reached the client"
            );
            assert_eq!(
                backend.requests(),
                before + usize::from(reaches_backend),
                "{request}: backend requests"
            );
            let line = rd
                .wait_for_log(mark, Duration::from_secs(5), |l| {
                    is_failure_line(l, "filter", "bad-headers", route)
                })
                .await;
            let Some(line) = line else {
                panic!("{request}: no `plugin filter failed plugin=\"bad-headers\"` line");
            };
            println!("  {line}");
        }
    }

    // The cap, not the deadline, refuses 300 small headers.
    let mark = rd.log_count();
    let before = backend.requests();
    let resp = rd.get("/over-cap").await;
    assert_filter_failed(&resp, "over-cap", "/over-cap");
    assert_eq!(backend.requests(), before, "/over-cap: backend requests");
    let line = rd
        .wait_for_log(mark, Duration::from_secs(5), |l| {
            is_failure_line(l, "filter", "bad-headers", "over-cap")
        })
        .await
        .expect("no `plugin filter failed` line for /over-cap");
    println!("bad-headers /over-cap: {line}");
    assert!(
        line.contains("rejected result"),
        "300 headers should be refused by the header cap: {line}"
    );

    let resp = rd.get("/small").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let mut bad: Vec<&str> = resp
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| k.starts_with("x-bad-"))
        .collect();
    bad.sort_unstable();
    assert_eq!(bad, ["x-bad-00000", "x-bad-00001", "x-bad-00002"]);
    assert_eq!(rd.get("/ok").await.text(), "unrelated");
    assert!(rd.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_escape_is_denied_file_socket_and_http() {
    // Targets that are reachable outside the sandbox: a file we wrote and a listening socket.
    let secret_dir = TempDir::new("secret");
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    let secret = secret.to_str().unwrap().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let _probe = std::net::TcpStream::connect(addr).expect("the listener accepts");
        let _ = listener.accept().unwrap();
    }
    listener.set_nonblocking(true).unwrap();

    let cfg = config(vec![
        Route::respond("escaped")
            .m(path("/esc"))
            .m(plugin_pred("bad-escape", &[&secret, &addr.to_string()])),
        Route::respond("contained").m(path("/esc")),
    ]);
    let mut rd = launch(&cfg, &["bad-escape"]).start().await;
    for attempt in 1..=2 {
        let mark = rd.log_count();
        let resp = rd.get("/esc").await;
        assert_eq!(
            (resp.status, resp.text()),
            (200, "contained".to_owned()),
            "attempt {attempt}"
        );
        let read = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| {
                log_field(l, "plugin").as_deref() == Some("bad-escape")
                    && l.contains(&format!("reading {secret} failed"))
            })
            .await;
        let connect = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| {
                log_field(l, "plugin").as_deref() == Some("bad-escape")
                    && l.contains(&format!("connecting to {addr} failed"))
            })
            .await;
        // wasi:http is linked (toolchains import it), but every outgoing request is refused.
        let http = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| {
                log_field(l, "plugin").as_deref() == Some("bad-escape")
                    && l.contains(&format!("GET http://{addr}/ failed:"))
                    && l.contains("HttpRequestDenied")
            })
            .await;
        println!("bad-escape attempt {attempt}:\n  {read:?}\n  {connect:?}\n  {http:?}");
        assert!(read.is_some(), "no log line about the denied file read");
        assert!(connect.is_some(), "no log line about the denied connection");
        assert!(http.is_some(), "no log line about the refused HTTP request");
    }
    let escaped: Vec<String> = rd
        .logs()
        .into_iter()
        .filter(|l| l.contains("ESCAPED"))
        .collect();
    assert!(escaped.is_empty(), "the sandbox leaked: {escaped:?}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the plugin reached the listener: {other:?}"),
    }
    assert!(rd.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_instance_mode_works() {
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
        Route::respond("plain").m(path("/t")),
    ]);
    let rd = launch(&cfg, &["header-eq"])
        .plugin_settings("header-eq", json!({"mode": "fresh"}))
        .start()
        .await;
    let probes = [
        probe("GET", "/t").header("x-tier", "gold").route("gold"),
        probe("GET", "/t").route("plain"),
        probe("GET", "/t").header("x-tier", "silver").route("plain"),
    ];
    let mut failures = Vec::new();
    for round in 1..=5 {
        failures.extend(run_probes(&rd, &format!("round {round}"), &probes).await);
    }
    let failed: Vec<String> = rd
        .logs()
        .into_iter()
        .filter(|l| l.contains("plugin predicate failed"))
        .collect();
    if !failed.is_empty() {
        failures.push(format!("plugin calls failed in fresh mode: {failed:?}"));
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_a_plugins_settings_file_reloads_it() {
    let cfg = contained_config("bad-loop", &[]);
    let rd = launch(&cfg, &["bad-loop", "header-eq"]).start().await;
    let settings = rd.plugins_dir().join("bad-loop.json");
    let mut failures = run_probes(&rd, "default", &[probe("GET", "/bad").route("fallback")]).await;
    for _ in 0..20 {
        rd.get("/bad").await;
    }
    let predicate_calls = async || {
        rd.admin_get("/api/v1/plugins/bad-loop").await.json()["calls_by_phase"]["predicate"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = predicate_calls().await;
    assert!(before >= 21, "{before} predicate calls");

    // fail_open written beside the plugin: the same plugin now lets the guarded route match.
    let mark = rd.log_count();
    install_file(&settings, br#"{"failure": "fail_open"}"#);
    let open = wait_until(
        async || rd.get("/bad").await.text() == "guarded",
        RELOAD_TIMEOUT,
    )
    .await;
    println!("bad-loop.json fail_open applied: {open}");
    if !open {
        failures.push(format!(
            "writing bad-loop.json (fail_open) was not applied within {RELOAD_TIMEOUT:?}"
        ));
    }
    if !rd
        .log_records_since(mark)
        .iter()
        .any(|l| is_loaded_line(l, "bad-loop"))
    {
        failures
            .push("no `plugin loaded plugin=\"bad-loop\"` line after writing its settings".into());
    }

    // Settings the registry refuses keep the loaded version (still fail_open).
    let mark = rd.log_count();
    install_file(&settings, br#"{"failure": "sometimes"}"#);
    let refused = rd
        .wait_for_log(mark, RELOAD_TIMEOUT, |l| {
            l.contains("plugin not loaded") && log_field(l, "plugin").as_deref() == Some("bad-loop")
        })
        .await;
    println!("invalid bad-loop.json: {refused:?}");
    if refused.is_none() {
        failures.push("no `plugin not loaded` line for invalid settings".into());
    }
    failures.extend(
        run_probes(
            &rd,
            "invalid settings",
            &[probe("GET", "/bad").route("guarded")],
        )
        .await,
    );

    // Deleting the settings file goes back to the defaults (fail_closed).
    std::fs::remove_file(&settings).unwrap();
    let closed = poll_route(&rd, "/bad", "fallback", RELOAD_TIMEOUT, &mut failures).await;
    println!("bad-loop.json deleted -> fail_closed after {closed:?}");
    if closed.is_none() {
        failures.push(format!(
            "deleting bad-loop.json did not restore fail_closed within {RELOAD_TIMEOUT:?}"
        ));
    }
    failures.extend(run_probes(&rd, "unrelated", &[probe("GET", "/ok").route("unrelated")]).await);
    // Three reloads later the counters have gone on counting under the plugin's name.
    let after = predicate_calls().await;
    if after <= before {
        failures.push(format!(
            "predicate calls went from {before} to {after} across reloads: the counters were reset"
        ));
    }
    assert_no_failures(&failures);
}

/// Polls `GET path` every 10 ms until it answers 200 with body `want`; returns how long that
/// took, or `None` after `timeout`. Transport errors and non-200 answers go to `failures`.
async fn poll_route(
    rd: &Routerd,
    path: &str,
    want: &str,
    timeout: Duration,
    failures: &mut Vec<String>,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        match rd.try_request("GET", path, &[], Bytes::new()).await {
            Ok(r) if r.status == 200 && r.text() == want => return Some(started.elapsed()),
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("poll {path}: {}", r.describe())),
            Err(e) => failures.push(format!("poll {path}: transport error: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Compile cache and logs
// ---------------------------------------------------------------------------------------------

/// `(plugin, sha256, cache, compile_ms)` of every `plugin loaded` line.
fn loaded_lines(rd: &Routerd) -> Vec<(String, String, String, String)> {
    rd.log_records_since(0)
        .iter()
        .filter(|l| l.contains("plugin loaded"))
        .map(|l| {
            let f = |k| log_field(l, k).unwrap_or_default();
            (f("plugin"), f("sha256"), f("cache"), f("compile_ms"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_plugins_are_cached_across_restarts() {
    let data = TempDir::new("cache-data");
    let plugins = TempDir::new("cache-plugins");
    for name in ["header-eq", "add-headers"] {
        install_file(
            &plugins.path().join(format!("{name}.wasm")),
            &std::fs::read(dist_plugin(name)).unwrap(),
        );
    }
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"]))
            .plugin_filter("add-headers", &["resp:X-Tier-Seen", "gold"]),
        Route::respond("plain").m(path("/t")),
    ]);
    let start = || {
        Routerd::launch(&cfg)
            .plugins_dir(plugins.path())
            .data_dir(data.path())
            .start()
    };
    let check_serving = async |rd: &Routerd, run: &str| {
        let resp = rd
            .request("GET", "/t", &[("x-tier", "gold")], Bytes::new())
            .await;
        assert_eq!(resp.text(), "gold", "{run}");
        assert_eq!(resp.header("x-tier-seen").as_deref(), Some("gold"), "{run}");
        assert_eq!(rd.get("/t").await.text(), "plain", "{run}");
    };

    let mut first = start().await;
    let first_loads = loaded_lines(&first);
    println!("first start: {first_loads:?}");
    check_serving(&first, "first start").await;
    first.sigterm();
    let status = first.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: exit status {status:?}"
    );
    drop(first);
    let cached: Vec<_> = std::fs::read_dir(data.path().join("plugin-cache"))
        .expect("data/plugin-cache exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert!(
        cached.len() >= 2,
        "expected a compiled artifact per plugin in plugin-cache, found {}",
        cached.len()
    );

    let second = start().await;
    let second_loads = loaded_lines(&second);
    println!("second start: {second_loads:?}");
    check_serving(&second, "second start").await;

    for name in ["header-eq", "add-headers"] {
        let find = |loads: &[(String, String, String, String)]| {
            loads
                .iter()
                .find(|(p, ..)| p == name)
                .cloned()
                .unwrap_or_else(|| panic!("no `plugin loaded` line for {name}: {loads:?}"))
        };
        let (_, sha1, cache1, ms1) = find(&first_loads);
        let (_, sha2, cache2, ms2) = find(&second_loads);
        println!(
            "{name}: first start cache={cache1} compile_ms={ms1}; second cache={cache2} compile_ms={ms2}"
        );
        assert_eq!(cache1, "miss", "{name} on a fresh data dir");
        assert_eq!(cache2, "hit", "{name} on the second start");
        assert_eq!(sha1.len(), 64, "{name}: sha256 {sha1:?}");
        assert_eq!(sha1, sha2, "{name}: same bytes, same sha256");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_log_lines_are_tagged_with_the_plugin_name() {
    let cfg = config(vec![
        Route::respond("panics")
            .m(path("/p1"))
            .m(plugin_pred("bad-panic", &["panic"])),
        Route::respond("panics-too")
            .m(path("/p2"))
            .m(plugin_pred("panicky", &["panic"])),
        Route::respond("escape")
            .m(path("/esc"))
            .m(plugin_pred("bad-escape", &[])),
        Route::respond("fallback").m(prefix("/")),
    ]);
    // The same component under a second name: lines carry the name it was loaded as.
    let rd = launch(&cfg, &["bad-panic", "bad-escape"])
        .plugin_as("panicky", "bad-panic")
        .start()
        .await;
    let panic_message = "bad-panic: panicking in matches, as asked";

    for (request, name, other) in [
        ("/p1", "bad-panic", "panicky"),
        ("/p2", "panicky", "bad-panic"),
    ] {
        let mark = rd.log_count();
        assert_eq!(rd.get(request).await.text(), "fallback");
        let line = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| l.contains(panic_message))
            .await;
        let Some(line) = line else {
            panic!("{request}: the plugin's panic message did not reach the log");
        };
        println!("{request}: {line}");
        assert_eq!(log_field(&line, "plugin").as_deref(), Some(name), "{line}");
        assert_eq!(
            log_field(&line, "stream").as_deref(),
            Some("stderr"),
            "{line}"
        );
        let mislabelled: Vec<String> = rd
            .log_records_since(mark)
            .into_iter()
            .filter(|l| {
                l.contains(panic_message) && log_field(l, "plugin").as_deref() != Some(name)
            })
            .collect();
        assert!(
            mislabelled.is_empty(),
            "{request}: lines not tagged {name} (e.g. {other}): {mislabelled:?}"
        );
    }

    // Lines from the log import (not stdout/stderr).
    let mark = rd.log_count();
    assert_eq!(rd.get("/esc").await.text(), "fallback");
    let line = rd
        .wait_for_log(mark, Duration::from_secs(5), |l| {
            l.contains("bad-escape: reading")
        })
        .await;
    let Some(line) = line else {
        panic!("bad-escape's log line did not reach the log");
    };
    println!("/esc: {line}");
    assert_eq!(log_field(&line, "plugin").as_deref(), Some("bad-escape"));
    assert_eq!(log_field(&line, "stream"), None, "{line}");
}

/// Loaded plugins are not bounded by the instance pool: warm instances are a cache, evicted
/// least recently used first when the pool runs short. With a pool of 16 instances, 48 plugins
/// load, every route using them is active, and each answers through its own plugin, round
/// after round (so instances are evicted and re-created all the time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_plugins_than_pool_instances_all_load_and_serve() {
    const PLUGINS: usize = 48;
    const POOL: usize = 16;
    let mut routes = Vec::new();
    for i in 0..PLUGINS {
        routes.push(
            Route::respond(&format!("r{i}"))
                .m(path(&format!("/p/{i}")))
                .m(plugin_pred(&format!("p{i}"), &["x-n", &i.to_string()])),
        );
    }
    routes.push(Route::respond("miss").m(prefix("/p")));
    let cfg = config(routes);
    let mut launch = launch(&cfg, &[])
        .arg("--plugin-instances")
        .arg(POOL.to_string());
    for i in 0..PLUGINS {
        launch = launch.plugin_as(&format!("p{i}"), "header-eq");
    }
    let rd = launch.start().await;
    let list = rd.admin_get("/api/v1/plugins").await.json();
    let loaded = list["plugins"].as_array().map_or(0, Vec::len);
    assert_eq!(loaded, PLUGINS, "every plugin loads: {list}");
    let mut failures = Vec::new();
    for round in 1..=2 {
        let mut probes = Vec::new();
        for i in 0..PLUGINS {
            let n = i.to_string();
            probes.push(
                probe("GET", &format!("/p/{i}"))
                    .header("x-n", &n)
                    .route(&format!("r{i}")),
            );
            probes.push(
                probe("GET", &format!("/p/{i}"))
                    .header("x-n", "no")
                    .route("miss"),
            );
        }
        failures.extend(run_probes(&rd, &format!("round {round}"), &probes).await);
    }
    assert_no_failures(&failures);
    let list = rd.admin_get("/api/v1/plugins").await.json();
    let plugins = list["plugins"].as_array().unwrap();
    let idle: u64 = plugins
        .iter()
        .map(|p| p["idle_instances"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        idle <= POOL as u64,
        "idle instances ({idle}) never exceed the pool ({POOL})"
    );
    for p in plugins {
        assert_eq!(
            p["overloaded"], 0,
            "no call was refused for want of an instance: {p}"
        );
        assert_eq!(p["traps"], 0, "{p}");
    }
}

/// Compiling happens in a short-lived child process by default (so the compiler's memory is
/// returned to the system), and in routerd itself with `--plugin-compiler in-process`; either
/// way the plugin serves, and a restart loads the cached artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_compile_in_a_child_process_unless_told_otherwise() {
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
        Route::respond("plain").m(path("/t")),
    ]);
    for (flag, expected) in [(None, "child"), (Some("in-process"), "routerd")] {
        // A cold cache of its own, so the plugin is compiled.
        let mut launch = Routerd::launch(&cfg).plugin("header-eq");
        if let Some(place) = flag {
            launch = launch.arg("--plugin-compiler").arg(place);
        }
        let rd = launch.start().await;
        let line = rd
            .logs()
            .into_iter()
            .find(|l| is_loaded_line(l, "header-eq"))
            .unwrap_or_else(|| panic!("no load line: {:?}", rd.logs()));
        assert_eq!(
            log_field(&line, "compiled_by").as_deref(),
            Some(expected),
            "{line}"
        );
        let resp = rd.request("GET", "/t", &[("x-tier", "gold")], "").await;
        assert_eq!(resp.text(), "gold", "{expected}: {}", resp.describe());
        let cached = std::fs::read_dir(rd.data_dir().join("plugin-cache"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(cached, 1, "{expected}: one artifact in the compile cache");
    }
}

/// stdout and stderr share the `log` import's per-call budget: a call that writes 2,000 lines
/// leaves at most the budget (64) in the log, plus one warning that the rest were dropped.
/// (The deadline is raised: 2,000 writes take longer than 10 ms in a debug build.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_output_floods_are_rate_limited() {
    let cfg = config(vec![
        Route::respond("flooded")
            .m(path("/flood"))
            .m(plugin_pred("bad-panic", &["flood"])),
    ]);
    let rd = launch(&cfg, &["bad-panic"])
        .plugin_settings("bad-panic", json!({"deadline_ms": 2000}))
        .start()
        .await;
    for round in 0..3 {
        let mark = rd.log_count();
        assert_eq!(rd.get("/flood").await.text(), "flooded", "round {round}");
        let warned = rd
            .wait_for_log(mark, Duration::from_secs(5), |l| {
                l.contains("log lines in one call")
            })
            .await;
        assert!(
            warned.is_some(),
            "round {round}: no warning about dropped lines"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let lines = rd
            .log_records_since(mark)
            .into_iter()
            .filter(|l| l.contains("flood line"))
            .count();
        assert!(
            (1..=64).contains(&lines),
            "round {round}: {lines} flood lines reached the log (budget 64 per call)"
        );
    }
}
