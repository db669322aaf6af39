//! Black-box tests of trial plugin versions: a real `routerd` process, real plugins compiled from
//! `plugins/`. A shadow decides nothing and reports exactly where it disagrees with the live
//! version; promotion and discarding under load fail no request; a canary that traps is rolled
//! back by itself, with the reason logged.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use admin_common::*;
use harness::*;
use serde_json::Value;

/// `tier` answers `gold` when plugin `geo` (header-eq on x-tier: gold) matches; `rest`
/// answers `other` on the same path.
fn tier_config() -> Value {
    config(vec![
        Route::respond("gold")
            .m(path("/tier"))
            .m(plugin_pred("geo", &["x-tier", "gold"])),
        Route::respond("other").m(path("/tier")),
    ])
}

async fn start() -> Routerd {
    launch(&tier_config(), &[])
        .plugin_as("geo", "header-eq")
        .start()
        .await
}

async fn upload(rd: &Routerd, query: &str, plugin: &str) -> Resp {
    let bytes = std::fs::read(dist_plugin(plugin)).unwrap();
    rd.admin_request(
        "POST",
        &format!("{PLUGINS}?name=geo&{query}"),
        &[("content-type", "application/wasm")],
        bytes,
    )
    .await
}

async fn tier(rd: &Routerd, gold: bool) -> String {
    let headers: &[(&str, &str)] = if gold { &[("x-tier", "gold")] } else { &[] };
    let resp = rd.request("GET", "/tier", headers, "").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    resp.text()
}

async fn geo(rd: &Routerd) -> Value {
    assert_status(
        &rd.admin_get(&format!("{PLUGINS}/geo")).await,
        200,
        "GET geo",
    )
}

