//! Black-box tests of what routerd says about a plugin it refuses: a real `routerd` process,
//! files dropped into its plugins directory, and uploads through the admin API.
//!
//! A refused plugin is one log record on one line, naming the plugin and the reason; a plugin
//! built for a contract version routerd does not speak is refused with a message naming the
//! version it was built for and the versions routerd speaks (the fixture `contract-0-1` is
//! `header-eq` built for the retired `router:plugin@0.1.0`).
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::json;

const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);

fn serving_config() -> serde_json::Value {
    config(vec![Route::respond("fine").m(path("/fine"))])
}

/// Random bytes dropped into the plugins directory: wasmparser's message for them spans many
/// lines (the expected and found magic numbers, a byte per line); the log record is one line
/// that names the plugin and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plugin_is_one_log_line_naming_it_and_the_reason() {
    let rd = Routerd::launch(&serving_config()).start().await;
    let mark = rd.log_count();
    std::fs::write(
        rd.plugins_dir().join("noise.wasm"),
        pseudo_random_bytes(4096, 25),
    )
    .unwrap();
    let line = rd
        .wait_for_log(mark, RELOAD_TIMEOUT, |l| l.contains("plugin not loaded"))
        .await
        .expect("a `plugin not loaded` record");
    assert!(!line.contains('\n'), "one line:\n{line}");
    assert!(
        line.contains("plugin=\"noise\"") || line.contains("plugin=noise"),
        "{line}"
    );
    assert!(
        line.contains("not a valid WebAssembly component") && line.contains("magic"),
        "{line}"
    );
    // Nothing else was logged about it, and serving goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let about: Vec<String> = rd
        .log_records_since(mark)
        .into_iter()
        .filter(|l| l.contains("noise"))
        .collect();
    assert_eq!(about.len(), 1, "{about:#?}");
    assert_eq!(rd.get("/fine").await.text(), "fine");
}

/// A plugin built for `router:plugin@0.1.0`, through the plugins directory and the admin API:
/// refused with the version it was built for and the ones routerd speaks, not wasmtime's bare
/// "cannot link the component".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_built_for_another_contract_version_is_refused_by_name() {
    let rd = Routerd::launch(&serving_config())
        .plugin_as("old", "contract-0-1")
        .start()
        .await;
    let line = rd
        .wait_for_log(0, RELOAD_TIMEOUT, |l| l.contains("plugin not loaded"))
        .await
        .expect("a `plugin not loaded` record for old.wasm");
    for part in [
        "old",
        "built for router:plugin@0.1.0",
        "routerd speaks router:plugin@0.2.x, 0.3.x",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    assert!(!line.contains("cannot link"), "{line}");

    let bytes = std::fs::read(dist_plugin("contract-0-1")).unwrap();
    let resp = rd
        .admin_request(
            "POST",
            "/api/v1/plugins?name=old2",
            &[("content-type", "application/wasm")],
            bytes,
        )
        .await;
    assert!(
        (400..500).contains(&resp.status),
        "refused: {}",
        resp.describe()
    );
    let body = resp.json();
    assert_eq!(body["error"], "invalid_plugin", "{body}");
    let message = body["message"].as_str().unwrap_or("").to_owned();
    assert!(
        message.contains("router:plugin@0.1.0") && message.contains("router:plugin@0.2.x, 0.3.x"),
        "{message}"
    );
    assert!(!rd.plugins_dir().join("old2.wasm").exists());
    let listed = rd.admin_get("/api/v1/plugins").await.json();
    assert_eq!(listed["plugins"], json!([]), "{listed}");
}
