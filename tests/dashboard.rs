//! The dashboard (`/ui/`) in a real browser: Debian's chromium, headless, driven over WebDriver
//! by chromedriver, against a real routerd with real echo backends and a real plugin built from
//! `plugins/`. Every step is done the way a person does it (typing, clicking, choosing a file)
//! and checked both on the page and through the proxy or the API; every page is saved as a PNG
//! under `target/dashboard/` and must leave no error in the browser's console.
//!
//! chromium and chromedriver come from `tests/system-deps.sh` (the test command installs them
//! when missing).

mod browser;
mod harness;

use std::time::{Duration, Instant};

use browser::Browser;
use harness::*;
use serde_json::{Value, json};
use thirtyfour::prelude::*;
/// Upper bound for the live view to show traffic (samples every 2 s).
const LIVE_TIMEOUT: Duration = Duration::from_secs(20);
const TOKEN: &str = "dashboard-test-token";

/// Each series' label and value in the legend of the uPlot chart in `box_css` (the values
/// of the sample under the pointer).
async fn legend_values(b: &Browser, box_css: &str) -> Vec<(String, String)> {
    let rows = b
        .driver
        .find_all(By::Css(format!("{box_css} .u-legend .u-series")))
        .await
        .unwrap_or_default();
    let mut out = Vec::new();
    for row in rows {
        let text = |css: &'static str| {
            let row = row.clone();
            async move {
                match row.find(By::Css(css)).await {
                    Ok(el) => el
                        .prop("textContent")
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                }
            }
        };
        out.push((text(".u-label").await, text(".u-value").await));
    }
    out
}

/// A change made through the API, beside the browser (another editor, a script).
async fn api_write(rd: &Routerd, method: &str, path: &str, doc: &Value) -> Resp {
    let bearer = format!("Bearer {TOKEN}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
    ];
    rd.admin_request(method, path, &headers, doc.to_string())
        .await
}

