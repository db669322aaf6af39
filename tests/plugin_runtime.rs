//! Black-box tests of the plugin runtime around the calls: the compile cache across restarts
//! and the compiling child, plugin log lines tagged with the plugin's name and rate limited,
//! and more plugins than the instance pool holds. Real `routerd` processes and plugins built
//! from `plugins/`.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use bytes::Bytes;
use harness::*;
use serde_json::json;

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

/// Compiling a large component (1 MiB or more) happens in a short-lived child process by
/// default (so the compiler's memory is returned to the system), and in routerd itself with
/// `--plugin-compiler in-process`; a small one always compiles in routerd (a child's start costs
/// more than its compile). Every way the plugin serves, and a restart loads the cached artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_plugins_compile_in_a_child_process_unless_told_otherwise() {
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("p", &["x-tier", "gold"])),
        Route::respond("plain").m(path("/t")),
    ]);
    let large = lang_plugin("quickjs");
    let small = dist_plugin("header-eq");
    assert!(std::fs::metadata(&large).unwrap().len() >= 1 << 20);
    assert!(std::fs::metadata(&small).unwrap().len() < 1 << 20);
    for (plugin, flag, expected) in [
        (&large, None, "child"),
        (&large, Some("in-process"), "routerd"),
        (&small, None, "routerd"),
    ] {
        // A cold cache of its own, so the plugin is compiled.
        let mut launch = Routerd::launch(&cfg)
            .plugin_path("p", plugin)
            // A JavaScript guest's first call in a debug build can pass the default deadline.
            .plugin_settings("p", json!({"deadline_ms": 1000}))
            .startup_timeout(std::time::Duration::from_secs(60));
        if let Some(place) = flag {
            launch = launch.arg("--plugin-compiler").arg(place);
        }
        let rd = launch.start().await;
        let line = rd
            .logs()
            .into_iter()
            .find(|l| is_loaded_line(l, "p"))
            .unwrap_or_else(|| panic!("no load line: {:?}", rd.logs()));
        assert_eq!(
            log_field(&line, "compiled_by").as_deref(),
            Some(expected),
            "{}: {line}",
            plugin.display()
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

/// `--plugin-cache-max-mib` bounds the compile cache: eight plugins (175-600 KiB of compiled
/// code each) compiled into a 1 MiB cache leave at most 1 MiB of artifacts, the least recently
/// used removed, and every plugin still serves (a loaded plugin does not need its file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compile_cache_stays_under_its_bound() {
    let plugins = [
        "header-eq",
        "add-headers",
        "api-key",
        "ab-split",
        "jwt-claim",
        "bad-loop",
        "noop-predicate",
        "contract-0-2",
    ];
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/t"))
            .m(plugin_pred("header-eq", &["x-tier", "gold"])),
        Route::respond("plain").m(path("/t")),
    ]);
    let rd = plugins
        .iter()
        .fold(Routerd::launch(&cfg), |l, p| l.plugin(p))
        .arg("--plugin-cache-max-mib")
        .arg("1")
        .start()
        .await;
    let listed = rd.admin_get("/api/v1/plugins").await.json();
    assert_eq!(
        listed["plugins"].as_array().map(Vec::len),
        Some(plugins.len()),
        "{listed}"
    );
    let sizes: Vec<u64> = std::fs::read_dir(rd.data_dir().join("plugin-cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    let total: u64 = sizes.iter().sum();
    assert!(
        total <= 1 << 20,
        "{total} bytes in {} artifacts",
        sizes.len()
    );
    assert!(
        !sizes.is_empty() && sizes.len() < plugins.len(),
        "{sizes:?}"
    );
    let resp = rd.request("GET", "/t", &[("x-tier", "gold")], "").await;
    assert_eq!(resp.text(), "gold", "{}", resp.describe());
    assert!(
        rd.logs()
            .iter()
            .any(|l| l.contains("compile cache over its bound")),
        "{:?}",
        rd.logs()
    );
}
