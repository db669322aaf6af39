//! Black-box tests of outbound HTTP from plugins (`wasi:http/outgoing-handler`): a real
//! `routerd` process, an echo backend and an auth service on 127.0.0.1, the `auth-check` example
//! (Rust, through the SDK) and a JavaScript guest built by componentize-js with its default
//! features calling `fetch`. A request goes out only to an origin on the plugin's allow list,
//! within the call's deadline; any other is refused before a connection is made.
#![allow(clippy::unwrap_used)]

mod harness;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

/// An auth service on 127.0.0.1: `Bearer good` gets 200 with `x-auth-user: ada`, `Bearer slow`
/// the same after 2 s, `Bearer big` a 200 with a 64 KiB body, anything else 403 `denied`. Its
/// address and the requests it answered.
async fn auth_service() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let count = count.clone();
                    async move {
                        count.fetch_add(1, Ordering::Relaxed);
                        let token = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        if token == "Bearer slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let resp = if token == "Bearer big" {
                            hyper::Response::builder()
                                .body(Full::new(Bytes::from(vec![b'x'; 64 << 10])))
                        } else if token == "Bearer good" || token == "Bearer slow" {
                            hyper::Response::builder()
                                .header("x-auth-user", "ada")
                                .body(Full::new(Bytes::from_static(b"ok")))
                        } else {
                            hyper::Response::builder()
                                .status(403)
                                .header("content-type", "text/plain")
                                .body(Full::new(Bytes::from_static(b"denied")))
                        };
                        Ok::<_, Infallible>(resp.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, answered)
}

/// A listener on 127.0.0.1 that accepts connections, counts them and closes them.
async fn counting_listener() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (addr, accepted)
}

/// `routerd_plugin_http_requests_total{plugin, outcome}` in a `/metrics` text, 0 when absent.
fn outbound(metrics: &str, plugin: &str, outcome: &str) -> u64 {
    let series =
        format!("routerd_plugin_http_requests_total{{plugin=\"{plugin}\",outcome=\"{outcome}\"}}");
    series_value(metrics, &series).map_or(0, |v| v as u64)
}

/// The auth example lets a request through, with the user the service names (a client-sent
/// `x-auth-user` never reaches the backend), when its allowed service says 200; passes the
/// service's 403 back; and answers 503 within the call's deadline when the service is too slow,
/// or when its answer is larger than the plugin's response cap. The access log's plugin time
/// includes the wait for the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_example_answers_by_what_its_allowed_service_says() {
    let backend = Backend::start("echo").await;
    let (auth, answered) = auth_service().await;
    let dir = TempDir::new("auth-check");
    let log = dir.path().join("access.log");
    let cfg = config(vec![
        Route::proxy("app", &backend.url())
            .m(path("/app"))
            .plugin_filter("auth-check", &[&format!("http://{auth}/check")]),
    ]);
    let rd = launch(&cfg, &["auth-check"])
        .plugin_settings(
            "auth-check",
            json!({"deadline_ms": 300, "http": {
                "allow": [format!("http://{auth}")],
                "max_response_bytes": 4096,
            }}),
        )
        .arg("--access-log")
        .arg("json")
        .arg("--access-log-file")
        .arg(&log)
        .start()
        .await;
    let ask = async |token: &str| {
        let headers = [("authorization", token), ("x-auth-user", "mallory")];
        rd.request("GET", "/app?x=1", &headers, Bytes::new()).await
    };

    let good = ask("Bearer good").await;
    assert_eq!(good.status, 200, "{}", good.describe());
    assert_eq!(good.backend().as_deref(), Some("echo"));
    assert_eq!(good.echoed_header("x-auth-user"), ["ada"]);

    let bad = ask("Bearer bad").await;
    assert_eq!(bad.status, 403, "{}", bad.describe());
    assert_eq!(bad.text(), "denied");
    assert_eq!(
        bad.backend(),
        None,
        "a refused request never reaches the backend"
    );

    let started = Instant::now();
    let slow = ask("Bearer slow").await;
    let took = started.elapsed();
    assert_eq!(slow.status, 503, "{}", slow.describe());
    assert!(
        took < Duration::from_millis(1500),
        "answered within the 300 ms deadline (plus scheduling), not after the service's 2 s: {took:?}"
    );
    assert_eq!(answered.load(Ordering::Relaxed), 3);

    let big = ask("Bearer big").await;
    assert_eq!(big.status, 503, "{}", big.describe());

    let metrics = rd.admin_get("/metrics").await.text();
    assert_eq!(outbound(&metrics, "auth-check", "answered"), 3, "{metrics}");
    let cut = "routerd_plugin_http_too_large_total{plugin=\"auth-check\"} 1";
    assert!(metrics.contains(cut), "{metrics}");
    assert_eq!(
        outbound(&metrics, "auth-check", "timed_out"),
        1,
        "{metrics}"
    );
    assert_eq!(outbound(&metrics, "auth-check", "denied"), 0, "{metrics}");

    let docs = json_lines(&log, 4, Duration::from_secs(10)).await;
    assert!(docs.len() >= 4, "four access-log lines: {docs:?}");
    let slow_line = &docs[2];
    let plugin_ms = slow_line["plugin_ms"].as_f64().unwrap();
    assert!(
        plugin_ms >= 200.0,
        "the wait for the service is plugin time: {slow_line}"
    );
}

