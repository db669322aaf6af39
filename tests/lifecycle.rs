//! Black-box lifecycle tests of the `routerd` process: hot reload (atomic swap, keep the last
//! good table on a bad change), refusing an invalid config at start (exit code and message),
//! draining in-flight requests on SIGTERM, the embedded default config and the admin listener.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{Value, json};

/// A route on `path` answering 200 with `body`.
fn answer(name: &str, path_pattern: &str, body: &str) -> Route {
    Route(json!({
        "name": name,
        "matchers": [{"condition": "path", "pattern": path_pattern}],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_the_table() {
    let rd = Routerd::start(&config(vec![answer("r", "/r", "v1")])).await;
    assert_eq!(rd.get("/r").await.text(), "v1");
    assert_eq!(rd.get("/new").await.status, 404);

    // Atomic replace (write + rename). While it takes effect, every answer is v1 or v2.
    rd.write_config(&config(vec![
        answer("r", "/r", "v2"),
        answer("new", "/new", "new"),
    ]));
    let mut seen = Vec::new();
    let swapped = wait_until(
        async || {
            let resp = rd.get("/r").await;
            let text = resp.text();
            assert!(
                resp.status == 200 && (text == "v1" || text == "v2"),
                "during reload /r answered {}",
                resp.describe()
            );
            seen.push(text.clone());
            text == "v2"
        },
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(
        swapped,
        "config change not applied within {RELOAD_TIMEOUT:?}"
    );
    let resp = rd.get("/new").await;
    assert_eq!(
        (resp.status, resp.text()),
        (200, "new".to_owned()),
        "route added by the reload"
    );

    // In-place overwrite, as many editors do; also removes a route.
    let v3 = config(vec![answer("r", "/r", "v3")]);
    rd.write_config_in_place(&serde_json::to_string_pretty(&v3).expect("json"));
    let swapped = wait_until(async || rd.get("/r").await.text() == "v3", RELOAD_TIMEOUT).await;
    assert!(swapped, "in-place config change not applied");
    assert_eq!(
        rd.get("/new").await.status,
        404,
        "removed route still served"
    );
}

/// Wait until a log line after index `from` satisfies `pred`; returns it.
async fn wait_for_log(rd: &Routerd, from: usize, pred: impl Fn(&str) -> bool) -> Option<String> {
    let mut found = None;
    wait_until(
        async || {
            found = rd.logs().into_iter().skip(from).find(|l| pred(l));
            found.is_some()
        },
        RELOAD_TIMEOUT,
    )
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_last_good_table() {
    let rd = Routerd::start(&config(vec![answer("r", "/r", "v1")])).await;
    assert_eq!(rd.get("/r").await.text(), "v1");

    // A semantically invalid change: bad regex in route `broken-route`.
    let before = rd.logs().len();
    let mut bad = config(vec![answer("r", "/r", "v-bad")]);
    bad["routes"].as_array_mut().expect("routes").push(json!({
        "name": "broken-route",
        "target_url": "http://127.0.0.1:9",
        "matchers": [{"condition": "path", "pattern": "([", "is_regex": true}],
    }));
    rd.write_config(&bad);
    let line = wait_for_log(&rd, before, |l| {
        let l = l.to_lowercase();
        l.contains("broken-route")
            && l.contains("pattern")
            && (l.contains("regex") || l.contains("unclosed") || l.contains("parse"))
    })
    .await;
    assert!(
        line.is_some(),
        "no log line naming route `broken-route`, field `pattern` and the regex error after an \
         invalid reload; logs:\n{}",
        rd.logs()[before..].join("\n")
    );
    let resp = rd.get("/r").await;
    assert_eq!(
        (resp.status, resp.text()),
        (200, "v1".to_owned()),
        "last good table must keep serving"
    );

    // A syntactically invalid change.
    let before = rd.logs().len();
    rd.write_config_in_place("{\"routes\": [ {\"name\": ");
    let error_re = regex::Regex::new(r"(?i)error|invalid|fail|reject|expected|EOF").expect("re");
    let line = wait_for_log(&rd, before, |l| error_re.is_match(l)).await;
    assert!(
        line.is_some(),
        "no error logged after writing invalid JSON; logs:\n{}",
        rd.logs()[before..].join("\n")
    );
    let resp = rd.get("/r").await;
    assert_eq!(
        (resp.status, resp.text()),
        (200, "v1".to_owned()),
        "last good table must keep serving after invalid JSON"
    );

    // Still watching: the next good change applies.
    rd.write_config(&config(vec![answer("r", "/r", "v2")]));
    let swapped = wait_until(async || rd.get("/r").await.text() == "v2", RELOAD_TIMEOUT).await;
    assert!(swapped, "valid change after invalid ones not applied");
}

/// One invalid start config: which route the message must name (any of), and which field.
struct Invalid {
    label: &'static str,
    config: Value,
    routes: &'static [&'static str],
    field: &'static str,
}

fn one_route(route: Value) -> Value {
    json!({"routes": [route]})
}

fn invalid_cases() -> Vec<Invalid> {
    let t = "http://127.0.0.1:9";
    vec![
        Invalid {
            label: "bad regex",
            config: one_route(json!({"name": "bad-re", "target_url": t,
                "matchers": [{"condition": "path", "pattern": "([", "is_regex": true}]})),
            routes: &["bad-re"],
            field: "pattern",
        },
        Invalid {
            label: "bad header regex",
            config: one_route(json!({"name": "bad-hre", "target_url": t,
                "matchers": [{"condition": "header", "field": "X-A", "pattern": "a{2,1}", "is_regex": true}]})),
            routes: &["bad-hre"],
            field: "pattern",
        },
        Invalid {
            label: "unknown condition",
            config: one_route(json!({"name": "bad-cond", "target_url": t,
                "matchers": [{"condition": "phase_of_moon", "pattern": "full"}]})),
            routes: &["bad-cond"],
            field: "condition",
        },
        Invalid {
            label: "header without field",
            config: one_route(json!({"name": "no-field", "target_url": t,
                "matchers": [{"condition": "header", "pattern": "x"}]})),
            routes: &["no-field"],
            field: "field",
        },
        Invalid {
            label: "bad name",
            config: one_route(json!({"name": "bad name!", "target_url": t,
                "matchers": [{"condition": "path", "pattern": "/x"}]})),
            routes: &["bad name!"],
            field: "name",
        },
        Invalid {
            label: "duplicate names",
            config: json!({"routes": [
                {"name": "twice", "target_url": t, "matchers": [{"condition": "path", "pattern": "/a"}]},
                {"name": "twice", "target_url": t, "matchers": [{"condition": "path", "pattern": "/b"}]},
            ]}),
            routes: &["twice"],
            field: "name",
        },
        Invalid {
            label: "two default rules",
            config: json!({"routes": [
                {"name": "d1", "target_url": t, "matchers": [], "default_rule": true},
                {"name": "d2", "target_url": t, "matchers": [], "default_rule": true},
            ]}),
            routes: &["d1", "d2"],
            field: "default_rule",
        },
        Invalid {
            label: "priority out of range",
            config: one_route(
                json!({"name": "too-high", "target_url": t, "priority": 1001,
                "matchers": [{"condition": "path", "pattern": "/x"}]}),
            ),
            routes: &["too-high"],
            field: "priority",
        },
        Invalid {
            label: "strip_prefix without slash",
            config: one_route(
                json!({"name": "no-slash", "target_url": t, "strip_prefix": "api",
                "matchers": [{"condition": "path_prefix", "pattern": "/api"}]}),
            ),
            routes: &["no-slash"],
            field: "strip_prefix",
        },
        Invalid {
            label: "missing target_url",
            config: one_route(json!({"name": "no-target",
                "matchers": [{"condition": "path", "pattern": "/x"}]})),
            routes: &["no-target"],
            field: "target_url",
        },
        Invalid {
            label: "bad target_url",
            config: one_route(json!({"name": "bad-url", "target_url": "not a url",
                "matchers": [{"condition": "path", "pattern": "/x"}]})),
            routes: &["bad-url"],
            field: "target_url",
        },
        Invalid {
            label: "non-default route without matchers",
            config: one_route(json!({"name": "no-matchers", "target_url": t, "matchers": []})),
            routes: &["no-matchers"],
            field: "matchers",
        },
        Invalid {
            label: "path and path_prefix together",
            config: one_route(json!({"name": "two-paths", "target_url": t, "matchers": [
                {"condition": "path", "pattern": "/x"},
                {"condition": "path_prefix", "pattern": "/x"}]})),
            routes: &["two-paths"],
            field: "path",
        },
        Invalid {
            label: "catch-all not last",
            config: one_route(json!({"name": "mid-catch", "target_url": t,
                "matchers": [{"condition": "path", "pattern": "/a/{*rest}/b"}]})),
            routes: &["mid-catch"],
            field: "pattern",
        },
        Invalid {
            label: "bad CIDR",
            config: one_route(json!({"name": "bad-cidr", "target_url": t, "matchers": [
                {"condition": "path", "pattern": "/x"},
                {"condition": "remote_addr", "pattern": "300.1.2.3/8"}]})),
            routes: &["bad-cidr"],
            field: "pattern",
        },
        Invalid {
            label: "unknown {param} in a filter template",
            config: one_route(json!({"name": "bad-param", "target_url": t,
                "matchers": [{"condition": "path", "pattern": "/u/{id}"}],
                "filters": [{"name": "set_request_header", "args": ["X-U", "{nope}"]}]})),
            routes: &["bad-param"],
            field: "filter",
        },
        Invalid {
            label: "unknown filter",
            config: one_route(json!({"name": "no-such-filter", "target_url": t,
                "matchers": [{"condition": "path", "pattern": "/x"}],
                "filters": [{"name": "teleport", "args": []}]})),
            routes: &["no-such-filter"],
            field: "filter",
        },
        Invalid {
            label: "max_body_bytes above the cap",
            config: json!({"max_body_bytes": 1u64 << 40, "routes": [
                {"name": "fine", "target_url": t, "matchers": [{"condition": "path", "pattern": "/x"}]},
            ]}),
            // A document-level field: no route to name.
            routes: &[""],
            field: "max_body_bytes",
        },
        Invalid {
            label: "redirect with a bad status",
            config: one_route(json!({"name": "bad-redirect",
                "matchers": [{"condition": "path", "pattern": "/x"}],
                "filters": [{"name": "redirect", "args": ["abc", "/y"]}]})),
            routes: &["bad-redirect"],
            field: "filter",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_start_config_exits_nonzero_naming_route_and_field() {
    let mut failures = Vec::new();
    for case in invalid_cases() {
        let text = serde_json::to_string_pretty(&case.config).expect("json");
        let out = run_routerd_to_exit(Some(&text), Duration::from_secs(15)).await;
        let stderr = out.stderr.to_lowercase();
        let problem = if out.started {
            Some("it started serving instead of refusing the config".to_owned())
        } else {
            match out.status {
                None => Some("it did not exit within 15 s".to_owned()),
                Some(s) if s.success() => Some("it exited with status 0".to_owned()),
                Some(_)
                    if !case
                        .routes
                        .iter()
                        .any(|r| stderr.contains(&r.to_lowercase())) =>
                {
                    Some(format!("stderr does not name route {:?}", case.routes))
                }
                Some(_) if !stderr.contains(case.field) => {
                    Some(format!("stderr does not name field `{}`", case.field))
                }
                Some(_) => None,
            }
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "[{}] {problem}\n    exit: {:?}\n    stderr: {}\n    stdout: {}",
                case.label,
                out.status,
                out.stderr.trim().replace('\n', "\n            "),
                out.stdout.trim().replace('\n', "\n            "),
            ));
        }
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_start_config_exits_nonzero() {
    let syntax = run_routerd_to_exit(Some("{\"routes\": ["), Duration::from_secs(15)).await;
    assert!(
        !syntax.started && syntax.status.is_some_and(|s| !s.success()),
        "invalid JSON: {syntax:?}"
    );
    assert!(!syntax.stderr.trim().is_empty(), "no message on stderr");

    let missing = run_routerd_to_exit(None, Duration::from_secs(15)).await;
    assert!(
        !missing.started && missing.status.is_some_and(|s| !s.success()),
        "missing config file: {missing:?}"
    );

    // Control: a valid config starts (so the failures above are about the config).
    let valid = config(vec![answer("ok", "/", "ok")]);
    let ok = run_routerd_to_exit(
        Some(&serde_json::to_string(&valid).expect("json")),
        Duration::from_secs(15),
    )
    .await;
    assert!(ok.started, "a valid config should start: {ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let slow = Backend::builder("slow")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let mut rd = Routerd::start(&config(vec![
        Route::proxy("slow", &slow.url()).m(prefix("/")),
    ]))
    .await;
    let addr = rd.proxy;
    let started = Instant::now();
    let in_flight = tokio::spawn(async move { request_to(addr, "GET", "/slow", &[], "").await });
    let reached = wait_until(async || slow.requests() >= 1, Duration::from_secs(5)).await;
    assert!(reached, "request never reached the backend");

    rd.sigterm();
    let resp = tokio::time::timeout(Duration::from_secs(15), in_flight)
        .await
        .expect("in-flight request timed out")
        .expect("task")
        .unwrap_or_else(|e| panic!("in-flight request failed after SIGTERM: {e}"));
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.backend().as_deref(), Some("slow"));
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "the request was not really in flight ({:?})",
        started.elapsed()
    );

    let status = rd.wait_exit(Duration::from_secs(10)).await;
    match status {
        Some(s) => assert_eq!(s.code(), Some(0), "exit status after SIGTERM: {s}"),
        None => panic!("routerd still running 10 s after SIGTERM"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_config_without_flag() {
    let rd = Routerd::start_without_config().await;
    let resp = rd.get("/hello/world").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.text().trim(), "hello, world");
    let resp = rd.get("/hello/ferris").await;
    assert_eq!(resp.text().trim(), "hello, ferris");
    let resp = rd.get("/").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert!(
        !resp.body.is_empty(),
        "embedded `/` route answered an empty body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_healthz() {
    let rd = Routerd::start(&config(vec![answer("r", "/r", "v1")])).await;
    let resp = rd.admin_get("/healthz").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_ne!(rd.admin, rd.proxy);
}

/// Runs `routerd check` on `cfg` (written to a file) with `plugins` copied from the built
/// plugins into its plugins directory (and `garbage.wasm`, which is not a component).
fn run_check(dir: &TempDir, cfg: &str, plugins: &[&str]) -> (Option<i32>, String) {
    let plugins_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins_dir).unwrap();
    for p in plugins {
        std::fs::copy(dist_plugin(p), plugins_dir.join(format!("{p}.wasm"))).unwrap();
    }
    std::fs::write(plugins_dir.join("garbage.wasm"), b"not a component").unwrap();
    let file = dir.path().join("routes.json");
    std::fs::write(&file, cfg).unwrap();
    let out = std::process::Command::new(routerd_bin())
        .arg("check")
        .arg("--config")
        .arg(&file)
        .arg("--plugins")
        .arg(&plugins_dir)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `routerd check` validates a document and the plugins it names without serving: a good one
/// exits 0 naming the plugins it loaded; a bad one exits 1 with one line per error naming the
/// route, the field and the reason (a plugin that does not load is reported with its own
/// error); a document that does not parse exits 2 with the line and column.
#[test]
fn check_reports_every_error_with_route_and_field() {
    let dir = TempDir::new("check");
    let good = config(vec![
        answer("plain", "/plain", "x"),
        Route::respond("gold")
            .m(path("/gold"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
    ]);
    let (code, out) = run_check(&dir, &good.to_string(), &["header-eq", "noop-predicate"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("ok: 2 routes, 1 plugins (header-eq sha256:"),
        "{out}"
    );
    assert!(
        !out.contains("noop-predicate"),
        "only named plugins are loaded: {out}"
    );

    let bad = config(vec![
        answer("plain", "/plain", "x"),
        Route::respond("bad-regex").m(path_re("/(")),
        Route::respond("missing").m(plugin_pred("nowhere", &[])),
        Route::respond("broken").m(plugin_pred("garbage", &[])),
        Route::respond("bad-args")
            .m(path("/a"))
            .m(plugin_pred("header-eq", &["only-one-arg"])),
    ]);
    let (code, out) = run_check(&dir, &bad.to_string(), &["header-eq"]);
    assert_eq!(code, Some(1), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let has = |needle: &[&str]| lines.iter().any(|l| needle.iter().all(|n| l.contains(n)));
    assert!(
        has(&[
            "route \"bad-regex\"",
            "field matchers[0].pattern",
            "invalid_regex"
        ]),
        "{out}"
    );
    assert!(has(&["route \"missing\"", "unknown_plugin"]), "{out}");
    assert!(has(&["plugin \"nowhere\"", "no ", "nowhere.wasm"]), "{out}");
    assert!(has(&["plugin \"garbage\"", "garbage"]), "{out}");
    assert!(has(&["route \"broken\"", "unknown_plugin"]), "{out}");
    assert!(
        has(&["route \"bad-args\"", "matchers[1]", "invalid_plugin_args"]),
        "{out}"
    );
    assert!(
        !out.contains("\"plain\""),
        "a good route is not reported: {out}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.ends_with("errors in 5 routes")),
        "{out}"
    );

    let (code, out) = run_check(&dir, "{\"routes\": [\n  {\"name\": }\n]}", &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("line 2"), "{out}");
}
