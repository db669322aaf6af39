//! Black-box tests of what the admin listener reports: Prometheus metrics, active health
//! checks, and route changes under steady load failing no request. Real `routerd` processes
//! and echo backends on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use admin_common::*;
use harness::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// One sample of Prometheus text: name, labels, value.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of Prometheus (or OpenMetrics) text; comments are skipped.
fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, rest) = match line.find('{') {
            Some(_) => {
                let close = line.rfind('}').expect("closing brace");
                (&line[..close + 1], &line[close + 1..])
            }
            None => line.split_at(line.find(' ').expect("sample value")),
        };
        let value: f64 = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let (name, labels) = match series.find('{') {
            Some(open) => {
                let mut labels = BTreeMap::new();
                let inner = &series[open + 1..series.len() - 1];
                let mut rest = inner;
                while let Some(eq) = rest.find("=\"") {
                    let key = rest[..eq].trim_start_matches(',').trim().to_owned();
                    let after = &rest[eq + 2..];
                    let end = after.find('"').expect("closing quote");
                    labels.insert(key, after[..end].to_owned());
                    rest = &after[end + 1..];
                }
                (series[..open].to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// The sum of the samples named `name` whose labels include `labels` (`None` if there is none).
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Scrapes `/metrics`, checking it is Prometheus text.
async fn scrape(rd: &Routerd) -> Vec<Sample> {
    let resp = rd.admin_get("/metrics").await;
    assert_eq!(resp.status, 200, "GET /metrics: {}", resp.describe());
    let content_type = resp.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") || content_type.contains("openmetrics-text"),
        "metrics content type {content_type:?}"
    );
    parse_metrics(&resp.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_plugin_calls_and_table_changes() {
    let rd = Routerd::launch(&config(vec![
        Route::respond("plain").m(path("/m")),
        Route(json!({
            "name": "teapot",
            "matchers": [{"condition": "path", "pattern": "/teapot"}],
            "filters": [{"name": "respond", "args": ["418", "short and stout"]}],
        })),
        Route::respond("gated")
            .m(path("/p"))
            .m(plugin_pred("header-eq", &["x-p", "1"])),
        Route::respond("trapping")
            .m(path("/trap"))
            .m(plugin_pred("bad-panic", &["panic"])),
    ]))
    .warm_cache()
    .plugin("header-eq")
    .plugin("bad-panic")
    .start_in_process()
    .await;
    let before = scrape(&rd).await;
    let requests = |s: &[Sample], route: &str, status: &str| {
        metric(
            s,
            "routerd_requests_total",
            &[("route", route), ("status", status)],
        )
        .unwrap_or(0.0)
    };
    let plugin = |s: &[Sample], name: &str, plugin: &str| {
        metric(s, name, &[("plugin", plugin)]).unwrap_or(0.0)
    };
    let table_version = |s: &[Sample]| {
        metric(s, "routerd_table_version", &[]).expect("routerd_table_version in /metrics")
    };

    for _ in 0..5 {
        assert_eq!(rd.get("/m").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(rd.get("/teapot").await.status, 418);
    }
    for _ in 0..3 {
        let resp = rd.request("GET", "/p", &[("x-p", "1")], "").await;
        assert_eq!(resp.text(), "gated");
    }
    for _ in 0..2 {
        assert_eq!(
            rd.get("/trap").await.status,
            404,
            "a trapping predicate matched"
        );
    }

    let mut after = Vec::new();
    let counted = wait_until(
        async || {
            after = scrape(&rd).await;
            requests(&after, "plain", "2xx") >= requests(&before, "plain", "2xx") + 5.0
        },
        Duration::from_secs(5),
    )
    .await;
    assert!(
        counted,
        "routerd_requests_total{{route=\"plain\",status=\"2xx\"}} went from {} to {}",
        requests(&before, "plain", "2xx"),
        requests(&after, "plain", "2xx")
    );
    assert_eq!(
        requests(&after, "plain", "2xx") - requests(&before, "plain", "2xx"),
        5.0
    );
    assert_eq!(
        requests(&after, "teapot", "4xx") - requests(&before, "teapot", "4xx"),
        2.0
    );
    assert_eq!(
        requests(&after, "gated", "2xx") - requests(&before, "gated", "2xx"),
        3.0
    );
    let count = metric(
        &after,
        "routerd_request_duration_seconds_count",
        &[("route", "plain")],
    )
    .expect("routerd_request_duration_seconds_count{route=\"plain\"}");
    assert!(count >= 5.0, "latency histogram count {count}");
    assert!(
        after
            .iter()
            .any(|s| s.name == "routerd_request_duration_seconds_bucket"
                && s.labels.get("route").map(String::as_str) == Some("plain")
                && s.labels.contains_key("le")),
        "no latency buckets for route plain"
    );

    let calls = "routerd_plugin_calls_total";
    let traps = "routerd_plugin_traps_total";
    assert!(
        plugin(&after, calls, "header-eq") >= plugin(&before, calls, "header-eq") + 3.0,
        "header-eq calls went from {} to {}",
        plugin(&before, calls, "header-eq"),
        plugin(&after, calls, "header-eq")
    );
    assert!(
        plugin(&after, traps, "bad-panic") >= plugin(&before, traps, "bad-panic") + 2.0,
        "bad-panic traps went from {} to {}",
        plugin(&before, traps, "bad-panic"),
        plugin(&after, traps, "bad-panic")
    );
    assert_eq!(plugin(&after, traps, "header-eq"), 0.0);
    assert_eq!(
        metric(
            &after,
            "routerd_plugin_deadline_hits_total",
            &[("plugin", "header-eq")]
        ),
        Some(0.0),
        "routerd_plugin_deadline_hits_total{{plugin=\"header-eq\"}}"
    );

    // A change moves the table version.
    let version_before = table_version(&after);
    create(&rd, &answer("new-route", "/new", "new")).await;
    let version_after = table_version(&scrape(&rd).await);
    assert!(
        version_after > version_before,
        "routerd_table_version {version_before} -> {version_after} after a POST"
    );

    // Label sets stay bounded: statuses by class only, and a deleted route's series go.
    assert!(
        after
            .iter()
            .filter(|s| s.name == "routerd_requests_total")
            .all(|s| s.labels.get("status").is_some_and(|c| c.ends_with("xx"))),
        "a status label that is not a class"
    );
    assert_eq!(rd.get("/new").await.status, 200);
    let has_series = |s: &[Sample]| {
        s.iter()
            .any(|x| x.labels.get("route").map(String::as_str) == Some("new-route"))
    };
    assert!(has_series(&scrape(&rd).await), "no series for new-route");
    let resp = rd.admin_json("DELETE", &route_url("new-route"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    assert!(
        !has_series(&scrape(&rd).await),
        "the deleted route's series are still in /metrics"
    );
}

// ---------------------------------------------------------------------------------------------
// Health checks
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_report_up_and_down() {
    let live = Backend::start("live").await;
    let dead_target = format!("http://127.0.0.1:{}", unused_port());
    let rd = Routerd::start_in_process(&config(vec![
        Route::proxy("to-live", &live.url()).m(path("/live")),
        Route::respond("inline").m(path("/inline")),
    ]))
    .await;
    create(&rd, &to_backend("to-dead", "/dead", &dead_target)).await;

    let mut doc = Value::Null;
    let status_of = |doc: &Value, route: &str| {
        doc["routes"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["route"] == route))
            .map(|r| r["status"].as_str().unwrap_or_default().to_owned())
    };
    let settled = wait_until(
        async || {
            doc = assert_status(&rd.admin_get("/api/v1/health").await, 200, "GET health");
            status_of(&doc, "to-live").as_deref() == Some("up")
                && status_of(&doc, "to-dead").as_deref() == Some("down")
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(
        settled,
        "health did not settle to live up / dead down: {doc}"
    );
    let routes = doc["routes"].as_array().unwrap();
    let entry = |route: &str| routes.iter().find(|r| r["route"] == route).unwrap();
    let up = entry("to-live");
    assert!(
        up["target"]
            .as_str()
            .is_some_and(|t| t.contains(&live.addr.to_string())),
        "{up}"
    );
    assert!(up["latency_ms"].is_number(), "latency_ms: {up}");
    assert!(!up["since"].is_null(), "since: {up}");
    let down = entry("to-dead");
    assert!(
        down["target"]
            .as_str()
            .is_some_and(|t| t.contains(dead_target.trim_start_matches("http://"))),
        "{down}"
    );
    assert!(!down["since"].is_null(), "since: {down}");
    assert!(
        routes.iter().all(|r| r["route"] != "inline"),
        "a route without a backend has no health: {doc}"
    );

    // A deleted route leaves the list.
    let resp = rd.admin_json("DELETE", &route_url("to-dead"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    let gone = wait_until(
        async || {
            doc = assert_status(&rd.admin_get("/api/v1/health").await, 200, "GET health");
            status_of(&doc, "to-dead").is_none() && status_of(&doc, "to-live").is_some()
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(gone, "a deleted route is still health-checked: {doc}");
}

// ---------------------------------------------------------------------------------------------
// Under load
// ---------------------------------------------------------------------------------------------

/// The `X-Gen` values one load task saw on one path, in order.
#[derive(Default)]
struct Seen {
    failures: Vec<String>,
    requests: usize,
    gens: BTreeMap<&'static str, Vec<u64>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_under_steady_load_fail_no_request() {
    const TASKS: usize = 3;
    const MAX_LOAD: Duration = Duration::from_secs(10);
    const MAX_CHURN: Duration = Duration::from_secs(7);
    let a = Backend::start("hot-a").await;
    let b = Backend::start("hot-b").await;
    let rd = Arc::new(
        Routerd::start_in_process(&config(vec![Route::respond("file-route").m(path("/file"))]))
            .await,
    );
    let hot = |name: &str, p: &str, backend: &Backend, generation: u64| {
        let mut r = to_backend(name, p, &backend.url());
        r["filters"] = json!([{"name": "set_response_header",
                               "args": ["X-Gen", generation.to_string()]}]);
        r
    };
    create(&rd, &hot("hot-a", "/hot/a", &a, 0)).await;
    create(&rd, &hot("hot-b", "/hot/b", &b, 0)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (rd, stop) = (rd.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let mut i = t;
            while !stop.load(Ordering::SeqCst) && started.elapsed() < MAX_LOAD {
                let (p, backend) = if i % 2 == 0 {
                    ("/hot/a", "hot-a")
                } else {
                    ("/hot/b", "hot-b")
                };
                i += 1;
                seen.requests += 1;
                match rd.try_request("GET", p, &[], "").await {
                    Ok(resp)
                        if resp.status == 200 && resp.backend().as_deref() == Some(backend) =>
                    {
                        match resp.header("x-gen").and_then(|g| g.parse().ok()) {
                            Some(g) => seen.gens.entry(p).or_default().push(g),
                            None => seen.failures.push(format!("GET {p}: no X-Gen")),
                        }
                    }
                    Ok(resp) => seen.failures.push(format!("GET {p}: {}", resp.describe())),
                    Err(e) => seen.failures.push(format!("GET {p}: {e}")),
                }
            }
            seen
        }));
    }

    // Churn: other routes come and go, the hot routes change generation.
    let mut last_gen = 0;
    for generation in 1..=120u64 {
        if started.elapsed() > MAX_CHURN {
            break;
        }
        let churn = format!("churn-{generation}");
        create(
            &rd,
            &answer(&churn, &format!("/churn/{generation}"), &churn),
        )
        .await;
        update(&rd, "hot-a", &hot("hot-a", "/hot/a", &a, generation)).await;
        // Visible at once to a new request.
        let resp = rd.get("/hot/a").await;
        assert_eq!(
            resp.header("x-gen"),
            Some(generation.to_string()),
            "hot-a generation {generation} not visible after its PUT: {}",
            resp.describe()
        );
        let mut moved = answer(&format!("{churn}-r"), &format!("/churn/{generation}"), "r");
        moved["priority"] = json!(3);
        update(&rd, &churn, &moved).await;
        update(&rd, "hot-b", &hot("hot-b", "/hot/b", &b, generation)).await;
        assert_eq!(
            traffic(&rd, &format!("/churn/{generation}")).await,
            (200, "r".to_owned())
        );
        let resp = rd
            .admin_json("DELETE", &route_url(&format!("{churn}-r")), None)
            .await;
        assert_eq!(resp.status, 204, "DELETE {churn}-r: {}", resp.describe());
        last_gen = generation;
    }
    assert!(
        last_gen >= 3,
        "only {last_gen} churn rounds in {MAX_CHURN:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    let mut total = 0;
    let mut finals = BTreeMap::new();
    for (t, task) in tasks.into_iter().enumerate() {
        let seen = task.await.unwrap();
        total += seen.requests;
        failures.extend(
            seen.failures
                .iter()
                .take(10)
                .map(|f| format!("task {t}: {f}")),
        );
        for (p, gens) in &seen.gens {
            // Each task's requests are sequential: a generation never goes backwards.
            if let Some(w) = gens.windows(2).find(|w| w[1] < w[0]) {
                failures.push(format!(
                    "task {t}: {p} went from X-Gen {} back to {}",
                    w[0], w[1]
                ));
            }
            let last = finals.entry(*p).or_insert(0);
            *last = (*last).max(*gens.last().unwrap());
        }
    }
    assert_no_failures(&failures);
    assert!(total >= 50, "only {total} requests under load");
    for p in ["/hot/a", "/hot/b"] {
        assert_eq!(
            finals.get(p).copied(),
            Some(last_gen),
            "the load on {p} never saw the last generation {last_gen}"
        );
    }
    let names = route_names(&rd).await;
    assert_eq!(
        names,
        ["file-route", "hot-a", "hot-b"].map(str::to_owned).into(),
        "churn routes left behind"
    );
}
