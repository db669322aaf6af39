//! Black-box tests of what the admin API keeps: acknowledged changes across `kill -9`, config
//! reloads and restarts, and one name space for file and API routes, in which what is served
//! always equals what a restart would load. Real `routerd` processes on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod admin_common;
mod harness;

use std::collections::BTreeMap;

use admin_common::*;
use harness::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Persistence
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_changes_survive_kill_9() {
    let data = TempDir::new("persist");
    let cfg = config(vec![Route::respond("file-route").m(path("/file"))]);
    let mut rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;

    create(&rd, &answer("kept", "/kept", "kept")).await;
    create(&rd, &answer("changed", "/changed", "v1")).await;
    create(&rd, &answer("removed", "/removed", "removed")).await;
    create(&rd, &answer("moved-from", "/moved", "moved")).await;
    update(&rd, "changed", &answer("changed", "/changed", "v2")).await;
    let resp = rd.admin_json("DELETE", &route_url("removed"), None).await;
    assert_eq!(resp.status, 204, "{}", resp.describe());
    update(&rd, "moved-from", &answer("moved-to", "/moved", "moved")).await;
    let mut disabled = answer("disabled", "/disabled", "disabled");
    disabled["enabled"] = json!(false);
    create(&rd, &disabled).await;
    // A burst right before the kill: each acknowledged write must be on disk.
    for i in 0..20 {
        create(
            &rd,
            &answer(&format!("burst-{i}"), &format!("/burst/{i}"), "b"),
        )
        .await;
    }
    let before = all_routes(&rd).await;
    let status = rd.kill9();
    assert!(!status.success(), "SIGKILL must not look like a clean exit");
    assert!(
        data.path().join("routes.redb").is_file(),
        "no routes.redb in the data directory"
    );

    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    let after = all_routes(&rd).await;
    let by_name = |routes: &[Value]| -> BTreeMap<String, Value> {
        routes
            .iter()
            .map(|r| (r["name"].as_str().unwrap().to_owned(), r.clone()))
            .collect()
    };
    let (before, after) = (by_name(&before), by_name(&after));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the route names differ after the restart"
    );
    // File routes are read from the file again; API routes come back exactly as they were.
    for (name, route) in before.iter().filter(|(_, r)| r["source"] == "api") {
        let restored = &after[name];
        for key in [
            "matchers", "filters", "source", "status", "enabled", "version",
        ] {
            assert_eq!(
                route.get(key),
                restored.get(key),
                "route {name}: {key} differs after the restart"
            );
        }
    }
    assert!(!after.contains_key("removed") && !after.contains_key("moved-from"));

    for (p, expected) in [
        ("/file", Some("file-route")),
        ("/kept", Some("kept")),
        ("/changed", Some("v2")),
        ("/removed", None),
        ("/moved", Some("moved")),
        ("/disabled", None),
        ("/burst/19", Some("b")),
    ] {
        let (status, body) = traffic(&rd, p).await;
        match expected {
            Some(text) => assert_eq!((status, body.as_str()), (200, text), "GET {p}"),
            None => assert_eq!(status, 404, "GET {p}: {body}"),
        }
    }
    assert_eq!(after["disabled"]["status"], "disabled");

    // Versions keep increasing after the restart: a new write never reuses an old version.
    let max_before = before
        .values()
        .filter(|r| r["source"] == "api")
        .filter_map(|r| r["version"].as_u64())
        .max()
        .unwrap();
    let fresh = create(&rd, &answer("after-restart", "/after", "after")).await;
    assert!(
        fresh["version"].as_u64().unwrap() > max_before,
        "version {} reused after the restart (had {max_before})",
        fresh["version"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_keeps_api_routes() {
    let rd = Routerd::start(&config(vec![answer_route("file-a", "/file-a", "a1")])).await;
    create(&rd, &answer("api-route", "/api-route", "api")).await;

    rd.write_config(&config(vec![
        answer_route("file-a", "/file-a", "a2"),
        answer_route("file-b", "/file-b", "b"),
    ]));
    let reloaded = wait_until(
        async || traffic(&rd, "/file-b").await == (200, "b".to_owned()),
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(reloaded, "the config change never applied");
    assert_eq!(traffic(&rd, "/file-a").await, (200, "a2".to_owned()));
    assert_eq!(traffic(&rd, "/api-route").await, (200, "api".to_owned()));
    let routes = all_routes(&rd).await;
    let source = |name: &str| {
        routes
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["source"].as_str().unwrap_or_default().to_owned())
    };
    assert_eq!(source("api-route").as_deref(), Some("api"));
    assert_eq!(source("file-a").as_deref(), Some("file"));
    assert_eq!(source("file-b").as_deref(), Some("file"));

    // A file route dropped from the file goes; the API route stays, and stays writable.
    rd.write_config(&config(vec![answer_route("file-b", "/file-b", "b")]));
    let dropped = wait_until(
        async || traffic(&rd, "/file-a").await.0 == 404,
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(dropped, "file-a still serves after it left the file");
    update(&rd, "api-route", &answer("api-route", "/api-route", "api2")).await;
    assert_eq!(traffic(&rd, "/api-route").await, (200, "api2".to_owned()));
    assert_error(
        &rd.admin_json("DELETE", &route_url("file-b"), None).await,
        409,
        "read_only_route",
        "DELETE file-b after the reload",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_plugins_and_their_routes_survive_a_restart() {
    let dir = TempDir::new("plugin-restart");
    let (plugins, data) = (dir.path().join("plugins"), dir.path().join("data"));
    let cfg = config(vec![Route::respond("fallback").m(path("/sel"))]);
    let launch = || {
        Routerd::launch(&cfg)
            .plugins_dir(&plugins)
            .data_dir(&data)
            .warm_cache()
    };
    let mut rd = launch().start().await;
    let wasm = std::fs::read(dist_plugin("header-eq")).unwrap();
    let resp = rd
        .admin_request(
            "POST",
            &format!("{PLUGINS}?name=sel"),
            &[("content-type", "application/wasm")],
            wasm.clone(),
        )
        .await;
    assert_status(&resp, 201, "upload sel");
    create(
        &rd,
        &json!({
            "name": "selected",
            "priority": 10,
            "matchers": [{"condition": "path", "pattern": "/sel"},
                         {"condition": "plugin", "plugin": "sel", "args": ["x-sel", "yes"]}],
            "filters": [{"name": "respond", "args": ["200", "selected"]}],
        }),
    )
    .await;
    rd.kill9();

    let rd = launch().start().await;
    let info = assert_status(
        &rd.admin_get(&format!("{PLUGINS}/sel")).await,
        200,
        "GET sel",
    );
    assert_eq!(info["sha256"], sha256_hex(&wasm));
    let route = assert_status(&get_route(&rd, "selected").await, 200, "GET selected");
    assert_stored(&route, "selected", "api", "active");
    let yes = rd.request("GET", "/sel", &[("x-sel", "yes")], "").await;
    assert_eq!(yes.text(), "selected");
    assert_eq!(traffic(&rd, "/sel").await, (200, "fallback".to_owned()));
}

// ---------------------------------------------------------------------------------------------
// One name space: what is served equals what a restart loads
// ---------------------------------------------------------------------------------------------

/// The routes as listed, keyed by (name, source), without the fields a restart renumbers for
/// file routes.
async fn listing(rd: &Routerd) -> BTreeMap<(String, String), Value> {
    all_routes(rd)
        .await
        .into_iter()
        .map(|mut r| {
            let key = (
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["source"].as_str().unwrap_or_default().to_owned(),
            );
            if key.1 == "file" {
                r.as_object_mut().map(|o| o.remove("version"));
            }
            (key, r)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_route_taking_an_api_name_shadows_it_everywhere() {
    let data = TempDir::new("shadow");
    let before = config(vec![answer_route("file-a", "/file-a", "a")]);
    let rd = Routerd::launch(&before).data_dir(data.path()).start().await;
    create(&rd, &answer("b", "/api-b", "api b")).await;

    let after = config(vec![
        answer_route("file-a", "/file-a", "a"),
        answer_route("b", "/file-b", "file b"),
    ]);
    rd.write_config(&after);
    let reloaded = wait_until(
        async || traffic(&rd, "/file-b").await == (200, "file b".to_owned()),
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(reloaded, "the file route b never served");
    assert_eq!(
        traffic(&rd, "/api-b").await.0,
        404,
        "the shadowed route serves"
    );
    let listed = listing(&rd).await;
    let file_b = &listed[&("b".to_owned(), "file".to_owned())];
    let api_b = &listed[&("b".to_owned(), "api".to_owned())];
    assert_eq!(file_b["status"], "active", "{file_b}");
    assert_eq!(api_b["status"], "excluded", "{api_b}");
    assert!(
        api_b["reason"]
            .as_str()
            .is_some_and(|r| r.contains("config file")),
        "the reason must say the file took the name: {api_b}"
    );
    assert_eq!(get_route(&rd, "b").await.json()["source"], "file");

    // Unrelated writes keep working; writes to the name are refused with a reason.
    create(&rd, &answer("c", "/c", "c")).await;
    assert_error(
        &rd.admin_json("POST", ROUTES, Some(&answer("b", "/b2", "x")))
            .await,
        409,
        "route_conflict",
        "POST b while the file has b",
    );
    assert_error(
        &rd.admin_json("PUT", &route_url("b"), Some(&answer("b", "/b2", "x")))
            .await,
        409,
        "read_only_route",
        "PUT b while the file has b",
    );

    // A restart loads exactly that state.
    let served = listing(&rd).await;
    drop(rd);
    let rd = Routerd::launch(&after).data_dir(data.path()).start().await;
    assert_eq!(
        listing(&rd).await,
        served,
        "the listing differs after a restart"
    );
    assert_eq!(traffic(&rd, "/file-b").await, (200, "file b".to_owned()));
    assert_eq!(traffic(&rd, "/api-b").await.0, 404);
    assert_eq!(traffic(&rd, "/c").await, (200, "c".to_owned()));

    // The file drops the name: the API route serves again.
    rd.write_config(&before);
    let back = wait_until(
        async || traffic(&rd, "/api-b").await == (200, "api b".to_owned()),
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(back, "the API route b never came back");
    assert_eq!(get_route(&rd, "b").await.json()["status"], "active");

    // And a shadowed API route can be deleted.
    rd.write_config(&after);
    let shadowed = wait_until(
        async || traffic(&rd, "/file-b").await.0 == 200,
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(shadowed, "the file route b never served again");
    let resp = rd.admin_json("DELETE", &route_url("b"), None).await;
    assert_eq!(resp.status, 204, "DELETE shadowed b: {}", resp.describe());
    let listed = listing(&rd).await;
    assert!(
        !listed.contains_key(&("b".to_owned(), "api".to_owned())),
        "the shadowed route is still listed after DELETE"
    );
    assert!(listed.contains_key(&("b".to_owned(), "file".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_a_document_that_names_a_route_twice() {
    let data = TempDir::new("apply-dup");
    let cfg = config(vec![]);
    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    create(&rd, &answer("x", "/one", "one")).await;
    let doc = json!({"routes": [answer("x", "/two", "two"), answer("x", "/one", "one")]});
    let message = assert_error(
        &rd.admin_json("POST", &format!("{ROUTES}/apply"), Some(&doc))
            .await,
        409,
        "route_conflict",
        "apply [x, x]",
    );
    assert!(message.contains("\"x\""), "the message names x: {message}");
    assert_eq!(traffic(&rd, "/one").await, (200, "one".to_owned()));
    assert_eq!(traffic(&rd, "/two").await.0, 404);
    drop(rd);
    let rd = Routerd::launch(&cfg).data_dir(data.path()).start().await;
    assert_eq!(traffic(&rd, "/one").await, (200, "one".to_owned()));
    assert_eq!(traffic(&rd, "/two").await.0, 404);
}

/// A small deterministic generator (the test's seed is printed on failure).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_sequence_of_writes_serves_what_a_restart_loads() {
    const NAMES: u64 = 6;
    let seed = 0x5eed_2026;
    let mut rng = Lcg(seed);
    let data = TempDir::new("sequence");
    let files = [
        config(vec![answer_route("f", "/f", "f")]),
        // Takes API names r0 and r1 when it is the file.
        config(vec![
            answer_route("f", "/f", "f2"),
            answer_route("r0", "/file-r0", "file r0"),
            answer_route("r1", "/file-r1", "file r1"),
        ]),
    ];
    let mut file = 0;
    let mut rd = Routerd::launch(&files[file])
        .data_dir(data.path())
        .start()
        .await;
    let probe_paths: Vec<String> = (0..NAMES)
        .map(|i| format!("/p{i}"))
        .chain(["/f", "/file-r0", "/file-r1"].map(String::from))
        .collect();
    let mut log = Vec::new();
    for round in 0..4 {
        for _ in 0..25 {
            let name = format!("r{}", rng.below(NAMES));
            let p = format!("/p{}", rng.below(NAMES));
            let body = format!("b{}", rng.below(1000));
            let (method, url, doc) = match rng.below(6) {
                0 | 1 => ("POST", ROUTES.to_owned(), Some(answer(&name, &p, &body))),
                2 => {
                    let to = format!("r{}", rng.below(NAMES));
                    ("PUT", route_url(&name), Some(answer(&to, &p, &body)))
                }
                3 => ("DELETE", route_url(&name), None),
                4 => {
                    let routes: Vec<Value> = (0..rng.below(4))
                        .map(|_| {
                            answer(
                                &format!("r{}", rng.below(NAMES)),
                                &format!("/p{}", rng.below(NAMES)),
                                &format!("a{}", rng.below(1000)),
                            )
                        })
                        .collect();
                    (
                        "POST",
                        format!("{ROUTES}/apply"),
                        Some(json!({ "routes": routes })),
                    )
                }
                _ => (
                    "POST",
                    ROUTES.to_owned(),
                    Some(answer(&name, "no-slash", &body)),
                ),
            };
            let resp = rd.admin_json(method, &url, doc.as_ref()).await;
            assert!(
                resp.status < 500,
                "seed {seed:#x}: {method} {url} answered {}",
                resp.describe()
            );
            log.push(format!("{method} {url} -> {}", resp.status));
        }
        if round == 1 {
            file = 1;
            rd.write_config(&files[file]);
            let applied = wait_until(
                async || traffic(&rd, "/f").await == (200, "f2".to_owned()),
                RELOAD_TIMEOUT,
            )
            .await;
            assert!(applied, "the config change never applied");
        }
        let served = listing(&rd).await;
        let mut answers = Vec::new();
        for p in &probe_paths {
            answers.push((p.clone(), traffic(&rd, p).await));
        }
        if round % 2 == 0 {
            drop(rd);
        } else {
            rd.kill9();
        }
        rd = Routerd::launch(&files[file])
            .data_dir(data.path())
            .start()
            .await;
        let context = || format!("seed {seed:#x}, round {round}, after:\n{}", log.join("\n"));
        assert_eq!(
            listing(&rd).await,
            served,
            "the listing differs after a restart; {}",
            context()
        );
        for (p, before) in &answers {
            assert_eq!(
                &traffic(&rd, p).await,
                before,
                "GET {p} differs after a restart; {}",
                context()
            );
        }
    }
}
