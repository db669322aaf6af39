//! Black-box tests of traffic management through a real `routerd` process and real echo
//! backends on 127.0.0.1: weighted shares, hashing that keeps a key on its endpoint, retries
//! that hide a dead endpoint from idempotent requests (and never repeat a POST), outlier
//! ejection and its return, routerd's own 503 when no endpoint is left, rate limits and
//! mirroring. The `cors` and `compress` filters are in `filters.rs`.
#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use harness::*;
use serde_json::{Value, json};

/// A route on `prefix` over `targets` (url, weight), with `extra` fields.
fn balanced(name: &str, prefix_path: &str, targets: &[(String, u32)], extra: Value) -> Route {
    let targets: Vec<Value> = targets
        .iter()
        .map(|(url, weight)| json!({"url": url, "weight": weight}))
        .collect();
    let mut route =
        Route(json!({"name": name, "targets": targets, "matchers": []})).m(prefix(prefix_path));
    if let Some(fields) = extra.as_object() {
        for (k, v) in fields {
            route = route.set(k, v.clone());
        }
    }
    route
}

/// Which backend answered each of `n` GETs of `path` with `headers`.
async fn answered_by(rd: &Routerd, path: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = rd.request("GET", path, headers, Bytes::new()).await;
        assert_eq!(r.status, 200, "{}", r.describe());
        out.push(r.backend().unwrap_or_default());
    }
    out
}

/// Three endpoints weighted 1, 2 and 3 get shares of 3,000 requests within 5% of 1/6, 2/6 and
/// 3/6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_receive_shares_matching_their_weights() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let targets = [(a.url(), 1), (b.url(), 2), (c.url(), 3)];
    let rd = Routerd::start(&config(vec![balanced("w", "/w", &targets, json!({}))])).await;
    let by = answered_by(&rd, "/w", &[], 3000).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for name in by {
        *counts.entry(name).or_default() += 1;
    }
    for (name, weight) in [("a", 1.0), ("b", 2.0), ("c", 3.0)] {
        let got = counts.get(name).copied().unwrap_or(0) as f64;
        let want = 3000.0 * weight / 6.0;
        assert!(
            (got - want).abs() <= want * 0.05,
            "{name}: {got} of 3000, want {want}: {counts:?}"
        );
    }
}

/// Hashing on a header keeps each key on one endpoint; when an endpoint leaves the route, only
/// the keys it had move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hash_keeps_a_key_and_moves_only_the_keys_of_an_endpoint_that_left() {
    let (a, b, c) = (
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    );
    let hash = json!({"balance": {"policy": "hash", "hash_on": "header:x-user"}});
    let three = [(a.url(), 1), (b.url(), 1), (c.url(), 1)];
    let rd = Routerd::start(&config(vec![balanced("h", "/h", &three, hash.clone())])).await;
    let users: Vec<String> = (0..120).map(|i| format!("user-{i}")).collect();
    let mut before = HashMap::new();
    for u in &users {
        let twice = answered_by(&rd, "/h", &[("x-user", u)], 2).await;
        assert_eq!(twice[0], twice[1], "{u} stays on its endpoint");
        before.insert(u.clone(), twice[0].clone());
    }
    let on_c = before.values().filter(|b| *b == "c").count();
    assert!(on_c > 10, "c has a share of the keys: {on_c}");
    // The match explanation names the endpoint a key goes to.
    let url_of = |name: &str| match name {
        "a" => a.url(),
        "b" => b.url(),
        _ => c.url(),
    };
    for u in ["user-0", "user-1", "user-2"] {
        let probe = json!({"path": "/h", "headers": {"x-user": u}});
        let explained = rd
            .admin_json("POST", "/api/v1/match", Some(&probe))
            .await
            .json();
        assert_eq!(explained["backends"]["balance"], "hash", "{explained}");
        assert_eq!(
            explained["backends"]["chosen"].as_str(),
            Some(url_of(&before[u]).as_str()),
            "{explained}"
        );
    }

    let two = [(a.url(), 1), (b.url(), 1)];
    rd.write_config(&config(vec![balanced("h", "/h", &two, hash)]));
    let reloaded = wait_until(
        async || {
            let doc = rd.admin_get("/api/v1/routes/h").await.json();
            doc["targets"].as_array().is_some_and(|t| t.len() == 2)
                || doc["rule"]["targets"]
                    .as_array()
                    .is_some_and(|t| t.len() == 2)
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(reloaded, "the new route set is served");
    for u in &users {
        let now = answered_by(&rd, "/h", &[("x-user", u)], 1).await.remove(0);
        if before[u] == "c" {
            assert_ne!(now, "c", "{u} left c");
        } else {
            assert_eq!(now, before[u], "{u} did not move: its endpoint stayed");
        }
    }
}

/// A listener on 127.0.0.1 that accepts connections and closes them at once: up to a TCP
/// health check, but every request sent to it fails before an answer (a crashed worker
/// behind a live socket).
async fn broken_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    format!("http://{addr}")
}

