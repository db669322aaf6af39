//! Black-box tests of `routerctl` against a real `routerd` process on 127.0.0.1: every command
//! runs the real binary (`--admin http://127.0.0.1:PORT`), and its effect is checked through
//! the admin API and through traffic.
//!
//! Covers `route add/list/get/update/rename/disable/enable/delete/apply`, `plugin
//! load/list/info/unload`, `match`, `health`, the bearer token file, API errors (exit code 1 and
//! the API's message on stderr) and `--help` for every subcommand.
#![allow(clippy::unwrap_used)]

mod harness;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::*;
use serde_json::{Value, json};

/// Upper bound for one routerctl run.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a routerctl run left behind.
#[derive(Debug)]
struct CtlOut {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl CtlOut {
    /// Panics with the output unless the run exited 0; returns stdout.
    fn ok(&self, what: &str) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "routerctl {what} failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    /// Stdout parsed as JSON.
    fn json(&self, what: &str) -> Value {
        let out = self.ok(what);
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("routerctl {what}: stdout is not JSON ({e}):\n{out}"))
    }

    /// Panics unless the run exited 1 with `needle` on stderr.
    fn fails_with(&self, what: &str, needle: &str) {
        assert!(
            self.code == Some(1) && self.stderr.contains(needle),
            "routerctl {what}: expected exit 1 with {needle:?} on stderr, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs routerctl with `args` (bounded by [`CTL_TIMEOUT`]), without `--admin`.
async fn ctl_raw<I, S>(args: I) -> CtlOut
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = tokio::process::Command::new(routerctl_bin());
    cmd.args(args)
        .env_remove("ROUTERCTL_ADMIN")
        .env_remove("ROUTERCTL_TOKEN_FILE")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CTL_TIMEOUT, cmd.output())
        .await
        .expect("routerctl did not finish in time")
        .expect("run routerctl");
    CtlOut {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `routerctl --admin http://ADMIN args...`.
async fn ctl(rd: &Routerd, args: &[&str]) -> CtlOut {
    let mut all = vec!["--admin".to_owned(), rd.admin_url()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    ctl_raw(all).await
}

/// Writes `doc` as JSON to `dir/name`; returns the path as text.
fn write_json(dir: &Path, name: &str, doc: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    path_text(&path)
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

/// A route on exact path `p` answering 200 with `body`.
fn answer(name: &str, p: &str, body: &str) -> Value {
    json!({
        "name": name,
        "matchers": [{"condition": "path", "pattern": p}],
        "filters": [{"name": "respond", "args": ["200", body, "text/plain"]}],
    })
}

/// `GET /api/v1/routes/{name}` through the API: the route, or `None` on 404.
async fn api_route(rd: &Routerd, name: &str) -> Option<Value> {
    let resp = rd.admin_get(&format!("/api/v1/routes/{name}")).await;
    match resp.status {
        200 => Some(resp.json()),
        404 => None,
        _ => panic!("GET route {name}: {}", resp.describe()),
    }
}

/// Every route the API lists, by name.
async fn api_routes(rd: &Routerd) -> Vec<Value> {
    let resp = rd.admin_get("/api/v1/routes?limit=1000").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    resp.json()["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Creates a route through the API (201 expected).
async fn api_create(rd: &Routerd, route: &Value) {
    let resp = rd.admin_json("POST", "/api/v1/routes", Some(route)).await;
    assert_eq!(
        resp.status,
        201,
        "POST {}: {}",
        route["name"],
        resp.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_commands_change_routes_and_traffic() {
    let backend = Backend::start("ctl-backend").await;
    let rd = Routerd::start(&config(vec![Route::respond("file-route").m(path("/file"))])).await;
    let dir = TempDir::new("ctl-routes");

    // add
    let route = json!({
        "name": "web",
        "target_url": backend.url(),
        "matchers": [{"condition": "path_prefix", "pattern": "/web"}],
    });
    let file = write_json(dir.path(), "web.json", &route);
    let out = ctl(&rd, &["route", "add", "-f", &file]).await;
    assert!(out.ok("route add").contains("web"), "{out:?}");
    let resp = rd.get("/web/x").await;
    assert_eq!(
        resp.backend().as_deref(),
        Some("ctl-backend"),
        "{}",
        resp.describe()
    );

    // list: a table naming every route
    let out = ctl(&rd, &["route", "list"]).await;
    let table = out.ok("route list");
    assert!(
        table.contains("web") && table.contains("file-route"),
        "{table}"
    );
    let out = ctl(&rd, &["route", "list", "--json"]).await;
    let listed: BTreeSet<String> = out.json("route list --json")["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["file-route", "web"].map(str::to_owned).into());

    // get --json is the stored route
    let got = ctl(&rd, &["route", "get", "web", "--json"])
        .await
        .json("route get");
    assert_eq!(got["name"], "web");
    assert_eq!(got["source"], "api");
    assert_eq!(got["status"], "active");
    assert_eq!(got, api_route(&rd, "web").await.unwrap());
    let human = ctl(&rd, &["route", "get", "web"]).await;
    assert!(human.ok("route get").contains(&backend.url()), "{human:?}");

    // update from a file
    let mut changed = route.clone();
    changed["filters"] = json!([{"name": "set_response_header", "args": ["X-Ctl", "updated"]}]);
    let file = write_json(dir.path(), "web2.json", &changed);
    ctl(&rd, &["route", "update", "web", "-f", &file])
        .await
        .ok("route update");
    assert_eq!(
        rd.get("/web/x").await.header("x-ctl").as_deref(),
        Some("updated")
    );
    // An update carrying a stale version (from `get --json`) is refused.
    let file = write_json(dir.path(), "stale.json", &got);
    ctl(&rd, &["route", "update", "web", "-f", &file])
        .await
        .fails_with("route update with a stale version", "version_mismatch");
    assert_eq!(
        rd.get("/web/x").await.header("x-ctl").as_deref(),
        Some("updated")
    );

    // rename
    ctl(&rd, &["route", "rename", "web", "site"])
        .await
        .ok("route rename");
    assert!(api_route(&rd, "web").await.is_none(), "web still exists");
    assert_eq!(api_route(&rd, "site").await.unwrap()["status"], "active");
    assert_eq!(
        rd.get("/web/x").await.backend().as_deref(),
        Some("ctl-backend")
    );

    // disable: traffic stops; enable: it comes back
    ctl(&rd, &["route", "disable", "site"])
        .await
        .ok("route disable");
    assert_eq!(api_route(&rd, "site").await.unwrap()["status"], "disabled");
    let resp = rd.get("/web/x").await;
    assert_eq!(
        resp.status,
        404,
        "a disabled route served: {}",
        resp.describe()
    );
    ctl(&rd, &["route", "enable", "site"])
        .await
        .ok("route enable");
    assert_eq!(api_route(&rd, "site").await.unwrap()["status"], "active");
    assert_eq!(
        rd.get("/web/x").await.backend().as_deref(),
        Some("ctl-backend")
    );

    // delete
    ctl(&rd, &["route", "delete", "site"])
        .await
        .ok("route delete");
    assert!(api_route(&rd, "site").await.is_none(), "site still exists");
    assert_eq!(rd.get("/web/x").await.status, 404);
    assert_eq!(rd.get("/file").await.text(), "file-route");

    // API errors: exit 1 and the API's message on stderr.
    let missing = rd.admin_get("/api/v1/routes/site").await.json();
    let message = missing["message"].as_str().unwrap().to_owned();
    ctl(&rd, &["route", "get", "site"])
        .await
        .fails_with("route get of a missing route", &message);
    ctl(&rd, &["route", "delete", "file-route"])
        .await
        .fails_with("route delete of a file route", "read_only_route");
    let bad = json!({
        "name": "bad",
        "matchers": [{"condition": "header", "field": "x-a", "pattern": "(", "is_regex": true}],
        "filters": [{"name": "respond", "args": ["200", "bad"]}],
    });
    let direct = rd
        .admin_json("POST", "/api/v1/routes", Some(&bad))
        .await
        .json();
    let file = write_json(dir.path(), "bad.json", &bad);
    ctl(&rd, &["route", "add", "-f", &file]).await.fails_with(
        "route add with a bad regex",
        direct["message"].as_str().unwrap(),
    );
    assert!(api_route(&rd, "bad").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_apply_makes_api_routes_equal_the_file() {
    let rd = Routerd::start(&config(vec![Route::respond("file-route").m(path("/file"))])).await;
    let dir = TempDir::new("ctl-apply");
    api_create(&rd, &answer("kept", "/kept", "kept-v1")).await;
    api_create(&rd, &answer("same", "/same", "same")).await;
    api_create(&rd, &answer("dropped", "/dropped", "dropped")).await;

    let doc = json!({"routes": [
        answer("kept", "/kept", "kept-v2"),
        answer("same", "/same", "same"),
        answer("new-1", "/new/1", "new-1"),
        answer("new-2", "/new/2", "new-2"),
    ]});
    let file = write_json(dir.path(), "doc.json", &doc);
    ctl(&rd, &["route", "apply", "-f", &file])
        .await
        .ok("route apply");

    let check = async |round: &str| {
        let routes = api_routes(&rd).await;
        let api: BTreeSet<String> = routes
            .iter()
            .filter(|r| r["source"] == "api")
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            api,
            ["kept", "new-1", "new-2", "same"].map(str::to_owned).into(),
            "API routes after {round}"
        );
        assert!(
            routes
                .iter()
                .any(|r| r["name"] == "file-route" && r["source"] == "file"),
            "apply touched the file route ({round})"
        );
        for (p, body) in [
            ("/kept", "kept-v2"),
            ("/same", "same"),
            ("/new/1", "new-1"),
            ("/new/2", "new-2"),
            ("/file", "file-route"),
        ] {
            let resp = rd.get(p).await;
            assert_eq!(
                (resp.status, resp.text().as_str()),
                (200, body),
                "GET {p} after {round}"
            );
        }
        assert_eq!(rd.get("/dropped").await.status, 404, "after {round}");
    };
    check("the first apply").await;

    // Applying the same file again changes nothing.
    let versions = |routes: Vec<Value>| -> Vec<(String, Value)> {
        routes
            .into_iter()
            .map(|r| (r["name"].as_str().unwrap().to_owned(), r["version"].clone()))
            .collect()
    };
    let before = versions(api_routes(&rd).await);
    ctl(&rd, &["route", "apply", "-f", &file])
        .await
        .ok("route apply again");
    check("the second apply").await;
    assert_eq!(
        versions(api_routes(&rd).await),
        before,
        "a second apply of the same file rewrote routes"
    );

    // An invalid document changes nothing at all.
    let broken = json!({"routes": [
        answer("kept", "/kept", "kept-v3"),
        {"name": "broken", "matchers": [], "filters": [{"name": "respond", "args": ["200", "x"]}]},
    ]});
    let file = write_json(dir.path(), "broken.json", &broken);
    let out = ctl(&rd, &["route", "apply", "-f", &file]).await;
    assert_eq!(out.code, Some(1), "apply of an invalid document: {out:?}");
    assert!(out.stderr.contains("no_matchers"), "{out:?}");
    check("a refused apply").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_commands_load_list_info_unload() {
    let rd = Routerd::launch(&config(vec![Route::respond("fallback").m(path("/sel"))]))
        .warm_cache()
        .start()
        .await;
    let wasm_path: PathBuf = dist_plugin("header-eq");
    let wasm = std::fs::read(&wasm_path).unwrap();
    let sha = sha256_hex(&wasm);

    let out = ctl(
        &rd,
        &["plugin", "load", &path_text(&wasm_path), "--name", "sel"],
    )
    .await;
    assert!(out.ok("plugin load").contains("sel"), "{out:?}");
    let resp = rd.admin_get("/api/v1/plugins/sel").await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(resp.json()["sha256"], sha);

    let list = ctl(&rd, &["plugin", "list"]).await;
    assert!(list.ok("plugin list").contains("sel"), "{list:?}");
    let list = ctl(&rd, &["plugin", "list", "--json"])
        .await
        .json("plugin list --json");
    assert!(
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "sel" && p["kind"] == "predicate"),
        "{list}"
    );
    let info = ctl(&rd, &["plugin", "info", "sel"]).await;
    assert!(info.ok("plugin info").contains(&sha), "{info:?}");
    let info = ctl(&rd, &["plugin", "info", "sel", "--json"])
        .await
        .json("plugin info");
    assert_eq!(info["kind"], "predicate");

    // The plugin serves a route.
    let route = json!({
        "name": "selected",
        "priority": 5,
        "matchers": [{"condition": "path", "pattern": "/sel"},
                     {"condition": "plugin", "plugin": "sel", "args": ["x-sel", "yes"]}],
        "filters": [{"name": "respond", "args": ["200", "selected"]}],
    });
    api_create(&rd, &route).await;
    assert_eq!(
        rd.request("GET", "/sel", &[("x-sel", "yes")], "")
            .await
            .text(),
        "selected"
    );

    // In use: refused with the API's code; --force unloads and excludes the route.
    ctl(&rd, &["plugin", "unload", "sel"])
        .await
        .fails_with("plugin unload in use", "plugin_in_use");
    ctl(&rd, &["plugin", "unload", "sel", "--force"])
        .await
        .ok("plugin unload --force");
    let resp = rd.admin_get("/api/v1/plugins/sel").await;
    assert_eq!(resp.status, 404, "{}", resp.describe());
    let excluded = wait_until(
        async || api_route(&rd, "selected").await.unwrap()["status"] == "excluded",
        RELOAD_TIMEOUT,
    )
    .await;
    assert!(excluded, "route not excluded after plugin unload --force");
    assert_eq!(
        rd.request("GET", "/sel", &[("x-sel", "yes")], "")
            .await
            .text(),
        "fallback"
    );
    ctl(&rd, &["plugin", "info", "sel"])
        .await
        .fails_with("plugin info of an unloaded plugin", "plugin_not_found");

    // A plugin no route uses unloads without --force; garbage is refused.
    ctl(
        &rd,
        &["plugin", "load", &path_text(&wasm_path), "--name", "spare"],
    )
    .await
    .ok("plugin load spare");
    ctl(&rd, &["plugin", "unload", "spare"])
        .await
        .ok("plugin unload spare");
    assert_eq!(rd.admin_get("/api/v1/plugins/spare").await.status, 404);
    let dir = TempDir::new("ctl-plugin");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    ctl(&rd, &["plugin", "load", &path_text(&junk)])
        .await
        .fails_with("plugin load of garbage", "invalid_plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_shows_the_decision_and_the_failed_candidate() {
    let rd = Routerd::start(&config(vec![
        Route::respond("needs-xa")
            .m(path("/path"))
            .m(header("x-a", "1"))
            .priority(10),
        Route::respond("fallback").m(path("/path")),
    ]))
    .await;

    let out = ctl(&rd, &["match", "GET", "http://h/path", "-H", "X-A: 2"]).await;
    let text = out.ok("match");
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains("fallback"),
        "the decision comes first:\n{text}"
    );
    let failed = text
        .lines()
        .find(|l| l.contains("needs-xa"))
        .unwrap_or_else(|| panic!("the failed candidate is missing:\n{text}"));
    assert!(
        failed.contains("failed") && failed.contains("header"),
        "the failed candidate must say where it failed:\n{text}"
    );

    let doc = ctl(
        &rd,
        &["match", "GET", "http://h/path", "-H", "X-A: 2", "--json"],
    )
    .await
    .json("match --json");
    assert_eq!(doc["decision"], "route", "{doc}");
    assert_eq!(doc["route"], "fallback", "{doc}");
    assert_eq!(doc["candidates"][0]["route"], "needs-xa", "{doc}");
    assert_eq!(doc["candidates"][0]["result"], "failed", "{doc}");

    let doc = ctl(
        &rd,
        &["match", "GET", "http://h/path", "-H", "X-A: 1", "--json"],
    )
    .await
    .json("match --json with the header");
    assert_eq!(doc["route"], "needs-xa", "{doc}");
    let out = ctl(&rd, &["match", "GET", "/path", "-H", "X-A: 1"]).await;
    let text = out.ok("match a bare path");
    assert!(
        text.lines().next().unwrap_or_default().contains("needs-xa"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_up_and_down() {
    let live = Backend::start("live").await;
    let dead = format!("http://127.0.0.1:{}", unused_port());
    let rd = Routerd::start(&config(vec![
        Route::proxy("to-live", &live.url()).m(path("/live")),
        Route::proxy("to-dead", &dead).m(path("/dead")),
    ]))
    .await;
    let mut text = String::new();
    let settled = wait_until(
        async || {
            let out = ctl(&rd, &["health"]).await;
            text = out.ok("health").to_owned();
            let line = |route: &str| {
                text.lines()
                    .find(|l| l.contains(route))
                    .unwrap_or_default()
                    .to_owned()
            };
            line("to-live").contains("up") && line("to-dead").contains("down")
        },
        Duration::from_secs(10),
    )
    .await;
    assert!(
        settled,
        "routerctl health never showed live up and dead down:\n{text}"
    );
    let doc = ctl(&rd, &["health", "--json"]).await.json("health --json");
    assert!(
        doc["routes"].as_array().is_some_and(|r| r.len() == 2),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_is_sent_on_mutations() {
    let dir = TempDir::new("ctl-token");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "ctl-secret\n").unwrap();
    let wrong_file = dir.path().join("wrong");
    std::fs::write(&wrong_file, "not-it").unwrap();
    let rd = Routerd::launch(&config(vec![]))
        .arg("--admin-token-file")
        .arg(&token_file)
        .start()
        .await;
    let route = write_json(dir.path(), "r.json", &answer("tok", "/tok", "tok"));

    ctl(&rd, &["route", "add", "-f", &route])
        .await
        .fails_with("route add without a token", "unauthorized");
    ctl(
        &rd,
        &[
            "--token-file",
            &path_text(&wrong_file),
            "route",
            "add",
            "-f",
            &route,
        ],
    )
    .await
    .fails_with("route add with a wrong token", "unauthorized");
    assert!(api_route(&rd, "tok").await.is_none());
    // Reads need none.
    let out = ctl(&rd, &["route", "list"]).await;
    out.ok("route list without a token");
    ctl(
        &rd,
        &[
            "--token-file",
            &path_text(&token_file),
            "route",
            "add",
            "-f",
            &route,
        ],
    )
    .await
    .ok("route add with the token");
    assert_eq!(rd.get("/tok").await.text(), "tok");
    ctl(&rd, &["route", "delete", "tok"])
        .await
        .fails_with("route delete without a token", "unauthorized");
    ctl(
        &rd,
        &[
            "--token-file",
            &path_text(&token_file),
            "route",
            "delete",
            "tok",
        ],
    )
    .await
    .ok("route delete with the token");
    assert_eq!(rd.get("/tok").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_exits_1() {
    let port = unused_port();
    let out = ctl_raw([
        "--admin",
        &format!("http://127.0.0.1:{port}"),
        "route",
        "list",
    ])
    .await;
    out.fails_with("route list against a closed port", "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_works_for_every_subcommand() {
    let commands: &[&[&str]] = &[
        &[],
        &["route"],
        &["route", "list"],
        &["route", "get"],
        &["route", "add"],
        &["route", "update"],
        &["route", "rename"],
        &["route", "delete"],
        &["route", "enable"],
        &["route", "disable"],
        &["route", "apply"],
        &["plugin"],
        &["plugin", "load"],
        &["plugin", "list"],
        &["plugin", "info"],
        &["plugin", "unload"],
        &["match"],
        &["health"],
    ];
    for command in commands {
        let mut args: Vec<&str> = command.to_vec();
        args.push("--help");
        let out = ctl_raw(&args).await;
        let what = args.join(" ");
        let text = out.ok(&what);
        assert!(
            text.contains("Usage:"),
            "routerctl {what} printed no usage:\n{text}"
        );
        if let Some(last) = command.last() {
            assert!(
                text.contains(last),
                "routerctl {what} does not name itself:\n{text}"
            );
        }
    }
    // An unknown subcommand is a usage error, not a crash.
    let out = ctl_raw(["route", "frobnicate"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("frobnicate"), "{out:?}");
}
