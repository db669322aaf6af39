//! Black-box tests of scale-out through etcd (`--store etcd://...`): real `etcd` processes
//! (Debian's `etcd-server`, which `tests/run.sh` installs) on loopback ports in temp dirs, and
//! three real `routerd` instances sharing them. Covers a route made on one instance served by
//! all, a plugin uploaded on one loaded by all with the same SHA-256 (a 20 MiB one too, so
//! etcd's request limit is crossed), `If-Match` races across instances, etcd going away (every
//! instance keeps serving, writes get 503, a restart serves its last state, and changes
//! converge once etcd is back), and a three-member etcd cluster losing a member.
#![allow(clippy::unwrap_used)]

mod browser;
mod cluster_common;
mod harness;

use std::process::Command;
use std::time::Duration;

use cluster_common::*;
use harness::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_made_on_one_instance_is_served_by_every_instance() {
    let etcd = Etcd::cluster(1).await;
    let store = store_url(&[&etcd[0]], "t-routes");
    let rds = three(&store).await;
    let (a, b, c) = (&rds[0], &rds[1], &rds[2]);

    let created = made_everywhere(a, &rds, "shared", "one").await;
    let version = created.json()["version"].as_u64().unwrap();
    // Every instance lists it with the same version (the etcd revision that wrote it).
    for rd in &rds {
        let got = rd.admin_get(&format!("{ROUTES}/shared")).await;
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.json()["version"], version);
        assert_eq!(got.json()["source"], "api");
    }

    // Changed on C (with the version A handed out), then deleted on B.
    let updated = c
        .admin_request(
            "PUT",
            &format!("{ROUTES}/shared"),
            &[("if-match", &version.to_string())],
            respond_route("shared", "two").to_string(),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    for rd in &rds {
        served(rd, "/shared", "two").await;
    }
    // apply is one transaction: two routes appear together.
    let applied = b
        .admin_json(
            "POST",
            &format!("{ROUTES}/apply"),
            Some(&json!({"routes": [respond_route("shared", "two"), respond_route("more", "m")]})),
        )
        .await;
    assert_eq!(applied.status, 200, "{}", applied.text());
    for rd in &rds {
        served(rd, "/more", "m").await;
    }
    let deleted = b
        .admin_json("DELETE", &format!("{ROUTES}/shared"), None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    for rd in &rds {
        not_served(rd, "/shared").await;
    }

    // The cluster listing: every live instance, from any of them, and through routerctl.
    let listed = wait_until(
        async || {
            let doc = c.admin_get("/api/v1/cluster").await.json();
            let ids: Vec<&str> = doc["instances"]
                .as_array()
                .map(|v| v.iter().filter_map(|i| i["id"].as_str()).collect())
                .unwrap_or_default();
            ids == ["a", "b", "c"]
        },
        CONVERGE,
    )
    .await;
    assert!(listed, "{}", c.admin_get("/api/v1/cluster").await.text());
    let out = Command::new(routerctl_bin())
        .args(["--admin", &a.admin_url(), "cluster"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("store: {store}")), "{text}");
    for id in ["a", "b", "c"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{id} "))),
            "{text}"
        );
    }
    // Every instance serves the same store revision once the listing settles.
    let same = wait_until(
        async || {
            let doc = a.admin_get("/api/v1/cluster").await.json();
            let revs: Vec<u64> = doc["instances"]
                .as_array()
                .map(|v| v.iter().filter_map(|i| i["revision"].as_u64()).collect())
                .unwrap_or_default();
            revs.len() == 3 && revs.windows(2).all(|w| w[0] == w[1])
        },
        CONVERGE,
    )
    .await;
    assert!(same, "{}", a.admin_get("/api/v1/cluster").await.text());
}