fn config(hello: &Backend, dead_port: u16) -> Value {
    json!({"routes": [
        {"name": "hello", "target_url": hello.url(), "priority": 10,
         "matchers": [{"condition": "path_prefix", "pattern": "/hello"}]},
        {"name": "gone", "target_url": format!("http://127.0.0.1:{dead_port}"),
         "matchers": [{"condition": "path_prefix", "pattern": "/gone"}]},
        {"name": "tier", "target_url": hello.url(),
         "matchers": [{"condition": "path_prefix", "pattern": "/tier"},
                      {"condition": "plugin", "plugin": "header-eq", "args": ["x-tier", "gold"]}]},
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_manages_routes_and_plugins_in_a_real_browser() {
    let hello = Backend::start("hello-backend").await;
    let shop = Backend::start("shop-backend").await;
    let dir = TempDir::new("dashboard");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, TOKEN).expect("write token");
    let rd = Routerd::launch(&config(&hello, unused_port()))
        .plugin("header-eq")
        .arg("--admin-token-file")
        .arg(&token_file)
        .arg("--health-interval-secs")
        .arg("1")
        .start()
        .await;
    let b = Browser::start(&rd.admin_url()).await;

    // Routes page: the file's routes, readable without the token (loopback).
    b.open("routes").await;
    b.wait_text("#routes-body", "routes listed", |t| {
        t.contains("hello") && t.contains("gone")
    })
    .await;
    let hello_row = b
        .wait_text("tr[data-route=hello]", "hello row", |t| t.contains("file"))
        .await;
    assert!(hello_row.contains("path_prefix /hello"), "{hello_row}");
    assert!(hello_row.contains("active"), "{hello_row}");
    b.wait_text(
        "tr[data-route=gone] [data-col=backend]",
        "a dead backend shows down",
        |t| t == "down",
    )
    .await;
    b.assert_clean("routes", &[]).await;

    // A change without the token is refused, and the page asks for it.
    b.click("#new-route").await;
    b.type_into("#f-name", "shop").await;
    b.type_into("#f-target_url", &shop.url()).await;
    b.click("#save-route").await;
    b.wait_text("#banner", "asks for the token", |t| t.contains("Bearer"))
        .await;
    assert!(
        b.el("#token-panel")
            .await
            .is_displayed()
            .await
            .unwrap_or(false),
        "the token panel opens on a 401"
    );
    b.assert_clean(
        "editor",
        &["/api/v1/routes - Failed to load resource: the server responded with a status of 401"],
    )
    .await;
    b.type_into("#token-input", TOKEN).await;
    b.click("#token-form button[type=submit]").await;
    b.wait_text("#token-button", "token kept", |t| t.contains('✓'))
        .await;

    // The editor: a header matcher with a bad regex gets its error next to that field.
    b.open("new").await;
    b.type_into("#f-name", "shop").await;
    b.type_into("#f-target_url", &shop.url()).await;
    b.type_into("#f-priority", "20").await;
    b.type_into("#f-matchers [data-field='matchers[0].pattern']", "/shop")
        .await;
    b.click("#add-matcher").await;
    let condition = b
        .el("#f-matchers [data-field='matchers[1].condition']")
        .await;
    condition
        .find(By::Css("option[value=header]"))
        .await
        .expect("header option")
        .click()
        .await
        .expect("choose header");
    b.type_into("#f-matchers [data-field='matchers[1].field']", "X-Tier")
        .await;
    b.type_into("#f-matchers [data-field='matchers[1].pattern']", "(gold")
        .await;
    b.click("#f-matchers [data-field='matchers[1].is_regex']")
        .await;
    b.click("#save-route").await;
    let error = b
        .wait_text(
            "#f-matchers [data-field='matchers[1]'] .field-error",
            "regex error next to the pattern",
            |t| !t.is_empty(),
        )
        .await;
    assert!(error.contains("unclosed group"), "{error}");
    let pattern_class = b
        .el("#f-matchers [data-field='matchers[1].pattern']")
        .await
        .class_name()
        .await
        .expect("class");
    assert!(
        pattern_class.is_some_and(|c| c.contains("invalid")),
        "the pattern input is marked"
    );
    b.shot("editor-field-error").await;
    let nothing = rd.admin_get("/api/v1/routes/shop").await;
    assert_eq!(nothing.status, 404, "an invalid route is not saved");
    b.assert_clean(
        "editor",
        &["/api/v1/routes - Failed to load resource: the server responded with a status of 400"],
    )
    .await;

    // Fixed, it saves, and the proxy serves it at once.
    b.type_into(
        "#f-matchers [data-field='matchers[1].pattern']",
        "^(gold|silver)$",
    )
    .await;
    b.click("#save-route").await;
    b.wait_text("#route-json", "the saved route's page", |t| {
        t.contains("\"name\": \"shop\"")
    })
    .await;
    let served = rd
        .request("GET", "/shop/cart", &[("x-tier", "gold")], "")
        .await;
    assert_eq!(served.status, 200, "{}", served.describe());
    assert_eq!(served.backend().as_deref(), Some("shop-backend"));
    let bronze = rd
        .request("GET", "/shop/cart", &[("x-tier", "bronze")], "")
        .await;
    assert_eq!(bronze.status, 404, "{}", bronze.describe());
    b.assert_clean("route", &[]).await;

    // Two editors: the second save, made from an older version, is refused (If-Match).
    b.click("#edit-route").await;
    b.wait_text("#save-route", "the editor", |t| t == "Save")
        .await;
    let mut changed = rd.admin_get("/api/v1/routes/shop").await.json();
    changed["priority"] = json!(30);
    let elsewhere = api_write(&rd, "PUT", "/api/v1/routes/shop", &changed).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.describe());
    b.type_into("#f-priority", "40").await;
    b.click("#save-route").await;
    let refused = b
        .wait_text("#form-errors", "the stale save is refused", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        refused.contains("version") && refused.contains("Someone saved this route"),
        "{refused}"
    );
    let kept = rd.admin_get("/api/v1/routes/shop").await.json();
    assert_eq!(kept["priority"], 30, "the other editor's change stands");
    b.assert_clean("editor", &["/api/v1/routes/shop - Failed to load resource: the server responded with a status of 412"])
        .await;

    // Disable and enable from the route's page.
    b.open("routes/shop").await;
    b.wait_text("#toggle-route", "toggle", |t| t == "Disable")
        .await;
    b.click("#toggle-route").await;
    b.wait_text("#toggle-route", "now disabled", |t| t == "Enable")
        .await;
    assert_eq!(
        rd.admin_get("/api/v1/routes/shop").await.json()["status"],
        "disabled"
    );
    let off = rd
        .request("GET", "/shop/cart", &[("x-tier", "gold")], "")
        .await;
    assert_eq!(off.status, 404, "a disabled route does not serve");
    b.click("#toggle-route").await;
    b.wait_text("#toggle-route", "enabled again", |t| t == "Disable")
        .await;

    // Traffic, then the table's req/s and the live charts show it without a reload.
    for _ in 0..60 {
        let r = rd
            .request("GET", "/shop/item", &[("x-tier", "silver")], "")
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(rd.get("/hello/x").await.status, 200);
    }
    b.open("live").await;
    b.wait_text(
        "#live-body tr[data-route=shop] [data-col=rps-1m]",
        "shop's traffic in the live table",
        |t| t.parse::<f64>().is_ok_and(|v| v > 0.0),
    )
    .await;
    let canvases = b.driver.find_all(By::Css(".chart canvas")).await;
    assert_eq!(canvases.map(|c| c.len()).unwrap_or(0), 2, "two charts");
    // Both routes get a line (hello's traffic may land a sample later than the page's first
    // load: the chart redraws with it).
    b.wait_text("#chart-rps", "legend", |t| {
        t.contains("shop") && t.contains("hello")
    })
    .await;
    // The next sample arrives by itself: more traffic moves "now" without a reload.
    let before = b
        .wait_text(
            "#live-body tr[data-route=hello] [data-col=rps-now]",
            "hello now",
            |_| true,
        )
        .await;
    let deadline = Instant::now() + LIVE_TIMEOUT;
    let mut moved = false;
    while Instant::now() < deadline && !moved {
        for _ in 0..40 {
            assert_eq!(rd.get("/hello/again").await.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = b
            .wait_text(
                "#live-body tr[data-route=hello] [data-col=rps-now]",
                "hello now",
                |_| true,
            )
            .await;
        moved = now != before;
    }
    assert!(moved, "the live table did not refresh by itself");
    // Pointing at the chart's newest sample shows its value in the legend, as a person reads
    // the chart: hello's line has risen above zero there.
    let mut legend = Vec::new();
    let deadline = Instant::now() + LIVE_TIMEOUT;
    let hello_shown = |legend: &[(String, String)]| {
        legend
            .iter()
            .find(|(label, _)| label == "hello")
            .and_then(|(_, v)| v.replace(',', "").parse::<f64>().ok())
            .is_some_and(|v| v > 0.0)
    };
    while Instant::now() < deadline && !hello_shown(&legend) {
        for _ in 0..40 {
            assert_eq!(rd.get("/hello/more").await.status, 200);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let over = b.el("#chart-rps .u-over").await;
        let width = over.rect().await.map_or(0.0, |r| r.width);
        b.driver
            .action_chain()
            .move_to_element_with_offset(&over, (width / 2.0 - 1.0) as i64, 0)
            .perform()
            .await
            .expect("point at the chart");
        legend = legend_values(&b, "#chart-rps").await;
    }
    assert!(
        hello_shown(&legend),
        "the rps chart's legend never showed hello's traffic at the newest sample: {legend:?}"
    );
    b.shot("live").await;
    b.assert_clean("live", &[]).await;

    b.open("routes").await;
    b.wait_text(
        "tr[data-route=shop] [data-col=rps]",
        "req/s in the routes table",
        |t| t.parse::<f64>().is_ok_and(|v| v > 0.0),
    )
    .await;
    // Filter and sort.
    b.type_into("#routes-filter", "sho").await;
    b.wait_gone("tr[data-route=hello]", "filtered out").await;
    b.type_into("#routes-filter", "").await;
    b.wait_text("tr[data-route=hello]", "back", |_| true).await;
    b.click("th[data-key=priority]").await;
    let first = b
        .wait_text(
            "#routes-body tr:first-child td:first-child",
            "sorted",
            |t| t == "shop",
        )
        .await;
    assert_eq!(first, "shop", "priority sorts highest first");
    b.shot("routes").await;
    b.assert_clean("routes", &[]).await;

    // Plugins: upload by choosing a file, see it listed, unload it.
    b.open("plugins").await;
    b.type_into("#plugin-name", "uploaded-noop").await;
    let wasm = dist_plugin("noop-predicate");
    b.el("#plugin-file")
        .await
        .send_keys(wasm.to_string_lossy().as_ref())
        .await
        .expect("choose the file");
    let row = b
        .wait_text("tr[data-plugin=uploaded-noop]", "uploaded plugin", |t| {
            t.contains("predicate")
        })
        .await;
    assert!(row.contains("none"), "used by no route: {row}");
    assert!(row.contains("Rust"), "the declared language: {row}");
    let listed = rd.admin_get("/api/v1/plugins/uploaded-noop").await;
    assert_eq!(listed.status, 200, "{}", listed.describe());
    assert_eq!(
        listed.json()["sha256"],
        sha256_hex(&std::fs::read(&wasm).expect("read wasm"))
    );
    b.shot("plugins").await;
    b.click("tr[data-plugin=uploaded-noop] [data-action=unload]")
        .await;
    b.click("tr[data-plugin=uploaded-noop] [data-action=confirm-unload]")
        .await;
    b.wait_gone("tr[data-plugin=uploaded-noop]", "unloaded")
        .await;
    assert_eq!(
        rd.admin_get("/api/v1/plugins/uploaded-noop").await.status,
        404
    );
    // A plugin a route uses: unloading asks again, naming the route, and only then goes.
    let used = b
        .wait_text("tr[data-plugin=header-eq]", "a plugin in use", |t| {
            t.contains("tier")
        })
        .await;
    assert!(used.contains("Rust"), "{used}");
    b.click("tr[data-plugin=header-eq] [data-action=unload]")
        .await;
    b.click("tr[data-plugin=header-eq] [data-action=confirm-unload]")
        .await;
    let refused = b
        .wait_text(
            "tr[data-plugin=header-eq] .inline-confirm",
            "the in-use refusal",
            |t| t.contains("Unload anyway"),
        )
        .await;
    assert!(refused.contains("tier"), "{refused}");
    assert_eq!(
        rd.admin_get("/api/v1/plugins/header-eq").await.status,
        200,
        "still loaded"
    );
    b.assert_clean(
        "plugins",
        &["/api/v1/plugins/header-eq - Failed to load resource: the server responded with a status of 409"],
    )
    .await;

    // And by dropping a file on the page (a drop event carrying the same bytes).
    let bytes = std::fs::read(&wasm).expect("read wasm");
    let numbers: Vec<u16> = bytes.iter().map(|b| u16::from(*b)).collect();
    b.driver
        .execute(
            r#"const file = new File([new Uint8Array(arguments[0])], "dropped-noop.wasm");
               const data = new DataTransfer();
               data.items.add(file);
               const zone = document.getElementById("plugin-drop");
               zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
               zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));"#,
            vec![json!(numbers)],
        )
        .await
        .expect("drop the file");
    b.wait_text("tr[data-plugin=dropped-noop]", "dropped plugin", |t| {
        t.contains("predicate")
    })
    .await;
    let dropped = rd.admin_get("/api/v1/plugins/dropped-noop").await;
    assert_eq!(dropped.json()["sha256"], sha256_hex(&bytes));
    b.assert_clean("plugins", &[]).await;

    // Try a request: the explain tree shows the candidate that failed and where.
    b.open("explain").await;
    b.type_into("#x-url", "http://shop.example/shop/cart").await;
    b.type_into("#x-headers", "X-Tier: bronze").await;
    b.click("#explain-run").await;
    b.wait_text("#explain-decision", "decision", |t| t.contains("not_found"))
        .await;
    let cand = b
        .wait_text(
            "#explain-tree li[data-candidate=shop]",
            "shop candidate",
            |t| t.contains("failed"),
        )
        .await;
    assert!(cand.contains("matchers[1] (header X-Tier)"), "{cand}");
    let marks = b
        .driver
        .find_all(By::Css(
            "#explain-tree li[data-candidate=shop] li[data-matcher] .badge",
        ))
        .await
        .expect("matcher marks");
    let mut texts = Vec::new();
    for m in marks {
        texts.push(m.text().await.unwrap_or_default());
    }
    assert_eq!(texts, ["matched", "failed"], "each matcher marked");
    b.type_into("#x-headers", "X-Tier: gold").await;
    b.click("#explain-run").await;
    b.wait_text("#explain-decision", "route chosen", |t| t.contains("shop"))
        .await;
    b.type_into("#x-headers", "X-Tier: bronze").await;
    b.click("#explain-run").await;
    b.wait_text("#explain-decision", "back to the failing one", |t| {
        t.contains("not_found")
    })
    .await;
    b.shot("explain").await;
    b.assert_clean("explain", &[]).await;

    // Health: the live backend is up, the one nobody listens on is down.
    b.open("health").await;
    b.wait_text("#health-body tr[data-route=hello]", "hello up", |t| {
        t.contains("up")
    })
    .await;
    b.wait_text("#health-body tr[data-route=gone]", "gone down", |t| {
        t.contains("down")
    })
    .await;
    b.shot("health").await;
    b.assert_clean("health", &[]).await;

    // Moving on before a page has loaded leaves nothing of it behind.
    for page in ["live", "routes/shop", "plugins", "routes", "live", "health"] {
        b.open(page).await;
    }
    b.wait_text("#health-body", "the last page opened", |t| {
        t.contains("hello")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pages = b.driver.find_all(By::Css("#main > .page")).await;
    assert_eq!(pages.map(|p| p.len()).unwrap_or(0), 1, "one page drawn");
    assert_eq!(
        b.driver
            .find_all(By::Css(".chart canvas"))
            .await
            .map(|c| c.len())
            .unwrap_or(0),
        0,
        "no chart of a page left behind"
    );
    b.assert_clean("health", &[]).await;

    // Cluster: this instance, with the table version it serves.
    b.open("cluster").await;
    let cluster = b
        .wait_text("#cluster-table", "this instance", |t| t.contains("local"))
        .await;
    let version = rd.admin_get("/api/v1/cluster").await.json()["instances"][0]["table_version"]
        .as_u64()
        .expect("table version");
    assert!(cluster.contains(&version.to_string()), "{cluster}");
    b.shot("cluster").await;
    b.assert_clean("cluster", &[]).await;

    // Delete, with confirmation.
    b.open("routes/shop").await;
    // The route's own page charts its last 5 minutes.
    b.el("#route-chart canvas").await;
    b.wait_text("#route-chart", "the route's chart", |t| {
        t.contains("req/s") && t.contains("p99 ms")
    })
    .await;
    b.shot("route").await;
    b.click("#delete-route").await;
    b.click("#confirm-delete").await;
    b.wait_text("#banner", "deleted", |t| t.contains("deleted"))
        .await;
    b.wait_gone("tr[data-route=shop]", "shop is gone from the table")
        .await;
    assert_eq!(rd.admin_get("/api/v1/routes/shop").await.status, 404);
    let after = rd
        .request("GET", "/shop/cart", &[("x-tier", "gold")], "")
        .await;
    assert_eq!(after.status, 404);
    b.assert_clean("routes", &[]).await;

    // A file that takes an API route's name: the table says which serves, and why the other
    // does not.
    let extra = json!({"name": "extra", "target_url": shop.url(),
                       "matchers": [{"condition": "path_prefix", "pattern": "/extra"}]});
    let made = api_write(&rd, "POST", "/api/v1/routes", &extra).await;
    assert_eq!(made.status, 201, "{}", made.describe());
    let mut file = config(&hello, unused_port());
    file["routes"]
        .as_array_mut()
        .expect("routes")
        .push(json!({"name": "extra", "target_url": hello.url(),
                     "matchers": [{"condition": "path_prefix", "pattern": "/extra"}]}));
    rd.write_config(&file);
    let row = b
        .wait_text(
            "tr[data-route=extra][data-source=api]",
            "the API route excluded",
            |t| t.contains("excluded"),
        )
        .await;
    assert!(
        row.contains("config file"),
        "the reason names the file: {row}"
    );
    b.wait_text(
        "tr[data-route=extra][data-source=file]",
        "the file's route",
        |t| t.contains("active"),
    )
    .await;
    let figures = b
        .wait_text(
            "tr[data-route=extra][data-source=api] [data-col=backend]",
            "no backend figures for a route that does not serve",
            |_| true,
        )
        .await;
    assert_eq!(figures, "–");
    b.shot("routes-excluded").await;
    b.assert_clean("routes", &[]).await;
    // The file's route's page points at the excluded one, whose page can delete it.
    b.click("tr[data-route=extra][data-source=file] a").await;
    b.click("#route-twin a").await;
    let reason = b
        .wait_text("#main .reason", "the excluded route's page", |t| {
            t.contains("config file")
        })
        .await;
    assert!(reason.contains("serves"), "{reason}");
    // The API refuses to change it while the file has the name, so only Delete is offered.
    b.wait_text("#route-file-owns", "why it cannot be edited", |t| {
        t.contains("cannot be edited")
    })
    .await;
    let offered = b
        .driver
        .find_all(By::Css("#edit-route, #toggle-route"))
        .await
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    assert_eq!(
        offered, 0,
        "no Edit or Disable for a route the API will not change"
    );
    b.shot("route-excluded").await;
    let refused = api_write(&rd, "PUT", "/api/v1/routes/extra", &extra).await;
    assert_eq!(refused.status, 409, "{}", refused.describe());
    b.click("#delete-route").await;
    b.click("#confirm-delete").await;
    b.wait_gone(
        "tr[data-route=extra][data-source=api]",
        "the excluded route is deleted",
    )
    .await;
    // The row was never on the route's own page: wait for the delete itself, not its row.
    let deleted = wait_until(
        async || rd.admin_get("/api/v1/routes/extra?source=api").await.status == 404,
        Duration::from_secs(10),
    )
    .await;
    assert!(deleted, "the API route is gone");
    assert_eq!(
        rd.admin_get("/api/v1/routes/extra").await.json()["source"],
        "file",
        "the file's route stays"
    );
    b.assert_clean("route", &[]).await;

    b.driver.clone().quit().await.expect("quit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_with_a_strict_policy_and_other_sites_are_refused() {
    let rd = Routerd::start(&json!({"routes": []})).await;
    let page = rd.admin_get("/ui/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>routerd</title>"));
    let csp = page
        .header("content-security-policy")
        .expect("a CSP header");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let redirect = rd.admin_get("/ui").await;
    assert_eq!(redirect.status, 308);
    assert_eq!(redirect.header("location").as_deref(), Some("/ui/"));
    let etag = page.header("etag").expect("etag");
    let cached = rd
        .admin_request("GET", "/ui/app.js", &[("if-none-match", &etag)], "")
        .await;
    assert_eq!(cached.status, 304);
    assert_eq!(rd.admin_get("/ui/nope.js").await.status, 404);
    let licence = rd.admin_get("/ui/vendor/uPlot.LICENSE").await;
    assert!(licence.text().contains("MIT License"));

    // A page of another site posting to routerd through the user's browser: refused, and
    // nothing is made.
    let route = json!({"name": "planted", "target_url": "http://127.0.0.1:1",
                       "matchers": [{"condition": "path_prefix", "pattern": "/planted"}]})
    .to_string();
    let planted = rd
        .admin_request(
            "POST",
            "/api/v1/routes",
            &[
                ("origin", "http://evil.example"),
                ("content-type", "text/plain"),
            ],
            route.clone(),
        )
        .await;
    assert_eq!(planted.status, 403, "{}", planted.describe());
    assert_eq!(planted.json()["error"], "cross_origin");
    assert_eq!(rd.admin_get("/api/v1/routes/planted").await.status, 404);
    // A name rebound to 127.0.0.1 cannot even read.
    let rebound = rd
        .admin_request(
            "GET",
            "/api/v1/routes",
            &[("host", "evil.example:9090")],
            "",
        )
        .await;
    assert_eq!(rebound.status, 403, "{}", rebound.describe());
    assert_eq!(rebound.json()["error"], "host_not_allowed");
    // The dashboard's own origin may.
    let own = format!("http://{}", rd.admin_url().trim_start_matches("http://"));
    let made = rd
        .admin_request(
            "POST",
            "/api/v1/routes",
            &[
                ("origin", own.as_str()),
                ("content-type", "application/json"),
            ],
            route,
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.describe());
}
