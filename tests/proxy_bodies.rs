//! Black-box tests of bodies through the proxy: a real `routerd` process and real backends on
//! 127.0.0.1. Body matchers route and forward the body intact (buffered or chunked, within and
//! over `max_body_bytes`); a body the winner does not need streams both ways unbuffered.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::*;
use http_body_util::BodyExt;
use serde_json::json;

/// Check that `resp` came from `backend` with exactly `body`.
fn check_forwarded(label: &str, resp: &Resp, backend: &str, body: &[u8]) -> Option<String> {
    let Some(echo) = resp.try_json() else {
        return Some(format!("{label}: not an echo: {}", resp.describe()));
    };
    if echo["backend"] != backend {
        return Some(format!(
            "{label}: went to {}, expected {backend}",
            echo["backend"]
        ));
    }
    if echo["body_len"] != json!(body.len()) || echo["body_sha256"] != sha256_hex(body) {
        return Some(format!(
            "{label}: body not forwarded intact: backend got {} bytes, sent {}",
            echo["body_len"],
            body.len()
        ));
    }
    None
}

/// Routes on `/b` by body, each to its own backend; `plain` catches the rest.
async fn body_routing_setup(max_body_bytes: Option<u64>) -> (Routerd, Vec<Backend>) {
    let mut backends = Vec::new();
    for name in ["gold", "age", "admin", "sku", "plain"] {
        backends.push(Backend::start(name).await);
    }
    let url = |i: usize| backends[i].url();
    let mut cfg = config(vec![
        Route::proxy("gold", &url(0)).m(prefix("/b")).m(matcher(
            "body_field",
            Some("user.tier"),
            "gold",
            false,
        )),
        Route::proxy("age", &url(1)).m(prefix("/b")).m(matcher(
            "body_field",
            Some("user.age"),
            "42",
            false,
        )),
        Route::proxy("admin", &url(2)).m(prefix("/b")).m(matcher(
            "body_field",
            Some("user.admin"),
            "true",
            false,
        )),
        Route::proxy("sku", &url(3)).m(prefix("/b")).m(matcher(
            "body_regex",
            None,
            r#""sku"\s*:\s*"A-[0-9]+""#,
            true,
        )),
        Route::proxy("plain", &url(4)).m(prefix("/b")),
    ]);
    if let Some(max) = max_body_bytes {
        cfg["max_body_bytes"] = json!(max);
    }
    (Routerd::start_in_process(&cfg).await, backends)
}

