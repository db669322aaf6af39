//! Black-box proxying tests: a real `routerd` in front of real echo backends on 127.0.0.1.
//!
//! Covers upstream path building (`strip_prefix`, base paths), query bytes, hop-by-hop and
//! forwarded headers, methods and statuses passed through, 502 / 504, and backend connection
//! reuse (and a connection the backend closed while idle). Bodies are in `proxy_bodies.rs`;
//! h2c, header limits, the access log and WebSocket in `proxy_protocols.rs`.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use harness::*;
use serde_json::{Value, json};

/// Split every value of a comma-separated header into trimmed items.
fn comma_items(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_path_strip_prefix_and_base_path() {
    let b = Backend::start("b").await;
    let base = format!("{}/base", b.url());
    let cfg = config(vec![
        Route::proxy("api", &base)
            .m(prefix("/api"))
            .set("strip_prefix", json!("/api")),
        Route::proxy("nobase", &b.url())
            .m(prefix("/nb"))
            .set("strip_prefix", json!("/nb")),
        Route::proxy("slashbase", &format!("{}/base/", b.url()))
            .m(prefix("/sb"))
            .set("strip_prefix", json!("/sb")),
        Route::proxy("nostrip", &base).m(prefix("/things")),
        Route::proxy("root", &b.url()).m(prefix("/keep")),
    ]);
    let rd = Routerd::start_in_process(&cfg).await;
    let table: &[(&str, &str, Value)] = &[
        ("/api/x?q=1", "/base/x", json!("q=1")),
        ("/api/x/y/", "/base/x/y/", Value::Null),
        ("/api/deep/er/path", "/base/deep/er/path", Value::Null),
        ("/nb/x", "/x", Value::Null),
        ("/nb/x/y?z", "/x/y", json!("z")),
        ("/sb/x", "/base/x", Value::Null),
        ("/things/1", "/base/things/1", Value::Null),
        ("/keep/a/b", "/keep/a/b", Value::Null),
        ("/keep/a%20b", "/keep/a%20b", Value::Null),
    ];
    let mut failures = Vec::new();
    for (req_path, want_path, want_query) in table {
        let resp = rd.get(req_path).await;
        let Some(echo) = resp.try_json().filter(|_| resp.status == 200) else {
            failures.push(format!("GET {req_path}: not proxied: {}", resp.describe()));
            continue;
        };
        if echo["path"] != *want_path || echo["query"] != *want_query {
            failures.push(format!(
                "GET {req_path}: backend saw path {} query {}, expected {want_path:?} {want_query}",
                echo["path"], echo["query"]
            ));
        }
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_forwarded_byte_for_byte() {
    let b = Backend::start("b").await;
    let cfg = config(vec![
        Route::proxy("q", &b.url()).m(prefix("/q")),
        Route::proxy("stripped", &format!("{}/base", b.url()))
            .m(prefix("/s"))
            .set("strip_prefix", json!("/s")),
    ]);
    let rd = Routerd::start_in_process(&cfg).await;
    let table: &[(&str, Value)] = &[
        ("/q?a=1&a=2&b=%20+x", json!("a=1&a=2&b=%20+x")),
        ("/q?x=%2F%3F%26&y=&z", json!("x=%2F%3F%26&y=&z")),
        ("/q?B=2&A=1", json!("B=2&A=1")),
        ("/q/p?k=%E2%9C%93", json!("k=%E2%9C%93")),
        ("/q", Value::Null),
        ("/s/p?a=1&a=2&b=%20+x", json!("a=1&a=2&b=%20+x")),
    ];
    let mut failures = Vec::new();
    for (req_path, want) in table {
        let resp = rd.get(req_path).await;
        let got = resp.try_json().map(|j| j["query"].clone());
        if got.as_ref() != Some(want) {
            failures.push(format!(
                "GET {req_path}: backend query {got:?}, expected {want} ({})",
                resp.describe()
            ));
        }
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_dropped_both_ways() {
    let b = Backend::builder("b")
        .header("Connection", "X-Hop-R")
        .header("X-Hop-R", "1")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authenticate", "Basic realm=x")
        .header("X-End-To-End-R", "yes")
        .start()
        .await;
    let rd =
        Routerd::start_in_process(&config(vec![Route::proxy("p", &b.url()).m(prefix("/"))])).await;
    let resp = rd
        .request(
            "GET",
            "/hop",
            &[
                ("Connection", "keep-alive, X-Hop-A"),
                ("X-Hop-A", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "X-T"),
                ("Upgrade", "foo/1"),
                ("Proxy-Authorization", "Basic abc"),
                ("Proxy-Connection", "keep-alive"),
                ("X-End-To-End", "kept"),
            ],
            "",
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    for name in [
        "x-hop-a",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            resp.echoed_header(name).is_empty(),
            "hop-by-hop request header {name} reached the backend: {:?}",
            resp.echoed_header(name)
        );
    }
    let conn = resp.echoed_header("connection").join(",").to_lowercase();
    assert!(
        !conn.contains("x-hop-a"),
        "client Connection header forwarded: {conn:?}"
    );
    assert_eq!(resp.echoed_header("x-end-to-end"), vec!["kept"]);

    for name in ["x-hop-r", "keep-alive", "proxy-authenticate"] {
        assert!(
            resp.header(name).is_none(),
            "hop-by-hop response header {name} reached the client: {:?}",
            resp.header_all(name)
        );
    }
    assert_eq!(resp.header("x-end-to-end-r").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_and_upstream_host() {
    let b = Backend::start("b").await;
    let rd =
        Routerd::start_in_process(&config(vec![Route::proxy("p", &b.url()).m(prefix("/"))])).await;

    let resp = rd
        .request("GET", "/f", &[("Host", "shop.example.com")], "")
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        resp.echoed_header("host"),
        vec![b.addr.to_string()],
        "upstream Host must be the target's authority"
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-host"),
        vec!["shop.example.com"]
    );
    assert_eq!(resp.echoed_header("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        comma_items(&resp.echoed_header("x-forwarded-for")),
        vec!["127.0.0.1"]
    );

    let resp = rd
        .request("GET", "/f", &[("X-Forwarded-For", "10.0.0.1")], "")
        .await;
    assert_eq!(
        comma_items(&resp.echoed_header("x-forwarded-for")),
        vec!["10.0.0.1", "127.0.0.1"],
        "client IP appended to the existing X-Forwarded-For"
    );
    assert_eq!(
        resp.echoed_header("x-forwarded-host"),
        vec![rd.proxy.to_string()],
        "X-Forwarded-Host is the original Host"
    );
    assert_eq!(resp.echoed_header("host"), vec![b.addr.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_status_and_headers_pass_through() {
    let b = Backend::builder("b")
        .status(418)
        .header("Set-Cookie", "a=1")
        .header("Set-Cookie", "b=2")
        .header("X-Custom", "yes")
        .start()
        .await;
    let rd =
        Routerd::start_in_process(&config(vec![Route::proxy("p", &b.url()).m(prefix("/"))])).await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        let resp = rd
            .request(method, "/m", &[("X-Multi", "1"), ("X-Multi", "2")], "body!")
            .await;
        assert_eq!(resp.status, 418, "{method}: {}", resp.describe());
        assert_eq!(resp.header_all("set-cookie"), vec!["a=1", "b=2"]);
        assert_eq!(resp.header("x-custom").as_deref(), Some("yes"));
        let echo = resp.json();
        assert_eq!(echo["method"], method);
        assert_eq!(echo["body"], "body!", "{method} body");
        assert_eq!(
            comma_items(&resp.echoed_header("x-multi")),
            vec!["1", "2"],
            "repeated request header"
        );
    }

    // HEAD: the backend's head comes back, without a body.
    let resp = rd.request("HEAD", "/m", &[], "").await;
    assert_eq!(resp.status, 418, "HEAD: {}", resp.describe());
    assert_eq!(resp.header("x-custom").as_deref(), Some("yes"));
    assert!(resp.body.is_empty(), "HEAD response with a body");
    assert_eq!(b.requests(), 6);
}

fn assert_error_json(resp: &Resp, status: u16, route: &str) {
    assert_eq!(resp.status, status, "{}", resp.describe());
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "content-type {ct:?} for {}",
        resp.describe()
    );
    let json = resp.json();
    assert!(json["error"].is_string(), "no \"error\" in {json}");
    assert_eq!(json["route"], route, "route in {json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backend_is_502() {
    let port = unused_port();
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("dead", &format!("http://127.0.0.1:{port}")).m(prefix("/dead")),
    ]))
    .await;
    let started = Instant::now();
    let resp = rd.get("/dead/x").await;
    assert_error_json(&resp, 502, "dead");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "502 took {:?}",
        started.elapsed()
    );
    let resp = rd.request("POST", "/dead", &[], "x").await;
    assert_error_json(&resp, 502, "dead");
}

/// A raw HTTP/1.1 backend on 127.0.0.1 answering `ok` to every request and counting the
/// connections it accepted; with `close_after_answer` it closes each connection shortly after
/// its first answer without saying so (no `Connection: close`), as a backend whose keep-alive
/// timer fired does.
async fn counting_backend(
    close_after_answer: bool,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let mut head = Vec::new();
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    // GETs only: every complete head is one request.
                    while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                        head.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if close_after_answer {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connections_are_reused_and_a_closed_idle_one_costs_no_request() {
    use std::sync::atomic::Ordering;
    let (keep, keep_accepted) = counting_backend(false).await;
    let (closing, closing_accepted) = counting_backend(true).await;
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("keep", &keep).m(prefix("/keep")),
        Route::proxy("closing", &closing).m(prefix("/closing")),
    ]))
    .await;
    for i in 0..50 {
        let resp = rd.get("/keep/x").await;
        assert_eq!(
            (resp.status, resp.text()),
            (200, "ok".to_owned()),
            "request {i}"
        );
    }
    // One connection per worker thread at most would do; far fewer than one per request.
    let used = keep_accepted.load(Ordering::SeqCst);
    assert!(
        used <= 8,
        "50 sequential requests opened {used} backend connections"
    );
    for i in 0..10 {
        let resp = rd.get("/closing/x").await;
        assert_eq!(
            (resp.status, resp.text()),
            (200, "ok".to_owned()),
            "request {i} after the backend closed the previous connection"
        );
        // Long enough for the backend to have closed the connection routerd keeps idle.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Each request needs a new connection; one whose close routerd saw only when it tried to
    // send on it was retried on another.
    let used = closing_accepted.load(Ordering::SeqCst);
    assert!(
        (10..=20).contains(&used),
        "{used} connections for 10 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_past_timeout_is_504() {
    let slow = Backend::builder("slow")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let lagging = Backend::builder("lagging")
        .delay(Duration::from_millis(500))
        .start()
        .await;
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("slow", &slow.url())
            .m(prefix("/slow"))
            .set("timeout_ms", json!(300)),
        Route::proxy("patient", &lagging.url())
            .m(prefix("/patient"))
            .set("timeout_ms", json!(5000)),
        Route::proxy("untimed", &lagging.url()).m(prefix("/untimed")),
    ]))
    .await;

    let started = Instant::now();
    let resp = rd.get("/slow").await;
    let elapsed = started.elapsed();
    assert_error_json(&resp, 504, "slow");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(2500),
        "504 after {elapsed:?}, expected about 300 ms"
    );

    let resp = rd.get("/patient").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.backend().as_deref(), Some("lagging"));
    let resp = rd.get("/untimed").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
}
