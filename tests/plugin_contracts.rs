//! Black-box tests of the contract versions side by side: a real `routerd` process, an echo
//! backend on 127.0.0.1, and plugins built from `plugins/` for `router:plugin@0.2.0` (the
//! fixture `contract-0-2`, args on every call), `0.3.0` (the fixture `contract-0-3-0`: args once
//! per instance, a filter declaring its phases) and `0.3.1` (the SDK's: `0.3.0` and the store).
#![allow(clippy::unwrap_used)]

mod harness;

use bytes::Bytes;
use harness::*;

/// `routerd_plugin_calls{plugin, phase}` in a `/metrics` text, 0 when absent.
fn calls(metrics: &str, plugin: &str, phase: &str) -> u64 {
    let series = format!("routerd_plugin_calls_total{{plugin=\"{plugin}\",phase=\"{phase}\"}}");
    series_value(metrics, &series).map_or(0, |v| v as u64)
}

/// A 0.2 plugin and 0.3 plugins, each a predicate and a filter on its own route of one routerd:
/// both choose and edit as written, and the plugin list says which contract each speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_of_contracts_0_2_and_0_3_serve_side_by_side() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("old", &backend.url())
            .m(path("/old"))
            .m(plugin_pred("contract-0-2", &["x-tier", "gold"]))
            .plugin_filter("contract-0-2", &["x-from", "old"]),
        Route::proxy("new", &backend.url())
            .m(path("/new"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"]))
            .plugin_filter(
                "add-headers",
                &["req:X-From", "new", "resp:X-Contract", "0.3"],
            ),
        Route::respond("neither").m(path("/old")),
        Route::respond("neither-new").m(path("/new")),
    ]);
    let rd = launch(&cfg, &["contract-0-2", "header-eq", "add-headers"])
        .start()
        .await;
    for (path, from, contract) in [("/old", "old", "0.2"), ("/new", "new", "0.3")] {
        let resp = rd
            .request("GET", path, &[("x-tier", "gold")], Bytes::new())
            .await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.describe());
        assert_eq!(resp.backend().as_deref(), Some("echo"), "{path}");
        assert_eq!(resp.echoed_header("x-from"), [from], "{path}");
        assert_eq!(
            resp.header("x-contract").as_deref(),
            Some(contract),
            "{path}"
        );
        let other = rd
            .request("GET", path, &[("x-tier", "silver")], Bytes::new())
            .await;
        assert!(
            other.text().starts_with("neither"),
            "{path}: {}",
            other.describe()
        );
    }
    let listed = rd.admin_get("/api/v1/plugins").await.json();
    let contract_of = |name: &str| {
        listed["plugins"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .map(|p| p["contract"].clone())
    };
    assert_eq!(contract_of("contract-0-2"), Some("0.2".into()), "{listed}");
    assert_eq!(contract_of("header-eq"), Some("0.3".into()), "{listed}");
}

/// A plugin built for 0.3.0, before the store was added in 0.3.1, links and serves beside the
/// SDK's 0.3.1 plugins: imports and exports match by the component model's semver rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_0_3_0_serves_beside_0_3_1_ones() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("v030", &backend.url())
            .m(path("/v030"))
            .m(plugin_pred("contract-0-3-0", &["x-tier", "gold"]))
            .plugin_filter("contract-0-3-0", &["x-from", "v030"]),
        Route::proxy("v031", &backend.url())
            .m(path("/v031"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"]))
            .plugin_filter("add-headers", &["req:X-From", "v031"]),
        Route::respond("neither").m(prefix("/")),
    ]);
    let rd = launch(&cfg, &["contract-0-3-0", "header-eq", "add-headers"])
        .start()
        .await;
    for (path, from) in [("/v030", "v030"), ("/v031", "v031")] {
        let resp = rd
            .request("GET", path, &[("x-tier", "gold")], Bytes::new())
            .await;
        assert_eq!(
            resp.backend().as_deref(),
            Some("echo"),
            "{path}: {}",
            resp.describe()
        );
        assert_eq!(resp.echoed_header("x-from"), [from], "{path}");
        let other = rd
            .request("GET", path, &[("x-tier", "silver")], Bytes::new())
            .await;
        assert!(
            other.text().starts_with("neither"),
            "{path}: {}",
            other.describe()
        );
    }
    let v030 = rd
        .request("GET", "/v030", &[("x-tier", "gold")], Bytes::new())
        .await;
    assert_eq!(v030.header("x-contract").as_deref(), Some("0.3.0"));
}

/// A 0.3 filter whose args only edit responses runs one call per request: routerd never calls
/// the request phase it left out. Its predicate, with a fresh instance per call, is configured
/// in each new instance before it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_runs_only_the_phases_it_declares() {
    let backend = Backend::start("echo").await;
    let cfg = config(vec![
        Route::proxy("tagged", &backend.url())
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"]))
            .plugin_filter("add-headers", &["resp:X-Tagged", "yes"]),
        Route::respond("untagged").m(path("/t")),
    ]);
    let rd = launch(&cfg, &["header-eq", "add-headers"])
        .plugin_settings("header-eq", serde_json::json!({"mode": "fresh"}))
        .start()
        .await;
    const REQUESTS: u64 = 20;
    for i in 0..REQUESTS {
        let tier = if i % 2 == 0 { "gold" } else { "silver" };
        let resp = rd
            .request("GET", "/t", &[("x-tier", tier)], Bytes::new())
            .await;
        assert_eq!(resp.status, 200, "{}", resp.describe());
        if tier == "gold" {
            assert_eq!(resp.backend().as_deref(), Some("echo"));
            assert_eq!(resp.header("x-tagged").as_deref(), Some("yes"));
        } else {
            assert_eq!(resp.text(), "untagged");
            assert_eq!(resp.header("x-tagged"), None);
        }
    }
    let metrics = rd.admin_get("/metrics").await.text();
    assert_eq!(calls(&metrics, "add-headers", "request"), 0, "{metrics}");
    assert_eq!(
        calls(&metrics, "add-headers", "response"),
        REQUESTS / 2,
        "{metrics}"
    );
    assert_eq!(
        calls(&metrics, "header-eq", "predicate"),
        REQUESTS,
        "{metrics}"
    );
}