/// One endpoint of three drops every request. With retries on, no GET fails: each request it
/// got was retried once, on another endpoint. A POST that lands on it is not retried (the
/// client sees routerd's 502).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_endpoint_costs_retries_not_failures_and_a_post_is_not_retried() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let broken = broken_endpoint().await;
    let targets = [(a.url(), 1), (broken.clone(), 1), (b.url(), 1)];
    let retries = json!({"retries": {"attempts": 2, "on": ["connect", "reset"]}});
    let rd = Routerd::start(&config(vec![balanced("r", "/r", &targets, retries)])).await;
    let by = answered_by(&rd, "/r", &[], 60).await;
    assert!(by.iter().all(|b| b == "a" || b == "b"), "{by:?}");
    let metrics = rd.admin_get("/metrics").await.text();
    let retried = series_value(
        &metrics,
        "routerd_retries_total{route=\"r\",reason=\"reset\"}",
    );
    let sent_to_broken = format!("routerd_endpoint_requests_total{{endpoint=\"{broken}\"}}");
    let broken_got = series_value(&metrics, &sent_to_broken);
    assert!(broken_got.is_some_and(|n| n >= 10.0), "{metrics}");
    assert_eq!(
        retried, broken_got,
        "one retry per request the broken endpoint got"
    );

    let mut refused = 0;
    for _ in 0..6 {
        let r = rd
            .request("POST", "/r", &[], Bytes::from_static(b"x"))
            .await;
        match r.status {
            200 => {}
            502 => refused += 1,
            other => panic!("POST answered {other}: {}", r.describe()),
        }
    }
    assert!(
        refused >= 1,
        "a POST the broken endpoint got was not retried"
    );
    let metrics = rd.admin_get("/metrics").await.text();
    let after = series_value(
        &metrics,
        "routerd_retries_total{route=\"r\",reason=\"reset\"}",
    );
    assert_eq!(after, retried, "no POST was retried");
}

