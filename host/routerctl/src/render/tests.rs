//! The renderings checked against the API's documents.

use serde_json::json;

use super::*;

#[test]
fn table_aligns_columns_without_trailing_spaces() {
    let rows = vec![
        vec!["users".to_owned(), "api".to_owned(), "x".to_owned()],
        vec!["é".to_owned(), "file".to_owned(), String::new()],
    ];
    let t = table(&["NAME", "SOURCE", "LAST"], &rows);
    assert_eq!(t, "NAME   SOURCE  LAST\nusers  api     x\né      file\n");
}

#[test]
fn table_of_nothing_is_its_header() {
    assert_eq!(table(&["A", "B"], &[]), "A  B\n");
}

#[test]
fn route_rows() {
    let routes = vec![
        json!({
            "name": "users", "source": "api", "status": "active", "priority": 10, "version": 3,
            "target_url": "http://127.0.0.1:3000/api",
            "matchers": [
                {"condition": "path", "pattern": "/users/{id}"},
                {"condition": "header", "field": "X-Tier", "pattern": "^gold$", "is_regex": true}
            ]
        }),
        json!({
            "name": "fallback", "source": "file", "status": "disabled", "default_rule": true,
            "matchers": [], "filters": [{"name": "respond", "args": ["404", "nope"]}]
        }),
    ];
    let t = routes_table(&routes);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "NAME      SOURCE  STATUS    PRIORITY  VERSION  TARGET                     MATCHERS"
    );
    assert_eq!(
        lines[1],
        "users     api     active    10        3        http://127.0.0.1:3000/api  path=/users/{id}, header[X-Tier]~^gold$"
    );
    assert_eq!(
        lines[2],
        "fallback  file    disabled  0         -        respond 404                (default rule)"
    );
}

#[test]
fn long_matcher_lists_are_cut() {
    let route = json!({"matchers": [{"condition": "body_regex", "pattern": "x".repeat(100)}]});
    let s = matchers_summary(&route);
    assert_eq!(s.chars().count(), MATCHERS_WIDTH);
    assert!(s.starts_with("body_regex~xxx") && s.ends_with('…'));
}

#[test]
fn matcher_and_filter_summaries() {
    assert_eq!(
        matcher(&json!({"condition": "plugin", "plugin": "beta", "args": ["on", "1"]})),
        r#"plugin:beta("on", "1")"#
    );
    assert_eq!(
        matcher(&json!({"condition": "query_param", "field": "v", "pattern": "2"})),
        "query_param[v]=2"
    );
    assert_eq!(
        filter(&json!({"name": "set_request_header", "args": ["X-User", "{id}"]})),
        r#"set_request_header("X-User", "{id}")"#
    );
    assert_eq!(filter(&json!({"plugin": "api-key"})), "plugin:api-key()");
    let redirect = json!({"filters": [{"name": "redirect", "args": ["301", "/new"]}]});
    assert_eq!(target(&redirect), "redirect 301 /new");
}

#[test]
fn route_details() {
    let route = json!({
        "name": "users", "status": "excluded", "reason": "plugin \"geo\" is not loaded",
        "version": 7, "matchers": [{"condition": "method", "pattern": "GET"}],
        "filters": [], "zeta": {"a": 1}
    });
    assert_eq!(
        details(&route, ROUTE_ORDER),
        "name:     users\n\
         status:   excluded\n\
         reason:   plugin \"geo\" is not loaded\n\
         version:  7\n\
         matchers:\n  - method=GET\n\
         filters:  -\n\
         zeta:     {\"a\":1}\n"
    );
}

#[test]
fn plugin_rows() {
    let plugins = vec![json!({
        "name": "geo", "kind": "predicate", "sha256": "0123456789abcdef0123", "size": 20480,
        "used_by": ["users", "admin"], "calls": 12, "traps": 0, "deadline_hits": 1
    })];
    let t = plugins_table(&plugins);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[1],
        "geo   predicate  0123456789ab  20.0 KiB  users, admin  12     0      1"
    );
}

#[test]
fn sizes_and_durations() {
    assert_eq!(size(Some(&json!(512))), "512 B");
    assert_eq!(size(Some(&json!(3 * 1024 * 1024 + 100_000))), "3.1 MiB");
    assert_eq!(size(None), "-");
    assert_eq!(duration(42), "42s");
    assert_eq!(duration(303), "5m 3s");
    assert_eq!(duration(7500), "2h 5m");
    assert_eq!(duration(273_600), "3d 4h");
}

