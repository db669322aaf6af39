//! Black-box tests of guest languages: the same `lang` plugin (a predicate and a filter, see
//! `plugins/lang-rust`) written in Rust with the SDK, JavaScript (componentize-js and jco's
//! QuickJS backend), Python (componentize-py), C (wit-bindgen c + clang), Go (wit-bindgen go)
//! and WebAssembly text, each built from source the way its toolchain emits it by default
//! (`plugins/lang/build.sh`), loaded side by side into one real routerd and driven through the
//! proxy with one table of probes per language.
#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::{Value, json};

/// Compiling the JavaScript and Python components cold in a debug build takes most of a minute
/// on a small machine.
const COLD_START: Duration = Duration::from_secs(240);

/// The plugins' settings here. An instance's first call runs its engine's cold paths: 3 ms for
/// StarlingMonkey and 2 ms for CPython on an idle machine, more than the default 10 ms deadline
/// on a loaded 2-core one. These tests are about what each language answers; the deadline has
/// its own tests (`tests/plugins.rs`).
fn settings() -> Value {
    json!({"deadline_ms": 200})
}

/// Every language, with the plugin name it is installed under.
const LANGUAGES: &[&str] = &["rust", "js", "quickjs", "python", "c", "go", "wat"];

fn plugin_name(lang: &str) -> String {
    format!("lang-{lang}")
}