/// Waits until the trial's comparisons on route `gold` add up to `calls`.
async fn compared(rd: &Routerd, calls: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = geo(rd).await;
        let c = &doc["trial"]["routes"]["gold"];
        let seen = c["agreed"].as_u64().unwrap_or(0) + c["diverged"].as_u64().unwrap_or(0);
        if seen >= calls {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow compared {seen} of {calls}: {doc}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_reports_where_it_disagrees_and_decides_nothing() {
    let rd = start().await;
    // The new version matches everything: it disagrees exactly on requests without the header.
    let resp = upload(&rd, "shadow=true", "noop-predicate").await;
    let doc = assert_status(&resp, 201, "shadow upload");
    assert_eq!(doc["trial"]["mode"], "shadow", "{doc}");
    let live_sha = doc["sha256"].clone();

    for _ in 0..10 {
        assert_eq!(tier(&rd, true).await, "gold");
    }
    for _ in 0..6 {
        // The live version decides: without the header, `other`.
        assert_eq!(tier(&rd, false).await, "other");
    }
    let doc = compared(&rd, 16).await;
    let c = &doc["trial"]["routes"]["gold"];
    assert_eq!(c["agreed"], 10, "{doc}");
    assert_eq!(c["diverged"], 6, "{doc}");
    assert_eq!(c["trial_failed"], 0, "{doc}");
    let example = &c["examples"][0];
    assert_eq!(
        (&example["path"], &example["live"], &example["trial"]),
        (
            &Value::from("/tier"),
            &Value::from("false"),
            &Value::from("true")
        ),
        "{doc}"
    );
    assert_eq!(
        doc["sha256"], live_sha,
        "the shadow replaced the live version"
    );
    assert_eq!(doc["trial"]["dropped"], 0, "{doc}");
    let metrics = rd.admin_get("/metrics").await.text();
    for series in [
        "routerd_plugin_trial_comparisons_total{plugin=\"geo\",result=\"agreed\"} 10",
        "routerd_plugin_trial_comparisons_total{plugin=\"geo\",result=\"diverged\"} 6",
        "routerd_plugin_trial_traps_total{plugin=\"geo\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} not in:\n{metrics}");
    }

    // Promotion under load: no request fails, and the new version decides afterwards.
    let rd = Arc::new(rd);
    let mut load = Vec::new();
    for t in 0..4 {
        let rd = rd.clone();
        load.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in 0..50 {
                let gold = (i + t) % 2 == 0;
                let headers: &[(&str, &str)] = if gold { &[("x-tier", "gold")] } else { &[] };
                let resp = rd.request("GET", "/tier", headers, "").await;
                if resp.status != 200 {
                    failed.push(resp.describe());
                }
            }
            failed
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let promoted = rd
        .admin_request("POST", &format!("{PLUGINS}/geo/promote"), &[], "")
        .await;
    let doc = assert_status(&promoted, 200, "promote");
    for task in load {
        let failed = task.await.unwrap();
        assert!(
            failed.is_empty(),
            "requests failed during promotion: {failed:?}"
        );
    }
    assert_ne!(doc["sha256"], live_sha, "{doc}");
    assert_eq!(doc["trial"], Value::Null, "{doc}");
    assert_eq!(
        tier(&rd, false).await,
        "gold",
        "the promoted version decides"
    );
    let on_disk = std::fs::read(rd.plugins_dir().join("geo.wasm")).unwrap();
    assert_eq!(
        on_disk,
        std::fs::read(dist_plugin("noop-predicate")).unwrap()
    );

    // A shadow discarded under load: no request fails; it is gone, and a second discard says
    // there is none.
    assert_status(
        &upload(&rd, "shadow=true", "header-eq").await,
        201,
        "shadow",
    );
    let mut load = Vec::new();
    for _ in 0..4 {
        let rd = rd.clone();
        load.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for _ in 0..50 {
                // 200 either way: a live call past its deadline on a loaded machine is
                // answered by the failure policy (`other`), which is not a failed request.
                let resp = rd.request("GET", "/tier", &[], "").await;
                if resp.status != 200 {
                    failed.push(resp.describe());
                }
            }
            failed
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let resp = rd
        .admin_request("POST", &format!("{PLUGINS}/geo/discard"), &[], "")
        .await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    for task in load {
        let failed = task.await.unwrap();
        assert!(
            failed.is_empty(),
            "requests failed during the discard: {failed:?}"
        );
    }
    assert_eq!(geo(&rd).await["trial"], Value::Null);
    let resp = rd
        .admin_request("POST", &format!("{PLUGINS}/geo/discard"), &[], "")
        .await;
    assert_error(&resp, 404, "trial_not_found", "a second discard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_canary_is_rolled_back_by_itself() {
    let rd = start().await;
    let resp = upload(&rd, "canary=50%25", "bad-recursion").await;
    let doc = assert_status(&resp, 201, "canary upload");
    assert_eq!(doc["trial"]["mode"], "canary 50%", "{doc}");

    // Half the calls go to a version that traps: no request fails (the route's failure
    // policy answers for it), and past 20 canary calls it is rolled back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        for _ in 0..10 {
            tier(&rd, true).await;
        }
        let doc = geo(&rd).await;
        if let Some(why) = doc["trial"]["rolled_back"].as_str() {
            assert!(
                doc["trial"]["trial_failures"].as_u64().unwrap() >= 20,
                "{doc}"
            );
            // Its breaker opens after 5 traps; the calls it refuses count against it too.
            assert!(doc["trial"]["traps"].as_u64().unwrap() >= 5, "{doc}");
            assert_eq!(doc["traps"], 0, "the live version's counters: {doc}");
            break why.to_owned();
        }
        assert!(Instant::now() < deadline, "never rolled back: {doc}");
    };
    assert!(reason.contains("failure rate 100.0%"), "{reason}");
    let metrics = rd.admin_get("/metrics").await.text();
    assert!(
        metrics.contains("routerd_plugin_trial_rolled_back{plugin=\"geo\"} 1"),
        "{metrics}"
    );
    rd.wait_for_log(0, Duration::from_secs(5), |l| {
        l.contains("canary rolled back")
    })
    .await
    .expect("the rollback is logged");
    let calls = geo(&rd).await["trial"]["trial_calls"].as_u64().unwrap();
    for _ in 0..20 {
        assert_eq!(
            tier(&rd, true).await,
            "gold",
            "a call went to the rolled-back canary"
        );
    }
    assert_eq!(geo(&rd).await["trial"]["trial_calls"], calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_uploads_are_checked() {
    let rd = start().await;
    let bytes = std::fs::read(dist_plugin("noop-predicate")).unwrap();
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=nobody&shadow=true"),
            &[("content-type", "application/wasm")],
            bytes,
        )
        .await;
    assert_error(&resp, 404, "plugin_not_found", "a shadow of no plugin");
    let resp = upload(&rd, "shadow=true", "add-headers").await;
    let message = assert_error(
        &resp,
        400,
        "invalid_plugin",
        "a filter shadowing a predicate",
    );
    assert!(message.contains("same kind"), "{message}");
    for (query, needle) in [
        ("canary=0", "not a percentage"),
        ("canary=5%25&shadow=true", "exclude each other"),
        ("canary=5&sticky=cookie", "none of client"),
        ("sticky=client", "goes with canary"),
        ("budget=5", "goes with shadow"),
        ("shadow=true&budget=0", "not a percentage"),
    ] {
        let resp = upload(&rd, query, "noop-predicate").await;
        let message = assert_error(&resp, 400, "invalid_body", query);
        assert!(message.contains(needle), "{query}: {message}");
    }
    assert_eq!(geo(&rd).await["trial"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_dry_runs_report_the_requests_a_new_version_or_an_unload_would_move() {
    let rd = launch(&tier_config(), &[])
        .plugin_as("geo", "header-eq")
        .arg("--sample-every")
        .arg("1")
        .start()
        .await;
    for gold in [true, true, true, false, false] {
        tier(&rd, gold).await;
    }
    let moves = |doc: &Value| -> Vec<(String, String, u64)> {
        doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["from"]["route"].as_str().unwrap().to_owned(),
                    g["to"]["route"].as_str().unwrap().to_owned(),
                    g["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };

    // Replays call replicas: the live version's counters do not move.
    let calls_before = geo(&rd).await["calls"].clone();

    // Unloading geo would exclude `gold`: its three requests would go to `other`.
    let resp = rd
        .admin_request("DELETE", &format!("{PLUGINS}/geo?dry_run=true"), &[], "")
        .await;
    let doc = assert_status(&resp, 200, "unload dry run");
    assert_eq!(moves(&doc), [("gold".into(), "other".into(), 3)], "{doc}");
    assert_eq!(doc["change"]["updated"], serde_json::json!(["gold"]));

    // A version that matches everything would take the two others.
    let resp = upload(&rd, "dry_run=true", "noop-predicate").await;
    let doc = assert_status(&resp, 200, "upload dry run");
    assert_eq!(moves(&doc), [("other".into(), "gold".into(), 2)], "{doc}");

    // Nothing changed: the live version is the same, was not called, and still decides.
    let live = geo(&rd).await;
    assert_eq!(
        live["calls"], calls_before,
        "the replay called the live version"
    );
    assert_eq!(
        live["sha256"].as_str().unwrap(),
        sha256_hex(&std::fs::read(dist_plugin("header-eq")).unwrap())
    );
    assert_eq!(tier(&rd, false).await, "other");
    let resp = upload(&rd, "dry_run=true&shadow=true", "noop-predicate").await;
    assert_error(&resp, 400, "invalid_body", "a dry run with a shadow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_canary_keeps_each_client_on_one_version() {
    let rd = start().await;
    // The canary matches everything (`gold` without the header); the live version does not.
    let resp = upload(&rd, "canary=50&sticky=header:x-user", "noop-predicate").await;
    assert_status(&resp, 201, "sticky canary");
    let mut on_canary = 0;
    for user in 0..20 {
        let id = format!("u{user}");
        let mut answers = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let resp = rd.request("GET", "/tier", &[("x-user", &id)], "").await;
            answers.insert(resp.text());
        }
        assert_eq!(answers.len(), 1, "user {id} saw both versions: {answers:?}");
        on_canary += usize::from(answers.contains("gold"));
    }
    // 20 users at 50%: both versions serve someone (all on one side: 2 in a million).
    assert!(
        (1..20).contains(&on_canary),
        "{on_canary} of 20 users on the canary"
    );
    let doc = geo(&rd).await;
    assert_eq!(doc["trial"]["trial_calls"], on_canary as u64 * 5, "{doc}");
    assert_eq!(doc["trial"]["rolled_back"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_s_shadow_compares_its_edits_in_both_phases() {
    let cfg = config(vec![
        Route::respond("tagged")
            .m(path("/tagged"))
            .plugin_filter("tag", &["req:x-seen", "1", "resp:x-v", "1"]),
    ]);
    let rd = launch(&cfg, &[])
        .plugin_as("tag", "add-headers")
        .start()
        .await;
    let bytes = std::fs::read(dist_plugin("add-headers")).unwrap();
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=tag&shadow=true"),
            &[("content-type", "application/wasm")],
            bytes,
        )
        .await;
    assert_status(&resp, 201, "a filter's shadow");
    for _ in 0..5 {
        let resp = rd.get("/tagged").await;
        assert_eq!(resp.headers["x-v"], "1", "{}", resp.describe());
    }
    // The same build: every request-phase action and response-phase edit agrees.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = assert_status(&rd.admin_get(&format!("{PLUGINS}/tag")).await, 200, "tag");
        let c = &doc["trial"]["routes"]["tagged"];
        if c["agreed"] == 10 {
            assert_eq!(c["diverged"], 0, "{doc}");
            break;
        }
        assert!(Instant::now() < deadline, "not both phases compared: {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