/// A JSON body `{"user":{"tier":"gold"},"pad":"xxx…"}` of exactly `len` bytes.
fn padded_gold(len: usize) -> Vec<u8> {
    let head = br#"{"user":{"tier":"gold"},"pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_matchers_route_and_forward_body_intact() {
    let (rd, _backends) = body_routing_setup(None).await;
    let big_random = pseudo_random_bytes(1536 * 1024, 3);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("gold", br#"{"user":{"tier":"gold"}}"#.to_vec(), "gold"),
        (
            "gold, other fields",
            br#"{"a":[1,2],"user":{"name":"x","tier":"gold"}}"#.to_vec(),
            "gold",
        ),
        ("silver", br#"{"user":{"tier":"silver"}}"#.to_vec(), "plain"),
        ("number", br#"{"user":{"age":42}}"#.to_vec(), "age"),
        ("other number", br#"{"user":{"age":43}}"#.to_vec(), "plain"),
        ("bool", br#"{"user":{"admin":true}}"#.to_vec(), "admin"),
        ("false", br#"{"user":{"admin":false}}"#.to_vec(), "plain"),
        ("regex", br#"{"order":{"sku": "A-123"}}"#.to_vec(), "sku"),
        (
            "regex miss",
            br#"{"order":{"sku":"B-1"}}"#.to_vec(),
            "plain",
        ),
        ("not json", b"user.tier=gold".to_vec(), "plain"),
        ("empty", Vec::new(), "plain"),
        (
            "just under 1 MiB matches",
            padded_gold(1024 * 1024 - 100),
            "gold",
        ),
        (
            "over 1 MiB doesn't match",
            padded_gold(1024 * 1024 + 4096),
            "plain",
        ),
        ("1.5 MiB binary", big_random, "plain"),
    ];
    let mut failures = Vec::new();
    for (label, body, want) in cases {
        let resp = rd
            .request(
                "POST",
                "/b/x",
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await;
        failures.extend(check_forwarded(label, &resp, want, &body));
    }
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_bytes_falls_to_other_route_intact() {
    let (rd, _backends) = body_routing_setup(Some(1024)).await;
    let mut failures = Vec::new();
    let small = padded_gold(500);
    let resp = rd.request("POST", "/b", &[], small.clone()).await;
    failures.extend(check_forwarded("500 bytes", &resp, "gold", &small));
    let large = padded_gold(2000);
    let resp = rd.request("POST", "/b", &[], large.clone()).await;
    failures.extend(check_forwarded("2000 bytes", &resp, "plain", &large));
    let huge = padded_gold(3 * 1024 * 1024);
    let resp = rd.request("POST", "/b", &[], huge.clone()).await;
    failures.extend(check_forwarded("3 MiB", &resp, "plain", &huge));
    assert_no_failures(&failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_to_body_matcher_route() {
    let (rd, _backends) = body_routing_setup(None).await;
    let parts: [&[u8]; 3] = [br#"{"user":"#, br#"{"tier":"#, br#""gold"}}"#];
    let whole: Vec<u8> = parts.concat();
    let (tx, body) = body_channel();
    let req = build_request(rd.proxy, "POST", "/b/chunked", &[], body);
    let addr = rd.proxy;
    let pending = tokio::spawn(async move { collect(send_h1(addr, req).await?).await });
    for part in parts {
        tokio::time::timeout(Duration::from_secs(5), tx.send(Bytes::from_static(part)))
            .await
            .expect("send timed out")
            .expect("body channel closed");
    }
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("response timed out")
        .expect("task")
        .expect("request");
    let failure = check_forwarded("chunked", &resp, "gold", &whole);
    assert!(failure.is_none(), "{failure:?}");
}

/// POST a body in two chunks to `/up` and check the first reaches backend `b` before the
/// second is sent.
async fn check_request_streams(rd: &Routerd, b: &Backend) {
    let (tx, body) = body_channel();
    let req = build_request(rd.proxy, "POST", "/up", &[], body);
    let addr = rd.proxy;
    let pending = tokio::spawn(async move { collect(send_h1(addr, req).await?).await });

    tx.send(Bytes::from_static(b"first-chunk;"))
        .await
        .expect("send first chunk");
    let arrived = wait_until(async || b.bytes_received() >= 12, Duration::from_secs(5)).await;
    assert!(
        arrived,
        "the first chunk did not reach the backend before the body ended (request body buffered?); \
         backend got {} bytes",
        b.bytes_received()
    );
    tx.send(Bytes::from_static(b"second"))
        .await
        .expect("send second chunk");
    drop(tx);
    let resp = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("response timed out")
        .expect("task")
        .expect("request");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.backend().as_deref(), Some("b"));
    assert_eq!(resp.json()["body"], "first-chunk;second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_streams_to_backend() {
    let b = Backend::start("b").await;
    let rd =
        Routerd::start_in_process(&config(vec![Route::proxy("up", &b.url()).m(prefix("/up"))]))
            .await;
    check_request_streams(&rd, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_not_buffered_when_the_winner_needs_no_body() {
    // A body-matcher route exists, but only on lower-precedence paths: the body must not be
    // read for `/up`.
    let b = Backend::start("b").await;
    let other = Backend::start("other").await;
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("up", &b.url()).m(prefix("/up")),
        Route::proxy("by-body", &other.url())
            .m(prefix("/"))
            .m(matcher("body_regex", None, "first", true)),
        Route::proxy("by-body-re", &other.url())
            .m(path_re("^/up"))
            .m(matcher("body_field", Some("a"), "1", false)),
    ]))
    .await;
    check_request_streams(&rd, &b).await;
    assert_eq!(other.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_streams_to_client() {
    let b = Backend::builder("gated")
        .gated("first-part|", "rest-of-it")
        .start()
        .await;
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("down", &b.url()).m(prefix("/down")),
    ]))
    .await;
    let req = build_request(rd.proxy, "GET", "/down", &[], full(""));
    let resp = send_h1(rd.proxy, req).await.expect("response head");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < b"first-part|".len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "first chunk not received within 5 s while the backend holds the rest \
                     (response buffered?); got {:?}",
                    String::from_utf8_lossy(&got)
                )
            });
        let frame = frame.expect("body ended early").expect("body error");
        if let Ok(data) = frame.into_data() {
            got.extend_from_slice(&data);
        }
    }
    assert_eq!(got, b"first-part|");
    b.open_gate();
    let rest = tokio::time::timeout(Duration::from_secs(15), body.collect())
        .await
        .expect("rest timed out")
        .expect("rest of body")
        .to_bytes();
    assert_eq!(&rest[..], b"rest-of-it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_body_streams_intact() {
    let total = 8 * 1024 * 1024;
    let b = Backend::builder("big")
        .large_body(total, 64 * 1024)
        .start()
        .await;
    let rd = Routerd::start_in_process(&config(vec![Route::proxy("big", &b.url()).m(prefix("/"))]))
        .await;
    let resp = rd.get("/big").await;
    assert_eq!(resp.status, 200, "status {}", resp.status);
    assert_eq!(resp.body.len(), total);
    assert_eq!(
        sha256_hex(&resp.body),
        sha256_hex(&pseudo_random_bytes(total, 7)),
        "body bytes differ"
    );
}
