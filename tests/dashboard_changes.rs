//! The dashboard's tools for changing without fear, in a real browser (Debian's chromium,
//! headless, over WebDriver) against a real routerd that samples every request: the route
//! editor's dry run shows which sampled requests a change would move before it is saved, and
//! the plugins page shows a shadow version's comparison and discards it.

mod browser;
mod harness;

use browser::Browser;
use harness::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_dry_runs_a_change_and_the_plugins_page_shows_a_shadow() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let cfg = config(vec![
        Route::respond("gold")
            .m(path("/tier"))
            .m(plugin_pred("geo", &["x-tier", "gold"])),
        Route::respond("other").m(path("/tier")),
    ]);
    let rd = Routerd::launch(&cfg)
        .plugin_as("geo", "header-eq")
        .arg("--sample-every")
        .arg("1")
        .start()
        .await;
    let web = json!({"name": "web", "target_url": a.url(),
                     "matchers": [{"condition": "path_prefix", "pattern": "/web"}]});
    let created = rd.admin_json("POST", "/api/v1/routes", Some(&web)).await;
    assert_eq!(created.status, 201, "{}", created.describe());
    for p in ["/web/1", "/web/2", "/web/3"] {
        assert_eq!(rd.get(p).await.backend().as_deref(), Some("a"));
    }

    // The editor: point web at another backend, dry-run it, and nothing is saved.
    let browser = Browser::start(&rd.admin_url()).await;
    browser.open("edit/web").await;
    browser.type_into("#f-target_url", &b.url()).await;
    browser.click("#dry-run-route").await;
    browser
        .wait_text("#dry-run-summary", "the dry run's count", |t| {
            t.contains("3 of 3 recently sampled requests would move")
        })
        .await;
    let groups = browser
        .wait_text("#dry-run-groups", "the moved group", |t| {
            t.contains(&b.url())
        })
        .await;
    assert!(groups.contains(&format!("web ({})", a.url())), "{groups}");
    assert!(groups.contains("GET 127.0.0.1/web/1"), "{groups}");
    browser.shot("dry-run").await;
    browser.assert_clean("editor", &[]).await;
    assert_eq!(rd.get("/web/4").await.backend().as_deref(), Some("a"));

    // A shadow version that matches everything, and two requests it disagrees on.
    let bytes = std::fs::read(dist_plugin("noop-predicate")).expect("built plugin");
    let resp = rd
        .admin_request(
            "POST",
            "/api/v1/plugins?name=geo&shadow=true",
            &[("content-type", "application/wasm")],
            bytes,
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.describe());
    for _ in 0..2 {
        assert_eq!(rd.get("/tier").await.text(), "other");
    }
    browser.open("plugins").await;
    let row = browser
        .wait_text("tr[data-trial=geo]", "the shadow's row", |t| {
            t.contains("shadow") && t.contains("live false, trial true")
        })
        .await;
    assert!(row.contains("GET /tier"), "{row}");
    browser.shot("plugins-shadow").await;
    browser
        .click("tr[data-trial=geo] button[data-action=discard]")
        .await;
    browser
        .wait_gone("tr[data-trial=geo]", "the discarded shadow")
        .await;
    browser.assert_clean("plugins", &[]).await;
    let geo = rd.admin_get("/api/v1/plugins/geo").await.json();
    assert_eq!(geo["trial"], serde_json::Value::Null);
}
