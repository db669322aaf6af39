//! Black-box tests of misbehaving plugins: a real `routerd` process and the `bad-*` plugins
//! built from `plugins/` (deadline, memory cap, stack overflow, panics, sleeping in WASI,
//! header floods, sandbox escapes) under both failure policies, the circuit breaker, the
//! concurrency cap's queue, the fresh instance mode, and a settings file changed under load.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use serde_json::{Value, json};

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
    let opened = rd
        .wait_for_log(0, Duration::from_secs(5), |l| {
            l.contains("circuit breaker opened")
                && log_field(l, "plugin").as_deref() == Some("bad-loop")
        })
        .await;
    assert!(opened.is_some(), "no `circuit breaker opened` line");
    // The lines of the three failed calls are read from routerd's output by another thread:
    // the mark goes after all three, so none of them is counted below.
    let failed_lines = async || {
        rd.log_records_since(0)
            .iter()
            .filter(|l| is_failure_line(l, "predicate", "bad-loop", "guarded"))
            .count()
            >= 3
    };
    assert!(wait_until(failed_lines, Duration::from_secs(5)).await);
    let mark = rd.log_count();
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