/// Routes for one language: `/L/p` picks `L-pred` when the predicate matches (else
/// `L-plain`); `/L/f` goes through the filter to the echo backend.
fn routes(lang: &str, plugin: &str, backend: &str) -> Vec<Route> {
    vec![
        Route::respond(&format!("{lang}-pred"))
            .m(path(&format!("/{lang}/p")))
            .m(plugin_pred(plugin, &["x-lang", lang])),
        Route::respond(&format!("{lang}-plain")).m(path(&format!("/{lang}/p"))),
        Route::proxy(&format!("{lang}-filter"), backend)
            .m(path(&format!("/{lang}/f")))
            .plugin_filter(plugin, &[&format!("tag-{lang}")]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_predicate_and_filter_behave_alike() {
    let backend = Backend::start("echo").await;
    let mut all = Vec::new();
    for lang in LANGUAGES {
        all.extend(routes(lang, &plugin_name(lang), &backend.url()));
    }
    let cfg = config(all);
    let mut launch = Routerd::launch(&cfg).warm_cache();
    for lang in LANGUAGES {
        launch = launch
            .plugin_path(&plugin_name(lang), &lang_plugin(lang))
            .plugin_settings(&plugin_name(lang), settings());
    }
    let rd = launch.startup_timeout(COLD_START).start().await;
    for line in rd.logs().iter().filter(|l| l.contains("plugin loaded")) {
        eprintln!("{line}");
    }

    // Every plugin is loaded as both a predicate and a filter.
    let list = rd.admin_get("/api/v1/plugins").await.json();
    for lang in LANGUAGES {
        let name = plugin_name(lang);
        let entry = list["plugins"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not loaded: {list}"));
        assert_eq!(entry["kind"], "predicate+filter", "{name}: {entry}");
    }

    assert_no_failures(&probe_languages(&rd, LANGUAGES).await);
    assert_no_call_failed(&rd).await;
    check_validation(&rd).await;
}

/// Three rounds of probes for each language's routes (see [`routes`]): fresh instances first,
/// then reused ones must answer the same.
async fn probe_languages(rd: &Routerd, langs: &[&str]) -> Vec<String> {
    let mut failures = Vec::new();
    for round in 1..=3 {
        for lang in langs {
            let probes = [
                probe("GET", &format!("/{lang}/p"))
                    .header("x-lang", lang)
                    .route(&format!("{lang}-pred")),
                probe("GET", &format!("/{lang}/p"))
                    .header("X-Lang", lang)
                    .route(&format!("{lang}-pred")),
                probe("GET", &format!("/{lang}/p"))
                    .header("x-lang", "other")
                    .route(&format!("{lang}-plain")),
                probe("GET", &format!("/{lang}/p")).route(&format!("{lang}-plain")),
            ];
            failures.extend(run_probes(rd, &format!("{lang} round {round}"), &probes).await);
            failures.extend(check_filter(rd, lang).await);
        }
    }
    failures
}

/// No plugin call failed: a language whose calls trapped would fail closed and could still
/// pass some probes, so the counters must say so too.
async fn assert_no_call_failed(rd: &Routerd) {
    let list = rd.admin_get("/api/v1/plugins").await.json();
    for entry in list["plugins"].as_array().unwrap() {
        for counter in [
            "traps",
            "deadline_hits",
            "memory_cap_hits",
            "rejected_results",
            "overloaded",
        ] {
            assert_eq!(entry[counter], 0, "{}: {counter} in {entry}", entry["name"]);
        }
    }
}

/// The filter's request phase (header on the proxied request, or a reply of its own) and its
/// response phase (a header naming the backend's status).
async fn check_filter(rd: &Routerd, lang: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let tag = format!("tag-{lang}");
    let resp = rd.get(&format!("/{lang}/f")).await;
    if resp.status != 200 || resp.echoed_header("x-tag") != [tag.clone()] {
        failures.push(format!(
            "{lang}: the proxied request should carry x-tag: {tag}; got {}",
            resp.describe()
        ));
    }
    let expected = format!("{tag}:200");
    if resp.header("x-tag-response").as_deref() != Some(expected.as_str()) {
        failures.push(format!(
            "{lang}: response header x-tag-response should be {expected}, got {:?}",
            resp.header("x-tag-response")
        ));
    }
    let resp = rd
        .request("GET", &format!("/{lang}/f"), &[("x-reply", "1")], "")
        .await;
    let body = format!("reply from {tag}");
    if resp.status != 203 || resp.text() != body || resp.header("x-tag").as_deref() != Some(&tag) {
        failures.push(format!(
            "{lang}: x-reply should be answered 203 {body:?} with x-tag; got {} x-tag={:?}",
            resp.describe(),
            resp.header("x-tag")
        ));
    }
    // The response phase runs on the plugin's own reply too.
    let expected = format!("{tag}:203");
    if resp.header("x-tag-response").as_deref() != Some(expected.as_str()) {
        failures.push(format!(
            "{lang}: the reply's x-tag-response should be {expected}, got {:?}",
            resp.header("x-tag-response")
        ));
    }
    failures
}

/// Every language's `validate` rejects a route with bad args, in its own words.
async fn check_validation(rd: &Routerd) {
    for lang in LANGUAGES {
        let plugin = plugin_name(lang);
        let bad_pred = json!({
            "name": format!("{lang}-bad-pred"),
            "matchers": [
                {"condition": "path", "pattern": "/x"},
                {"condition": "plugin", "plugin": plugin, "args": ["only-one"]},
            ],
            "filters": [{"name": "respond", "args": ["200", "x"]}],
        });
        let resp = rd
            .admin_json("POST", "/api/v1/routes", Some(&bad_pred))
            .await;
        check_rejected(&resp, lang, "expected 2 args: [header, value]");
        let bad_filter = json!({
            "name": format!("{lang}-bad-filter"),
            "matchers": [{"condition": "path", "pattern": "/y"}],
            "filters": [
                {"plugin": plugin, "args": []},
                {"name": "respond", "args": ["200", "y"]},
            ],
        });
        let resp = rd
            .admin_json("POST", "/api/v1/routes", Some(&bad_filter))
            .await;
        check_rejected(&resp, lang, "expected 1 arg: [tag]");
    }
}

fn check_rejected(resp: &Resp, lang: &str, message: &str) {
    let body: Value = resp.json();
    assert_eq!(resp.status, 400, "{lang}: {}", resp.describe());
    assert_eq!(body["error"], "invalid_plugin_args", "{lang}: {body}");
    let text = body["message"].as_str().unwrap_or_default();
    assert!(
        text.contains(message),
        "{lang}: the message should carry the plugin's own words {message:?}: {text}"
    );
}

/// `routerctl plugin new NAME --lang LANG` writes a project whose `build.sh` builds a working
/// component: one per language is generated, built and driven through a real routerd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routerctl_plugin_new_projects_build_and_serve() {
    const NEW: &[&str] = &["rust", "js", "python", "c", "go", "wat"];
    // The toolchains are the ones plugins/lang/build.sh installs.
    lang_plugin("c");
    let work = TempDir::new("scaffold");
    let backend = Backend::start("echo").await;
    let mut all = Vec::new();
    let mut built = Vec::new();
    for lang in NEW {
        let name = format!("new-{lang}");
        let dir = work.path().join(&name);
        let out = std::process::Command::new(routerctl_bin())
            .args(["plugin", "new", &name, "--lang", lang, "--dir"])
            .arg(&dir)
            .output()
            .expect("run routerctl");
        assert!(
            out.status.success(),
            "routerctl plugin new {name} --lang {lang}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let build = std::process::Command::new("bash")
            .arg(dir.join("build.sh"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_BUILD_TARGET")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run build.sh");
        assert!(
            build.status.success(),
            "{name}/build.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
        let wasm = dir.join(format!("{name}.wasm"));
        assert!(
            wasm.is_file(),
            "{name}/build.sh wrote no {}",
            wasm.display()
        );
        all.extend(routes(lang, &name, &backend.url()));
        built.push((name, wasm));
    }
    let cfg = config(all);
    let mut launch = Routerd::launch(&cfg).warm_cache();
    for (name, wasm) in &built {
        launch = launch
            .plugin_path(name, wasm)
            .plugin_settings(name, settings());
    }
    let rd = launch.startup_timeout(COLD_START).start().await;
    assert_no_failures(&probe_languages(&rd, NEW).await);
    assert_no_call_failed(&rd).await;
}
