//! Black-box tests of the plugin store (`router:plugin/store`): a real `routerd` process with
//! four workers, an echo backend on 127.0.0.1, and the `rate-limit` example plugin built from
//! `plugins/`. The limit holds under concurrent clients however many instances count it, the
//! store's bound is enforced and reported, a hot replace keeps the store and an unload clears it.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use harness::*;
use serde_json::json;

/// Waits, when needed, until the current hour-long window has at least `margin` left, so a
/// test that counts within one window never straddles two.
async fn away_from_a_window_edge(margin: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let left = Duration::from_secs(3600 - now.as_secs() % 3600);
    if left < margin {
        tokio::time::sleep(left + Duration::from_secs(1)).await;
    }
}

/// `clients` tasks each send `each` requests with `x-client: key` to `path`; the statuses.
async fn burst(
    rd: &Routerd,
    path: &'static str,
    key: &str,
    clients: usize,
    each: usize,
) -> Vec<Resp> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (addr, key) = (rd.proxy, key.to_owned());
        tasks.spawn(async move {
            let mut got = Vec::new();
            for _ in 0..each {
                let headers = [("x-client", key.as_str())];
                got.push(
                    request_to(addr, "GET", path, &headers, Bytes::new())
                        .await
                        .unwrap(),
                );
            }
            got
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.unwrap());
    }
    all
}

/// A limit of 200 an hour per `x-client`, hit by 8 concurrent clients with 400 requests: as many
/// get through as the limit allows (within 5%; the store's increments are atomic, so exactly),
/// the rest get 429 with `Retry-After` and `RateLimit-*` headers. Once with warm instances
/// reused across four workers, once with a fresh instance for every request: each request's
/// count lands in the store every instance shares.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_holds_across_instances_under_concurrent_clients() {
    const LIMIT: usize = 200;
    const CLIENTS: usize = 8;
    const EACH: usize = 50;
    let backend = Backend::start("echo").await;
    let args = ["200", "1h", "header:x-client"];
    let cfg = config(vec![
        Route::proxy("reused", &backend.url())
            .m(path("/reused"))
            .plugin_filter("rate-limit", &args),
        Route::proxy("fresh", &backend.url())
            .m(path("/fresh"))
            .plugin_filter("rate-limit-fresh", &args),
    ]);
    let rd = launch(&cfg, &[])
        .plugin("rate-limit")
        .plugin_as("rate-limit-fresh", "rate-limit")
        .plugin_settings("rate-limit", json!({"deadline_ms": 200}))
        .plugin_settings(
            "rate-limit-fresh",
            json!({"deadline_ms": 200, "mode": "fresh"}),
        )
        .arg("--workers")
        .arg("4")
        .start()
        .await;
    away_from_a_window_edge(Duration::from_secs(60)).await;
    for (path, plugin) in [("/reused", "rate-limit"), ("/fresh", "rate-limit-fresh")] {
        let answers = burst(&rd, path, "c1", CLIENTS, EACH).await;
        let passed = answers.iter().filter(|r| r.status == 200).count();
        let limited: Vec<_> = answers.iter().filter(|r| r.status == 429).collect();
        assert_eq!(
            passed + limited.len(),
            CLIENTS * EACH,
            "{path}: only 200s and 429s"
        );
        println!(
            "{path}: {passed} of {} passed, limit {LIMIT}",
            answers.len()
        );
        let off = passed.abs_diff(LIMIT) as f64 / LIMIT as f64;
        assert!(off <= 0.05, "{path}: {passed} passed, limit {LIMIT}");
        for r in &limited {
            assert_eq!(
                r.header("ratelimit-limit").as_deref(),
                Some("200"),
                "{path}"
            );
            assert_eq!(
                r.header("ratelimit-remaining").as_deref(),
                Some("0"),
                "{path}"
            );
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=3600).contains(&retry), "{path}: retry-after {retry}");
        }
        let other = rd
            .request("GET", path, &[("x-client", "c2")], Bytes::new())
            .await;
        assert_eq!(
            other.status, 200,
            "{path}: another client has its own count"
        );
        let metrics = rd.admin_get("/metrics").await.text();
        let increments = format!(
            "routerd_plugin_store_operations_total{{plugin=\"{plugin}\",op=\"increment\"}}"
        );
        assert_eq!(
            series_value(&metrics, &increments),
            Some((CLIENTS * EACH + 1) as f64),
            "{path}: one increment per request\n{metrics}"
        );
    }
}