/// Plugins whose allow list does not name an origin (another port of the same host, or no
/// list at all) are refused before a connection is made: a listener on that origin accepts
/// nothing, the refusal is counted and logged, and the auth example answers 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_origin_is_refused_before_any_connection() {
    let backend = Backend::start("echo").await;
    let (target, accepted) = counting_listener().await;
    let (allowed, _) = counting_listener().await;
    let url = format!("http://{target}/check");
    let cfg = config(vec![
        Route::proxy("other-port", &backend.url())
            .m(path("/other"))
            .plugin_filter("auth-other", &[&url]),
        Route::proxy("no-list", &backend.url())
            .m(path("/none"))
            .plugin_filter("auth-none", &[&url]),
    ]);
    let rd = launch(&cfg, &[])
        .plugin_as("auth-other", "auth-check")
        .plugin_as("auth-none", "auth-check")
        .plugin_settings(
            "auth-other",
            json!({"deadline_ms": 300, "http": {"allow": [format!("http://{allowed}")]}}),
        )
        .plugin_settings("auth-none", json!({"deadline_ms": 300}))
        .start()
        .await;
    for (path, plugin) in [("/other", "auth-other"), ("/none", "auth-none")] {
        let r = rd
            .request(
                "GET",
                path,
                &[("authorization", "Bearer good")],
                Bytes::new(),
            )
            .await;
        assert_eq!(r.status, 503, "{path}: {}", r.describe());
        let metrics = rd.admin_get("/metrics").await.text();
        assert_eq!(outbound(&metrics, plugin, "denied"), 1, "{metrics}");
        assert_eq!(outbound(&metrics, plugin, "answered"), 0, "{metrics}");
    }
    // Give a connection that should not exist time to show up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        0,
        "no connection reached it"
    );
    let logged = rd
        .wait_for_log(0, Duration::from_secs(5), |l| {
            l.contains("not on the plugin's http.allow list") && l.contains("auth-other")
        })
        .await;
    assert!(logged.is_some(), "{}", rd.logs().join("\n"));
}

/// A bad allow-list entry is refused at load with the field named; the plugin is not loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_allow_list_entry_is_refused_by_name() {
    let cfg = config(vec![Route::respond("r").m(path("/r"))]);
    let rd = launch(&cfg, &["auth-check"])
        .plugin_settings(
            "auth-check",
            json!({"http": {"allow": ["http://127.0.0.1:1", "http://x/path"]}}),
        )
        .start()
        .await;
    let refused = rd
        .wait_for_log(0, Duration::from_secs(10), |l| {
            l.contains("auth-check") && l.contains("http.allow[1]") && l.contains("without a path")
        })
        .await;
    assert!(refused.is_some(), "{}", rd.logs().join("\n"));
    assert_eq!(rd.admin_get("/api/v1/plugins/auth-check").await.status, 404);
}

/// A JavaScript guest built by componentize-js with its default features (`plugins/lang/js-fetch`)
/// calls its allowed auth service with `fetch` and decides by the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_componentize_js_guest_calls_an_allowed_service_with_fetch() {
    let backend = Backend::start("echo").await;
    let (auth, answered) = auth_service().await;
    let cfg = config(vec![
        Route::proxy("app", &backend.url())
            .m(path("/app"))
            .plugin_filter("js-fetch", &[&format!("http://{auth}/check")]),
    ]);
    let rd = Routerd::launch(&cfg)
        .warm_cache()
        .plugin_path("js-fetch", &lang_plugin("js-fetch"))
        // StarlingMonkey's first call in an instance runs its cold paths.
        .plugin_settings(
            "js-fetch",
            json!({"deadline_ms": 1000, "http": {"allow": [format!("http://{auth}")]}}),
        )
        .startup_timeout(Duration::from_secs(240))
        .start()
        .await;
    let good = rd
        .request(
            "GET",
            "/app",
            &[("authorization", "Bearer good")],
            Bytes::new(),
        )
        .await;
    assert_eq!(good.status, 200, "{}", good.describe());
    assert_eq!(good.backend().as_deref(), Some("echo"));
    let bad = rd
        .request(
            "GET",
            "/app",
            &[("authorization", "Bearer bad")],
            Bytes::new(),
        )
        .await;
    assert_eq!(bad.status, 403, "{}", bad.describe());
    assert_eq!(bad.text(), "denied");
    assert_eq!(
        answered.load(Ordering::Relaxed),
        2,
        "both went to the service"
    );
    let metrics = rd.admin_get("/metrics").await.text();
    assert_eq!(outbound(&metrics, "js-fetch", "answered"), 2, "{metrics}");
}
