//! Black-box tests of the admin API under concurrent work: real `routerd` processes on 127.0.0.1.
//! Health checks probe a shared backend once per round, a slow write holds up no read and no
//! request, plugin uploads race safely and read their settings as the watcher does, and an
//! unchanged listing is not sent again.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use admin_common::*;
use harness::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_probe_a_shared_backend_once_per_round() {
    // A bare listener that only counts connections: every one is a health probe.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let counting = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    let routes: Vec<Route> = (0..10)
        .map(|i| Route::proxy(&format!("shared-{i}"), &target).m(path(&format!("/s{i}"))))
        .collect();
    let rd = Routerd::start(&config(routes)).await;
    let first = wait_until(
        async || accepted.load(Ordering::SeqCst) > 0,
        Duration::from_secs(10),
    )
    .await;
    assert!(first, "no health probe reached the backend");
    let start = accepted.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let probes = accepted.load(Ordering::SeqCst) - start;
    // One-second rounds: two or three in the window, one probe each (ten routes share it).
    assert!(
        (1..=4).contains(&probes),
        "{probes} probes in 2.5 s for one backend shared by 10 routes"
    );
    let doc = assert_status(&rd.admin_get("/api/v1/health").await, 200, "GET health");
    let up = doc["routes"]
        .as_array()
        .map_or(0, |rs| rs.iter().filter(|r| r["status"] == "up").count());
    assert_eq!(up, 10, "every route sharing the backend is reported: {doc}");
    counting.abort();
}

/// A slow write (a plugin's `validate` sleeping 900 ms while a route is created) holds up
/// neither admin reads nor proxied requests: both are answered while the write is still
/// running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_write_holds_up_no_read_and_no_request() {
    let rd = Routerd::launch(&config(vec![Route::respond("fast").m(path("/fast"))]))
        .warm_cache()
        .plugin("bad-sleep")
        .start()
        .await;
    let admin = rd.admin;
    let slow = json!({
        "name": "slow",
        "matchers": [
            {"condition": "path", "pattern": "/slow"},
            {"condition": "plugin", "plugin": "bad-sleep", "args": ["900", "in-validate"]},
        ],
        "filters": [{"name": "respond", "args": ["200", "slow"]}],
    });
    let write = tokio::spawn(async move {
        request_to(
            admin,
            "POST",
            ROUTES,
            &[("content-type", "application/json")],
            slow.to_string(),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    for round in 0..3 {
        let listed = rd.admin_get(ROUTES).await;
        assert_eq!(listed.status, 200, "{}", listed.describe());
        let proxied = rd.get("/fast").await;
        assert_eq!(proxied.text(), "fast");
        assert!(
            !write.is_finished(),
            "round {round}: the write finished first, so this proves nothing (validate too fast?)"
        );
    }
    let created = write.await.unwrap().unwrap();
    assert_eq!(created.status, 201, "{}", created.describe());
    assert_eq!(rd.get("/slow").await.text(), "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_race_safely_and_read_settings_like_the_watcher() {
    let data = TempDir::new("uploads");
    let cfg = config(vec![Route::respond("fallback").m(path("/u"))]);
    let rd = Routerd::launch(&cfg)
        .warm_cache()
        .data_dir(data.path())
        .start()
        .await;
    let builds = [
        std::fs::read(dist_plugin("header-eq")).unwrap(),
        std::fs::read(dist_plugin("header-eq-copyall")).unwrap(),
    ];

    // Concurrent uploads of one name: all answered, and what is loaded is what is on disk.
    let mut uploads = Vec::new();
    for i in 0..6 {
        let (admin, bytes) = (rd.admin, builds[i % 2].clone());
        uploads.push(tokio::spawn(async move {
            request_to(
                admin,
                "POST",
                &format!("{PLUGINS}?name=raced"),
                &[("content-type", "application/wasm")],
                bytes,
            )
            .await
        }));
    }
    for u in uploads {
        let resp = u.await.unwrap().unwrap();
        assert_eq!(resp.status, 201, "{}", resp.describe());
    }
    let loaded = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/raced")).await,
        200,
        "GET raced",
    );
    let on_disk = std::fs::read(rd.plugins_dir().join("raced.wasm")).unwrap();
    assert_eq!(
        loaded["sha256"],
        sha256_hex(&on_disk),
        "the loaded plugin is not the file on disk"
    );
    let leftovers: Vec<String> = std::fs::read_dir(rd.plugins_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".upload"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );

    // A malformed NAME.json: the upload is refused as the watcher would refuse the file.
    std::fs::write(rd.plugins_dir().join("configured.json"), "{ not json").unwrap();
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=configured"),
            &[("content-type", "application/wasm")],
            builds[0].clone(),
        )
        .await;
    let message = assert_error(
        &resp,
        400,
        "invalid_plugin_settings",
        "upload with bad json",
    );
    assert!(
        message.contains("configured.json"),
        "the message names the file: {message}"
    );
    assert_eq!(
        rd.admin_get(&format!("{PLUGINS}/configured")).await.status,
        404
    );
    assert!(
        !rd.plugins_dir().join("configured.wasm").exists(),
        "a refused upload was written"
    );

    // A restart loads the same plugin that was served.
    let sha = loaded["sha256"].clone();
    let plugins = rd.plugins_dir().to_owned();
    let keep = TempDir::new("uploads-plugins");
    for entry in std::fs::read_dir(&plugins).unwrap().flatten() {
        std::fs::copy(entry.path(), keep.path().join(entry.file_name())).unwrap();
    }
    drop(rd);
    let rd = Routerd::launch(&cfg)
        .warm_cache()
        .plugins_dir(keep.path())
        .start()
        .await;
    let after = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/raced")).await,
        200,
        "GET raced after a restart",
    );
    assert_eq!(after["sha256"], sha);
}

/// A route listing carries an ETag: an unchanged table answers a repeated read with a bodiless
/// 304, and any change, or another question, gets a fresh answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_listing_is_not_sent_again() {
    let rd = Routerd::start(&config(vec![answer_route("file-one", "/one", "one")])).await;
    let first = rd.admin_get(ROUTES).await;
    assert_status(&first, 200, "list");
    let etag = first.header("etag").expect("an ETag");
    let again = rd
        .admin_request("GET", ROUTES, &[("if-none-match", &etag)], "")
        .await;
    assert_eq!(again.status, 304, "{}", again.describe());
    assert!(again.body.is_empty());
    assert_eq!(again.header("etag").as_deref(), Some(etag.as_str()));
    // Another page of the same table is another answer.
    let other = rd
        .admin_request(
            "GET",
            &format!("{ROUTES}?limit=1"),
            &[("if-none-match", &etag)],
            "",
        )
        .await;
    assert_eq!(other.status, 200, "{}", other.describe());
    // A change makes the old tag stale.
    create(&rd, &answer("api-two", "/two", "two")).await;
    let changed = rd
        .admin_request("GET", ROUTES, &[("if-none-match", &etag)], "")
        .await;
    assert_eq!(changed.status, 200, "{}", changed.describe());
    assert_ne!(changed.header("etag"), Some(etag));
    assert_eq!(changed.json()["total"], 2);
}