/// A store bounded to 3 keys: a fourth client's count is refused, the plugin sees why (it logs
/// the store's message and lets the request through, as documented), and `/metrics` reports
/// the refusals and the keys held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_bound_is_enforced_and_reported() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("limited", &backend.url())
            .m(path("/l"))
            .plugin_filter("rate-limit", &["5", "1h", "header:x-client"]),
    ]);
    let rd = launch(&cfg, &["rate-limit"])
        .plugin_settings(
            "rate-limit",
            json!({"deadline_ms": 200, "store": {"max_keys": 3}}),
        )
        .start()
        .await;
    away_from_a_window_edge(Duration::from_secs(30)).await;
    for client in ["a", "b", "c", "d", "e"] {
        let r = rd
            .request("GET", "/l", &[("x-client", client)], Bytes::new())
            .await;
        assert_eq!(r.status, 200, "{client}: {}", r.describe());
    }
    let metrics = rd.admin_get("/metrics").await.text();
    let of = |name: &str| series_value(&metrics, &format!("{name}{{plugin=\"rate-limit\"}}"));
    assert_eq!(of("routerd_plugin_store_keys"), Some(3.0), "{metrics}");
    assert_eq!(
        of("routerd_plugin_store_refused_total"),
        Some(2.0),
        "{metrics}"
    );
    assert!(
        of("routerd_plugin_store_bytes").is_some_and(|b| b > 0.0),
        "{metrics}"
    );
    let seen = rd
        .wait_for_log(0, Duration::from_secs(5), |l| {
            l.contains("rate-limit: not counted") && l.contains("most keys (3")
        })
        .await;
    assert!(
        seen.is_some(),
        "the plugin saw the store's refusal:\n{}",
        rd.logs().join("\n")
    );
}

/// The plugin's bytes with a custom section appended: a different component (another sha256)
/// that behaves the same, as a rebuilt version would.
fn another_version(bytes: &[u8]) -> Vec<u8> {
    let name = b"routerd-test-version";
    let payload = b"2";
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(payload);
    out
}

/// Three requests use up a limit of 3; a new version of the plugin uploaded under the same
/// name keeps the count (the fourth is refused); unloading the plugin and loading it again
/// starts from an empty store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_replace_keeps_the_store_and_an_unload_clears_it() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("limited", &backend.url())
            .m(path("/l"))
            .plugin_filter("rate-limit", &["3", "1h", "header:x-client"]),
    ]);
    let rd = launch(&cfg, &["rate-limit"])
        .plugin_settings("rate-limit", json!({"deadline_ms": 200}))
        .start()
        .await;
    away_from_a_window_edge(Duration::from_secs(60)).await;
    let status = async || {
        rd.request("GET", "/l", &[("x-client", "k")], Bytes::new())
            .await
            .status
    };
    for _ in 0..3 {
        assert_eq!(status().await, 200);
    }
    let original = std::fs::read(dist_plugin("rate-limit")).unwrap();
    let before = rd.admin_get("/api/v1/plugins/rate-limit").await.json()["sha256"].clone();
    let upload = |bytes: Vec<u8>| {
        rd.admin_request(
            "POST",
            "/api/v1/plugins?name=rate-limit",
            &[("content-type", "application/wasm")],
            bytes,
        )
    };
    let replaced = upload(another_version(&original)).await;
    assert!(replaced.status < 300, "{}", replaced.describe());
    let after = rd.admin_get("/api/v1/plugins/rate-limit").await.json()["sha256"].clone();
    assert_ne!(before, after, "a new version is serving");
    assert_eq!(status().await, 429, "the replaced plugin's count was kept");

    let unloaded = rd
        .admin_json("DELETE", "/api/v1/plugins/rate-limit?force=true", None)
        .await;
    assert!(unloaded.status < 300, "{}", unloaded.describe());
    let reloaded = upload(original).await;
    assert!(reloaded.status < 300, "{}", reloaded.describe());
    let back = wait_until(async || status().await == 200, Duration::from_secs(10)).await;
    assert!(
        back,
        "after an unload the plugin starts from an empty store"
    );
}