#[test]
fn health_rows() {
    let doc = json!({"routes": [
        {"route": "users", "target": "http://127.0.0.1:3000", "status": "up", "latency_ms": 1.5, "since": 1_767_222_000},
        {"route": "files", "target": "http://127.0.0.1:3002", "status": "down", "latency_ms": null, "since": 1_767_225_000},
        {"route": "ms", "target": "http://h", "status": "up", "latency_ms": 3, "since": 1_767_224_900_000_u64},
        {"route": "text", "target": "http://h", "status": "up", "since": "2026-01-01T00:00:00Z"}
    ]});
    assert_eq!(
        health_table(&doc, 1_767_225_700),
        "ROUTE  BACKEND                STATUS  LATENCY  UPTIME\n\
         users  http://127.0.0.1:3000  up      1.50 ms  1h 1m\n\
         files  http://127.0.0.1:3002  down    -        -\n\
         ms     http://h               up      3.00 ms  13m 20s\n\
         text   http://h               up      -        2026-01-01T00:00:00Z\n"
    );
}

#[test]
fn explain_tree() {
    let doc = json!({
        "decision": "route", "route": "users",
        "candidates": [
            {"route": "users-new", "result": "failed", "failed": "matchers[1] (header x-tier)"},
            {"route": "users", "result": "matched"}
        ]
    });
    assert_eq!(
        explain(&doc),
        "→ route users\n\
         ├─ users-new: failed at matchers[1] (header x-tier)\n\
         └─ users: matched\n"
    );
}

#[test]
fn explain_with_detail() {
    let doc = json!({
        "decision": "method_not_allowed", "route": null, "detail": "GET, HEAD",
        "candidates": [{"route": "users", "result": "failed", "failed": "matchers[1] (method)"}]
    });
    assert_eq!(
        explain(&doc),
        "→ method_not_allowed: GET, HEAD\n└─ users: failed at matchers[1] (method)\n"
    );
}

#[test]
fn explain_without_candidates() {
    let doc = json!({"decision": "not_found", "route": null, "candidates": []});
    assert_eq!(explain(&doc), "→ not_found\n└─ (no candidate routes)\n");
}

#[test]
fn apply_lines() {
    let doc = json!({"created": ["a", "b"], "updated": [], "deleted": ["c"]});
    assert_eq!(
        apply_summary(&doc),
        "created (2): a, b\nupdated (0): -\ndeleted (1): c\n"
    );
}

#[test]
fn a_dry_run_shows_moves_examples_and_unreachable_routes() {
    let doc = json!({
        "dry_run": true,
        "change": {"created": ["shadow"], "updated": [], "deleted": []},
        "sample": {"held": 5},
        "replayed": 5,
        "moved": 2,
        "groups": [{
            "from": {"route": "api", "target": "http://127.0.0.1:9001"},
            "to": {"route": "(404)"},
            "count": 2,
            "examples": [{"method": "GET", "host": "a.test", "path": "/api/a", "query": "x=1"}]
        }],
        "no_longer_reached": ["api"],
        "unreachable": [{"route": "api", "shadowed_by": "shadow", "new": true}],
        "uncertain": 0
    });
    let out = dry_run(&doc);
    assert_eq!(
        out,
        "dry run: nothing was changed\n\
         change: created shadow · updated - · deleted -\n\
         replayed 5 sampled requests: 2 would move\n\
         \x20      2  api (http://127.0.0.1:9001) → (404)\n\
         \x20         e.g. GET a.test/api/a?x=1\n\
         no longer reached by any sampled request: api\n\
         unreachable routes (a route before them matches all they match):\n\
         ROUTE  SHADOWED BY  SINCE\n\
         api    shadow       this change\n"
    );
}

#[test]
fn a_shadow_shows_agreement_per_route_and_its_divergences() {
    let doc = json!({"name": "geo", "trial": {
        "mode": "shadow", "sha256": "f76f51b2737ad9a5058b", "calls": 16, "traps": 0,
        "deadline_hits": 0, "memory_cap_hits": 0, "dropped": 0, "rolled_back": null,
        "routes": {"gold": {"agreed": 10, "diverged": 6, "trial_failed": 0, "refused_args": 0,
            "examples": [{"method": "GET", "host": "a.test", "path": "/tier",
                          "live": "false", "trial": "true"}]}}
    }});
    assert_eq!(
        trial(&doc),
        "\ntrial version: shadow (sha256 f76f51b2737a)\n\
         \x20 its calls 16 · traps 0 · deadline hits 0 · memory cap hits 0\n\
         \x20 ROUTE  AGREED  DIVERGED  TRIAL FAILED  REFUSED ARGS\n\
         \x20 gold   10      6         0             0\n\
         \x20 gold: GET a.test/tier: live false, trial true\n"
    );
    assert_eq!(trial(&json!({"name": "geo", "trial": null})), "");
}