/// A health check that finds the dead endpoint down takes it out of the rotation; when every
/// endpoint is down, routerd answers 503 itself, says why, and counts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_endpoints_are_skipped_and_none_left_is_routerds_503() {
    let a = Backend::start("a").await;
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let also_dead = format!("http://127.0.0.1:{}", unused_port());
    let rd = Routerd::start(&config(vec![
        balanced(
            "some",
            "/some",
            &[(a.url(), 1), (dead.clone(), 1)],
            json!({}),
        ),
        balanced("none", "/none", &[(dead, 1), (also_dead, 1)], json!({})),
    ]))
    .await;
    let checked = wait_until(
        async || {
            let doc = rd.admin_get("/api/v1/health").await.json();
            doc["routes"].as_array().is_some_and(|rs| {
                rs.iter()
                    .any(|r| r["route"] == "none" && r["status"] == "down")
            })
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(checked, "the health check ran");
    let by = answered_by(&rd, "/some", &[], 20).await;
    assert!(
        by.iter().all(|b| b == "a"),
        "the down endpoint is skipped: {by:?}"
    );
    let none = rd.get("/none").await;
    assert_eq!(none.status, 503, "{}", none.describe());
    assert_eq!(none.header("retry-after").as_deref(), Some("1"));
    let why = none.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("2 down by the health check"), "{why}");
    let metrics = rd.admin_get("/metrics").await.text();
    assert_eq!(
        series_value(
            &metrics,
            "routerd_no_endpoint_requests_total{route=\"none\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    let health = rd.admin_get("/api/v1/health").await.json();
    let some = health["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["route"] == "some").cloned())
        .unwrap();
    assert_eq!(some["status"], "up", "{some}");
    assert_eq!(
        some["endpoints"].as_array().map(Vec::len),
        Some(2),
        "{some}"
    );
}

/// An endpoint answering 500 is ejected after 3 failures in a row: the rest go to the healthy
/// one; after its ejection (300 ms) it is back and gets requests again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_ejected_and_returns() {
    let good = Backend::start("good").await;
    let bad = Backend::builder("bad").status(500).start().await;
    let outlier = json!({"outlier": {"consecutive_failures": 3, "base_ejection_ms": 300}});
    let rd = Routerd::start(&config(vec![balanced(
        "o",
        "/o",
        &[(good.url(), 1), (bad.url(), 1)],
        outlier,
    )]))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(rd.get("/o").await.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 500).count(),
        3,
        "bad answered three times, then was ejected: {statuses:?}"
    );
    let metrics = rd.admin_get("/metrics").await.text();
    let bad_key = format!("routerd_endpoint_ejected{{endpoint=\"{}\"}}", bad.url());
    assert_eq!(series_value(&metrics, &bad_key), Some(1.0), "{metrics}");
    for _ in 0..10 {
        assert_eq!(
            rd.get("/o").await.status,
            200,
            "only the good endpoint while bad is out"
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(rd.get("/o").await.status);
        }
        v
    };
    assert!(
        after.contains(&500),
        "bad is back after its ejection: {after:?}"
    );
    let metrics = rd.admin_get("/metrics").await.text();
    let ejections = format!(
        "routerd_endpoint_ejections_total{{endpoint=\"{}\"}}",
        bad.url()
    );
    assert!(
        series_value(&metrics, &ejections).is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
}

/// Bad settings are refused with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backend_settings_name_their_field() {
    let rd = Routerd::start(&config(vec![Route::respond("r").m(path("/r"))])).await;
    let route = json!({
        "name": "bad", "matchers": [{"condition": "path", "pattern": "/bad"}],
        "targets": [{"url": "http://127.0.0.1:1", "weight": 0}],
        "balance": {"policy": "hash"},
    });
    let r = rd.admin_json("POST", "/api/v1/routes", Some(&route)).await;
    assert_eq!(r.status, 400, "{}", r.describe());
    let text = r.text();
    assert!(text.contains("targets[0].weight"), "{text}");
    assert!(text.contains("balance.hash_on"), "{text}");
}

/// A rate limit of 5 per second with a burst of 5, keyed on a header: a burst of 20 gets 5
/// through and 15 × 429 with `Retry-After` and `RateLimit-*`; another key has its own bucket;
/// over two more seconds the rate holds. A key a filter sets is the key counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_answers_429_at_the_configured_rate() {
    let a = Backend::start("a").await;
    let limit =
        json!({"rate_limit": {"requests_per_second": 5, "burst": 5, "key": "header:x-client"}});
    let shared =
        json!({"rate_limit": {"requests_per_second": 1, "burst": 3, "key": "header:x-tenant"}});
    let rd = Routerd::start(&config(vec![
        balanced("limited", "/l", &[(a.url(), 1)], limit),
        balanced("tenant", "/t", &[(a.url(), 1)], shared)
            .filter("set_request_header", &["x-tenant", "acme"]),
    ]))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let r = rd
            .request("GET", "/l", &[("x-client", "c1")], Bytes::new())
            .await;
        if r.status == 429 {
            assert_eq!(r.header("ratelimit-limit").as_deref(), Some("5"));
            assert_eq!(r.header("ratelimit-remaining").as_deref(), Some("0"));
            assert_eq!(r.header("retry-after").as_deref(), Some("1"));
            assert!(r.header("ratelimit-reset").is_some());
            assert_eq!(r.json()["route"], "limited");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        15,
        "{statuses:?}"
    );
    let other = rd
        .request("GET", "/l", &[("x-client", "c2")], Bytes::new())
        .await;
    assert_eq!(other.status, 200, "another key");

    // Two seconds at one request per 20 ms: the bucket refills 5 a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let mut allowed = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let r = rd
            .request("GET", "/l", &[("x-client", "c1")], Bytes::new())
            .await;
        allowed += usize::from(r.status == 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A full bucket (5) plus two seconds of refill (10), give or take a token at the edges.
    assert!((13..=17).contains(&allowed), "{allowed} allowed in 2 s");

    // Every client counts against the key the filter set.
    let mut tenant = Vec::new();
    for c in ["x", "y", "z", "w"] {
        tenant.push(
            rd.request("GET", "/t", &[("x-client", c)], Bytes::new())
                .await
                .status,
        );
    }
    assert_eq!(tenant, [200, 200, 200, 429]);
    let metrics = rd.admin_get("/metrics").await.text();
    let limited = series_value(
        &metrics,
        "routerd_rate_limited_requests_total{route=\"limited\"}",
    );
    assert!(limited.is_some_and(|n| n >= 15.0), "{metrics}");
}

/// A mirror of 50%: it receives every other request while the client sees only the primary's
/// answers; a mirror that takes seconds to answer delays no client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_receives_its_share_and_the_client_sees_only_the_primary() {
    let primary = Backend::start("primary").await;
    let mirror = Backend::start("mirror").await;
    let slow_mirror = Backend::builder("slow")
        .delay(Duration::from_secs(3))
        .start()
        .await;
    let half = json!({"mirror": {"url": mirror.url(), "percent": 50}});
    let all_slow = json!({"mirror": {"url": slow_mirror.url()}});
    let rd = Routerd::start(&config(vec![
        balanced("m", "/m", &[(primary.url(), 1)], half),
        balanced("s", "/s", &[(primary.url(), 1)], all_slow),
    ]))
    .await;
    for i in 0..40 {
        let body = Bytes::from(format!("payload {i}"));
        let r = rd.request("POST", "/m", &[], body).await;
        assert_eq!(r.backend().as_deref(), Some("primary"), "{}", r.describe());
    }
    let copied = wait_until(async || mirror.requests() == 20, Duration::from_secs(10)).await;
    assert!(copied, "the mirror got {} of 40", mirror.requests());
    assert_eq!(primary.requests(), 40);
    // Every second request is copied (the 2nd, 4th, ...), body and all.
    let copied_bytes: usize = (1..40)
        .step_by(2)
        .map(|i| format!("payload {i}").len())
        .sum();
    assert_eq!(mirror.bytes_received(), copied_bytes, "bodies copied");

    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(rd.get("/s").await.backend().as_deref(), Some("primary"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "five requests took {:?} beside a 3 s mirror",
        started.elapsed()
    );
    let metrics = rd.admin_get("/metrics").await.text();
    let sent = series_value(
        &metrics,
        "routerd_mirror_requests_total{route=\"m\",outcome=\"sent\"}",
    );
    assert_eq!(sent, Some(20.0), "{metrics}");
}