/// `bytes` (a component) with a custom section of `extra` bytes appended: still the same
/// component to the engine, but a different, bigger file.
fn with_custom_section(bytes: &[u8], extra: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut payload = Vec::with_capacity(extra + 16);
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend(pseudo_random_bytes(extra, 7));
    let mut out = bytes.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_uploaded_on_one_instance_is_loaded_by_every_instance() {
    let etcd = Etcd::cluster(1).await;
    let store = store_url(&[&etcd[0]], "t-plugins");
    let rds = three(&store).await;
    let (a, b, c) = (&rds[0], &rds[1], &rds[2]);

    // 20 MiB: many times etcd's 1.5 MiB request limit.
    let bytes = with_custom_section(&std::fs::read(dist_plugin("header-eq")).unwrap(), 20 << 20);
    let sha = sha256_hex(&bytes);
    let uploaded = b
        .admin_request("POST", "/api/v1/plugins?name=gate", &[], bytes.clone())
        .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    assert_eq!(uploaded.json()["sha256"], sha.as_str());

    for rd in &rds {
        let loaded = wait_until(
            async || {
                let got = rd.admin_get("/api/v1/plugins/gate").await;
                got.status == 200 && got.json()["sha256"] == sha.as_str()
            },
            Duration::from_secs(60),
        )
        .await;
        assert!(loaded, "plugin not loaded; logs:\n{}", rd.logs().join("\n"));
        // The plugins directory holds the same bytes, so a restart loads the same plugin.
        let file = std::fs::read(rd.plugins_dir().join("gate.wasm")).unwrap();
        assert_eq!(sha256_hex(&file), sha);
    }
    // A route on another instance may use it once that instance has it.
    let route = json!({
        "name": "gated",
        "matchers": [prefix("/gated"), plugin_pred("gate", &["x-team", "blue"])],
        "filters": [{"name": "respond", "args": ["200", "blue", "text/plain"]}],
    });
    let created = a.admin_json("POST", ROUTES, Some(&route)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    for rd in &rds {
        let ok = wait_until(
            async || {
                rd.try_request("GET", "/gated", &[("x-team", "blue")], "")
                    .await
                    .is_ok_and(|r| r.status == 200 && r.text() == "blue")
            },
            CONVERGE,
        )
        .await;
        assert!(
            ok,
            "the plugin route does not serve; logs:\n{}",
            rd.logs().join("\n")
        );
        let other = rd.request("GET", "/gated", &[("x-team", "red")], "").await;
        assert_eq!(other.status, 404, "{}", other.text());
    }

    // A new version uploaded on A replaces it everywhere, and the old version's chunks leave
    // etcd: only the bytes a manifest points at stay stored.
    let newer = with_custom_section(&std::fs::read(dist_plugin("header-eq")).unwrap(), 3 << 20);
    let newer_sha = sha256_hex(&newer);
    let uploaded = a
        .admin_request("POST", "/api/v1/plugins?name=gate", &[], newer)
        .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.text());
    for rd in &rds {
        let loaded = wait_until(
            async || {
                rd.admin_get("/api/v1/plugins/gate").await.json()["sha256"] == newer_sha.as_str()
            },
            Duration::from_secs(60),
        )
        .await;
        assert!(
            loaded,
            "new version not loaded; logs:\n{}",
            rd.logs().join("\n")
        );
    }
    let blobs = stored_keys(&etcd[0], "/t-plugins/plugins/blobs/").await;
    assert!(!blobs.is_empty());
    assert!(
        blobs.iter().all(|k| k.contains(&newer_sha)),
        "old chunks left behind: {blobs:?}"
    );

    // Unloaded on C: gone everywhere, and the route using it is excluded everywhere.
    let removed = c
        .admin_json("DELETE", "/api/v1/plugins/gate?force=true", None)
        .await;
    assert_eq!(removed.status, 204, "{}", removed.text());
    for rd in &rds {
        let gone = wait_until(
            async || rd.admin_get("/api/v1/plugins/gate").await.status == 404,
            CONVERGE,
        )
        .await;
        assert!(gone, "plugin still loaded; logs:\n{}", rd.logs().join("\n"));
        not_served(rd, "/gated").await;
        assert!(!rd.plugins_dir().join("gate.wasm").exists());
        let listed = rd.admin_get(&format!("{ROUTES}/gated")).await.json();
        assert_eq!(listed["status"], "excluded", "{listed}");
    }
    let blobs = stored_keys(&etcd[0], "/t-plugins/plugins/blobs/").await;
    assert!(
        blobs.is_empty(),
        "chunks of an unloaded plugin left behind: {blobs:?}"
    );
}

/// The keys under `prefix`, read from etcd directly.
async fn stored_keys(member: &Etcd, prefix: &str) -> Vec<String> {
    let url = format!("http://127.0.0.1:{}", member.client);
    let mut client = routerd::store::etcd::client::Client::connect([url], None)
        .await
        .unwrap();
    let options = routerd::store::etcd::client::GetOptions::new()
        .with_prefix()
        .with_keys_only();
    let resp = client.get(prefix, Some(options)).await.unwrap();
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_writes_racing_on_two_instances_have_exactly_one_winner() {
    let etcd = Etcd::cluster(1).await;
    let store = store_url(&[&etcd[0]], "t-race");
    let a = instance(&store, "a", None).await;
    let b = instance(&store, "b", None).await;
    let created = a
        .admin_json("POST", ROUTES, Some(&respond_route("contended", "0")))
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let mut version = created.json()["version"].as_u64().unwrap();
    for round in 1..=5 {
        // Both instances have seen the current version before they race.
        let seen = wait_until(
            async || b.admin_get(&format!("{ROUTES}/contended")).await.json()["version"] == version,
            CONVERGE,
        )
        .await;
        assert!(seen, "round {round}: b never saw version {version}");
        let put = |rd: &Routerd, body: String| {
            let path = format!("{ROUTES}/contended");
            let tag = version.to_string();
            let addr = rd.admin;
            async move {
                request_to(
                    addr,
                    "PUT",
                    &path,
                    &[("if-match", &tag)],
                    respond_route("contended", &body).to_string(),
                )
                .await
                .unwrap()
            }
        };
        let (ra, rb) = tokio::join!(put(&a, format!("a{round}")), put(&b, format!("b{round}")));
        let statuses = [ra.status, rb.status];
        assert!(
            statuses == [200, 412] || statuses == [412, 200],
            "round {round}: {} / {}",
            ra.text(),
            rb.text()
        );
        let (winner, loser) = if ra.status == 200 { (ra, rb) } else { (rb, ra) };
        assert_eq!(
            loser.json()["error"],
            "version_mismatch",
            "{}",
            loser.text()
        );
        version = winner.json()["version"].as_u64().unwrap();
        let body = winner.json()["filters"][0]["args"][1]
            .as_str()
            .unwrap()
            .to_owned();
        served(&a, "/contended", &body).await;
        served(&b, "/contended", &body).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_going_away_keeps_every_instance_serving_and_changes_converge_on_its_return() {
    let mut etcd = Etcd::cluster(1).await;
    let store = store_url(&[&etcd[0]], "t-outage");
    let c_data = TempDir::new("c-data");
    let c_plugins = TempDir::new("c-plugins");
    let a = instance(&store, "a", None).await;
    let b = instance(&store, "b", None).await;
    let c = instance(&store, "c", Some((c_data.path(), c_plugins.path()))).await;
    made_everywhere(&a, [&a, &b, &c], "steady", "s").await;

    etcd[0].kill();
    // Writes are refused with a clear error; nothing changes.
    for rd in [&a, &b] {
        let refused = rd
            .admin_json("POST", ROUTES, Some(&respond_route("during", "d")))
            .await;
        assert_eq!(refused.status, 503, "{}", refused.text());
        assert_eq!(refused.json()["error"], "store_unavailable");
        assert!(
            refused.json()["message"]
                .as_str()
                .unwrap()
                .contains("unreachable"),
            "{}",
            refused.text()
        );
    }
    // Traffic keeps flowing, and reads say they may be stale.
    for rd in [&a, &b, &c] {
        assert_eq!(rd.get("/steady").await.text(), "s");
        assert_eq!(rd.get("/during").await.status, 404);
        let stale = wait_until(
            async || {
                rd.admin_get(ROUTES)
                    .await
                    .header("routerd-stale")
                    .is_some_and(|h| h.contains("unreachable"))
            },
            CONVERGE,
        )
        .await;
        assert!(
            stale,
            "no routerd-stale header; logs:\n{}",
            rd.logs().join("\n")
        );
    }

    // A restart while etcd is down serves the last state this instance saw, and says so.
    drop(c);
    let c = instance(&store, "c", Some((c_data.path(), c_plugins.path()))).await;
    assert_eq!(c.get("/steady").await.text(), "s");
    assert!(
        c.logs()
            .iter()
            .any(|l| l.contains("serving stale API routes") && l.contains("unreachable")),
        "{}",
        c.logs().join("\n")
    );

    // etcd comes back: a change made afterwards reaches every instance, the restarted one too.
    etcd[0].start();
    etcd[0].wait_healthy().await;
    let accepted = wait_until(
        async || {
            b.admin_json("POST", ROUTES, Some(&respond_route("after", "back")))
                .await
                .status
                == 201
        },
        CONVERGE,
    )
    .await;
    assert!(
        accepted,
        "writes still refused; logs:\n{}",
        b.logs().join("\n")
    );
    for rd in [&a, &b, &c] {
        served(rd, "/after", "back").await;
        served(rd, "/steady", "s").await;
        let fresh = wait_until(
            async || rd.admin_get(ROUTES).await.header("routerd-stale").is_none(),
            CONVERGE,
        )
        .await;
        assert!(fresh, "still stale; logs:\n{}", rd.logs().join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_member_etcd_cluster_losing_a_member_goes_unnoticed() {
    let mut etcd = Etcd::cluster(3).await;
    let store = store_url(&[&etcd[0], &etcd[1], &etcd[2]], "t-members");
    let rds = three(&store).await;
    made_everywhere(&rds[0], &rds, "before", "1").await;

    etcd[0].kill();
    // Every write through every instance still succeeds, and reaches the others.
    for (i, rd) in rds.iter().enumerate() {
        let name = format!("after{i}");
        made_everywhere(rd, &rds, &name, &name).await;
    }
    for rd in &rds {
        assert_eq!(rd.get("/before").await.text(), "1");
    }
}

/// The dashboard's cluster page, in a real browser, lists every instance sharing the store
/// with the table it serves, and shows a change reaching all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_s_cluster_page_lists_every_instance() {
    let etcd = Etcd::cluster(1).await;
    let store = store_url(&[&etcd[0]], "t-dashboard");
    let rds = three(&store).await;
    made_everywhere(&rds[1], &rds, "everywhere", "hi").await;
    let b = browser::Browser::start(&rds[0].admin_url()).await;
    b.open("cluster").await;
    b.wait_text("#cluster-store", "the store", |t| t.contains("etcd"))
        .await;
    for id in ["a", "b", "c"] {
        let row = b
            .wait_text(
                &format!("#cluster-table tr[data-instance={id}]"),
                "every instance, current",
                |t| t.contains("current"),
            )
            .await;
        // The revision each instance says it serves, as the API reports it.
        let listed = rds[0].admin_get("/api/v1/cluster").await.json();
        let revision = listed["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["id"] == id)
            .and_then(|i| i["revision"].as_u64())
            .unwrap();
        assert!(row.contains(&revision.to_string()), "{id}: {row}");
    }
    b.shot("cluster-etcd").await;
    b.assert_clean("cluster", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_loaded_on_one_instance_runs_on_every_instance_and_the_cluster_sums_it() {
    let etcd = Etcd::cluster(1).await;
    let store = store_url(&[&etcd[0]], "t-trials");
    let (a, b) = (
        instance(&store, "a", None).await,
        instance(&store, "b", None).await,
    );
    let live = std::fs::read(dist_plugin("header-eq")).unwrap();
    let up = a
        .admin_request("POST", "/api/v1/plugins?name=geo", &[], live)
        .await;
    assert_eq!(up.status, 201, "{}", up.text());
    let tier = json!({"name": "tier", "matchers": [prefix("/tier"), plugin_pred("geo", &["x-tier", "gold"])],
                      "filters": [{"name": "respond", "args": ["200", "gold", "text/plain"]}]});
    let other = json!({"name": "other", "matchers": [prefix("/tier")],
                       "filters": [{"name": "respond", "args": ["200", "other", "text/plain"]}]});
    for route in [&tier, &other] {
        let made = a.admin_json("POST", ROUTES, Some(route)).await;
        assert_eq!(made.status, 201, "{}", made.text());
    }
    served(&b, "/tier", "other").await;

    // A shadow that matches everything, loaded on A, follows to B.
    let shadow = std::fs::read(dist_plugin("noop-predicate")).unwrap();
    let shadow_sha = sha256_hex(&shadow);
    let up = a
        .admin_request("POST", "/api/v1/plugins?name=geo&shadow=true", &[], shadow)
        .await;
    assert_eq!(up.status, 201, "{}", up.text());
    let followed = wait_until(
        async || {
            b.admin_get("/api/v1/plugins/geo").await.json()["trial"]["sha256"]
                == shadow_sha.as_str()
        },
        CONVERGE,
    )
    .await;
    assert!(followed, "B has no shadow; logs:\n{}", b.logs().join("\n"));

    // Three requests it disagrees on at each instance: the cluster view sums six.
    for rd in [&a, &b] {
        for _ in 0..3 {
            assert_eq!(rd.get("/tier").await.text(), "other");
        }
    }
    let mut view = json!(null);
    let summed = wait_until(
        async || {
            view = a.admin_get("/api/v1/cluster").await.json();
            view["trials"]["geo"]["diverged"] == 6
        },
        CONVERGE,
    )
    .await;
    assert!(summed, "the cluster view does not sum the shadows: {view}");
    assert_eq!(view["trials"]["geo"]["mode"], "shadow", "{view}");
    assert_eq!(view["trials"]["geo"]["agreed"], 0, "{view}");

    // Discarded on B: gone on A too, and its stored bytes leave etcd.
    let gone = b
        .admin_request("POST", "/api/v1/plugins/geo/discard", &[], "")
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
    let ended = wait_until(
        async || a.admin_get("/api/v1/plugins/geo").await.json()["trial"].is_null(),
        CONVERGE,
    )
    .await;
    assert!(ended, "A kept its shadow; logs:\n{}", a.logs().join("\n"));
    let blobs = stored_keys(&etcd[0], "/t-trials/plugins/blobs/").await;
    assert!(
        !blobs.iter().any(|k| k.contains(&shadow_sha)),
        "the shadow's chunks were left behind: {blobs:?}"
    );
    assert!(
        blobs.iter().any(|k| !k.contains(&shadow_sha)),
        "the live version's chunks went: {blobs:?}"
    );
}
